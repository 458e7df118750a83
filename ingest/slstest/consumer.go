package slstest

import (
	"encoding/base64"
	"net/http"
	"sort"
	"time"
)

// consumerGroup is the server side of the consumer-group protocol. All of
// it is guarded by the owning logstore's mu.
type consumerGroup struct {
	name        string
	timeout     int // seconds without heartbeat before a consumer is dropped
	inOrder     bool
	consumers   map[string]*consumerState
	owner       map[int]string // shard → consumer it is assigned to
	checkpoints map[int]checkpoint
	updates     []CheckpointUpdate // every accepted UpdateCheckpoint, in order
}

type consumerState struct {
	since    time.Time // when it (re)joined the group
	lastSeen time.Time
	held     map[int]bool // shards the consumer said it still holds
}

// settleGrace is how long a consumer whose client was never seen reading
// waits for its second shard (see heartbeat).
const settleGrace = 10 * time.Second

type checkpoint struct {
	cursor     string
	updateTime int64 // unix microseconds
	consumer   string
}

func newConsumerGroup(name string, timeout int, inOrder bool) *consumerGroup {
	return &consumerGroup{
		name: name, timeout: timeout, inOrder: inOrder,
		consumers: map[string]*consumerState{}, owner: map[int]string{}, checkpoints: map[int]checkpoint{},
	}
}

// expire drops consumers whose last heartbeat is older than the timeout;
// their shards become free.
func (g *consumerGroup) expire(now time.Time) {
	for name, c := range g.consumers {
		if now.Sub(c.lastSeen) > time.Duration(g.timeout)*time.Second {
			delete(g.consumers, name)
		}
	}
	for id, c := range g.owner {
		if _, ok := g.consumers[c]; !ok {
			delete(g.owner, id)
		}
	}
}

// finished reports whether a read-only shard has been consumed to its end.
func (g *consumerGroup) finished(sh *shard) bool {
	if sh.status != statusReadOnly {
		return false
	}
	if sh.endSeq() == sh.first {
		return true
	}
	cp, ok := g.checkpoints[sh.id]
	if !ok {
		return false
	}
	v, ok := decodeCursor(cp.cursor)
	return ok && v-sh.base >= sh.endSeq()
}

// assignable lists the shards to hand out: every readwrite shard and every
// read-only shard not yet consumed to its end; with inOrder, a shard only
// once the shards it came from are finished.
func (g *consumerGroup) assignable(ls *logstore) []int {
	byID := map[int]*shard{}
	for _, sh := range ls.shards {
		byID[sh.id] = sh
	}
	var ids []int
	for _, sh := range ls.shards {
		if g.finished(sh) {
			continue
		}
		ready := true
		if g.inOrder {
			for _, p := range sh.parents {
				if ps, ok := byID[p]; ok && !g.finished(ps) {
					ready = false
				}
			}
		}
		if ready {
			ids = append(ids, sh.id)
		}
	}
	return ids
}

// rebalance keeps current assignments where it can and spreads the rest so
// that live consumers hold n/k or n/k+1 shards each.
func (g *consumerGroup) rebalance(ls *logstore) {
	names := make([]string, 0, len(g.consumers))
	for n := range g.consumers {
		names = append(names, n)
	}
	ids := g.assignable(ls)
	want := map[int]bool{}
	for _, id := range ids {
		want[id] = true
	}
	owned := map[string][]int{}
	for id, c := range g.owner {
		if !want[id] {
			delete(g.owner, id)
			continue
		}
		owned[c] = append(owned[c], id)
	}
	if len(names) == 0 {
		return
	}
	sort.Slice(names, func(i, j int) bool {
		if a, b := len(owned[names[i]]), len(owned[names[j]]); a != b {
			return a > b
		}
		return names[i] < names[j]
	})
	base, extra := len(ids)/len(names), len(ids)%len(names)
	quota := map[string]int{}
	for i, n := range names {
		quota[n] = base
		if i < extra {
			quota[n]++
		}
		sort.Ints(owned[n])
		for len(owned[n]) > quota[n] {
			last := owned[n][len(owned[n])-1]
			delete(g.owner, last)
			owned[n] = owned[n][:len(owned[n])-1]
		}
	}
	for _, id := range ids {
		if _, ok := g.owner[id]; ok {
			continue
		}
		best := ""
		for _, n := range names {
			if len(owned[n]) < quota[n] && (best == "" || len(owned[n]) < len(owned[best])) {
				best = n
			}
		}
		if best == "" {
			break
		}
		g.owner[id] = best
		owned[best] = append(owned[best], id)
	}
}

// heartbeat records that consumer is alive and holds held, and answers the
// shards it should hold. A shard moving between consumers is handed to the
// new one only once the old one stopped reporting it, as the service does,
// so two consumers never work on one shard at once. lastRead is when the
// consumer's client last sent a GetCursor or PullLogs (see settled).
func (g *consumerGroup) heartbeat(ls *logstore, consumer string, held []int, now, lastRead time.Time) []int {
	c, known := g.consumers[consumer]
	if !known {
		c = &consumerState{since: now}
		g.consumers[consumer] = c
	}
	c.lastSeen = now
	c.held = map[int]bool{}
	for _, id := range held {
		c.held[id] = true
	}
	g.expire(now)
	g.rebalance(ls)
	out := []int{}
	for id, owner := range g.owner {
		if owner != consumer || g.heldByOther(id, consumer) {
			continue
		}
		out = append(out, id)
	}
	sort.Ints(out)
	if len(out) > 1 && !settled(c, now, lastRead) {
		// Until its client was seen reading, a consumer keeps the shards
		// it holds and gets at most one more (see settled).
		keep := []int{}
		for _, id := range out {
			if c.held[id] {
				keep = append(keep, id)
			}
		}
		if len(keep) == 0 {
			keep = out[:1]
		}
		out = keep
	}
	return out
}

// settled reports whether a consumer may be handed several new shards at
// once. SDK v0.1.124's Client.initHttpClient writes fields unsynchronized
// the first time a client reads from a logstore, so shard workers making
// their first requests together trip the race detector in every -race test
// of a consumer. A new consumer therefore gets one shard, and the rest once
// its client sent a GetCursor or PullLogs: the consumer library names its
// client "{group}_{consumer}" in the User-Agent, and that request (through
// the shared connection pool and the heartbeat answer) orders the first
// worker's writes before the next workers start. A client never seen that
// way (another User-Agent) gets its shards after settleGrace.
func settled(c *consumerState, now, lastRead time.Time) bool {
	return lastRead.After(c.since) || now.Sub(c.since) >= settleGrace
}

func (g *consumerGroup) heldByOther(id int, consumer string) bool {
	for name, c := range g.consumers {
		if name != consumer && c.held[id] {
			return true
		}
	}
	return false
}

// updateCheckpoint applies the service's rules: without force, only the
// consumer the shard is assigned to may move its checkpoint. Statuses,
// codes and messages are those of the service's ConsumerGroupUpdateCheckPoint
// reference (400 InvalidShardCheckPoint, 404 ConsumerNotExist, 404
// ShardNotExist); ConsumerNotMatch is not in that table, its status and
// message are the emulator's.
func (g *consumerGroup) updateCheckpoint(ls *logstore, consumer string, shardID int, cursor string, force bool, now time.Time) *apiError {
	if _, err := base64.StdEncoding.DecodeString(cursor); err != nil || cursor == "" {
		return errf(http.StatusBadRequest, codeBadCheckpoint, "shard checkpoint not encoded by base64")
	}
	if _, err := ls.shard(shardID); err != nil {
		return errf(http.StatusNotFound, codeShardNotExist, "shard not exist")
	}
	if _, ok := decodeCursor(cursor); !ok {
		return errf(http.StatusBadRequest, codeInvalidCursor, "checkpoint %q is not a valid cursor", cursor)
	}
	if !force {
		g.expire(now)
		if _, ok := g.consumers[consumer]; !ok {
			return errf(http.StatusNotFound, codeConsumerNotExist, "consumer not exist in the consumer group")
		}
		if g.owner[shardID] != consumer {
			return errf(http.StatusBadRequest, codeConsumerNotMatch, "consumer %s does not hold shard %d", consumer, shardID)
		}
	}
	if len(g.updates) >= maxUpdates { // a long-running emulator keeps the newest
		g.updates = append(g.updates[:0], g.updates[len(g.updates)-maxUpdates/2:]...)
	}
	g.updates = append(g.updates, CheckpointUpdate{Shard: shardID, Cursor: cursor, Previous: g.checkpoints[shardID].cursor,
		Consumer: consumer, Force: force, At: now})
	g.checkpoints[shardID] = checkpoint{cursor: cursor, updateTime: now.UnixMicro(), consumer: consumer}
	return nil
}

// maxUpdates bounds the record of checkpoint updates per group.
const maxUpdates = 100_000

// CheckpointUpdate is one accepted UpdateCheckpoint call.
type CheckpointUpdate struct {
	Shard    int
	Cursor   string
	Previous string // the shard's checkpoint before ("" if none)
	Consumer string
	Force    bool
	At       time.Time
}

// Backwards reports whether the update moved the shard's checkpoint to an
// earlier position than it held (cursors of one shard compare by their
// sequence number).
func (u CheckpointUpdate) Backwards() bool {
	if u.Previous == "" {
		return false
	}
	a, okA := decodeCursor(u.Previous)
	b, okB := decodeCursor(u.Cursor)
	return okA && okB && b < a
}

type checkpointJSON struct {
	Shard      int    `json:"shard"`
	Checkpoint string `json:"checkpoint"`
	UpdateTime int64  `json:"updateTime"`
	Consumer   string `json:"consumer"`
}

// checkpointList answers GetCheckPoint: one entry per shard, shard < 0 = all.
func (g *consumerGroup) checkpointList(ls *logstore, shardID int) []checkpointJSON {
	out := []checkpointJSON{}
	for _, sh := range ls.shards {
		if shardID >= 0 && sh.id != shardID {
			continue
		}
		cp := g.checkpoints[sh.id]
		out = append(out, checkpointJSON{sh.id, cp.cursor, cp.updateTime, cp.consumer})
	}
	return out
}
