package slstest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pierrec/lz4/v4"
)

// project is one SLS project: a set of logstores.
type project struct {
	name       string
	createTime int64
	logstores  map[string]*logstore
}

// logstore holds shards and consumer groups; mu guards everything in it.
// Stored groups are immutable once appended, so readers copy the slice
// header under the read lock and decode outside it.
type logstore struct {
	name       string
	createTime int64

	mu     sync.RWMutex
	ttl    time.Duration
	shards []*shard // ordered by id
	rr     int
	groups map[string]*consumerGroup
}

func newLogstore(o LogstoreOptions, now time.Time) *logstore {
	ls := &logstore{name: o.Name, createTime: now.Unix(), ttl: o.TTL, groups: map[string]*consumerGroup{}}
	keys := splitRange(strings.Repeat("0", 32), strings.Repeat("f", 32), o.Shards)
	for i := 0; i < o.Shards; i++ {
		ls.shards = append(ls.shards, ls.newShard(i, keys[i], keys[i+1], now))
	}
	return ls
}

func (ls *logstore) newShard(id int, begin, end string, now time.Time) *shard {
	return &shard{
		id: id, status: statusReadWrite, begin: begin, end: end,
		createTime: now.Unix(),
		// Cursors look like the service's: a 19-digit number starting with
		// a unix time. Shards get distinct bases so cursors never collide.
		base: now.Unix()*1e9 + int64(id%100)*1e7,
	}
}

func (ls *logstore) shard(id int) (*shard, error) {
	for _, sh := range ls.shards {
		if sh.id == id {
			return sh, nil
		}
	}
	return nil, fmt.Errorf("%w: %d", ErrShardNotExist, id)
}

// expireLocked drops groups older than the TTL; callers hold mu for writing.
func (ls *logstore) expireLocked(now time.Time) {
	if ls.ttl <= 0 {
		return
	}
	cutoff := now.Add(-ls.ttl).UnixNano()
	for _, sh := range ls.shards {
		sh.expire(cutoff)
	}
}

// needsExpiry reports, under the read lock, whether expireLocked has work.
func (ls *logstore) needsExpiry(now time.Time) bool {
	if ls.ttl <= 0 {
		return false
	}
	cutoff := now.Add(-ls.ttl).UnixNano()
	for _, sh := range ls.shards {
		if len(sh.groups) > 0 && sh.groups[0].recv < cutoff {
			return true
		}
	}
	return false
}

// read runs f under the read lock after expiring old data.
func (ls *logstore) read(f func()) {
	now := time.Now()
	ls.mu.RLock()
	if ls.needsExpiry(now) {
		ls.mu.RUnlock()
		ls.mu.Lock()
		ls.expireLocked(now)
		ls.mu.Unlock()
		ls.mu.RLock()
	}
	defer ls.mu.RUnlock()
	f()
}

// write runs f under the write lock after expiring old data.
func (ls *logstore) write(f func()) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.expireLocked(time.Now())
	f()
}

// route picks the shard for a write: by hash key when given, else round robin
// over readwrite shards. Callers hold mu for writing.
func (ls *logstore) route(hashKey string) (*shard, error) {
	if hashKey != "" {
		k, ok := normalizeKey(hashKey)
		if !ok {
			return nil, fmt.Errorf("%w: hash key %q is not hex", ErrInvalidArgument, hashKey)
		}
		for _, sh := range ls.shards {
			if sh.status == statusReadWrite && inRange(k, sh.begin, sh.end) {
				return sh, nil
			}
		}
		return nil, fmt.Errorf("%w: no shard for hash key %s", ErrShardNotExist, hashKey)
	}
	var rw []*shard
	for _, sh := range ls.shards {
		if sh.status == statusReadWrite {
			rw = append(rw, sh)
		}
	}
	if len(rw) == 0 {
		return nil, fmt.Errorf("%w: no readwrite shard", ErrShardNotExist)
	}
	ls.rr++
	return rw[ls.rr%len(rw)], nil
}

// makeGroup validates a serialized LogGroup, stamps its receive time and
// compresses it for storage.
func makeGroup(raw []byte, now time.Time) (storedGroup, error) {
	logs, err := scanLogGroup(raw)
	if err != nil {
		return storedGroup{}, err
	}
	recv := now.UnixNano()
	b := stampReceiveTime(append(make([]byte, 0, len(raw)+48), raw...), recv)
	g := storedGroup{raw: int32(len(b)), logs: int32(logs), recv: recv}
	var c lz4.Compressor
	dst := make([]byte, lz4.CompressBlockBound(len(b)))
	n, err := c.CompressBlock(b, dst)
	if err != nil || n == 0 || n >= len(b) {
		g.data = b
	} else {
		g.data = append([]byte(nil), dst[:n]...)
		g.compressed = true
	}
	g.setLayout()
	return g, nil
}

// appendLocked stores g in sh; receive times stay monotonic per shard.
func appendLocked(sh *shard, g storedGroup) {
	if n := len(sh.groups); n > 0 && g.recv < sh.groups[n-1].recv {
		g.recv = sh.groups[n-1].recv
	}
	sh.groups = append(sh.groups, g)
	sh.logs += int64(g.logs)
}

// split makes sh read-only and adds children covering its key range, cut at
// the given keys (normalized, strictly inside the range).
func (ls *logstore) split(sh *shard, keys []string, now time.Time) ([]*shard, error) {
	if sh.status != statusReadWrite {
		return nil, fmt.Errorf("%w: %d", ErrShardReadOnly, sh.id)
	}
	bounds := append(append([]string{sh.begin}, keys...), sh.end)
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] && !(i == len(bounds)-1 && bounds[i] == strings.Repeat("f", 32)) {
			return nil, fmt.Errorf("%w: split key %s outside shard %d's range [%s, %s)", ErrInvalidArgument, bounds[i], sh.id, sh.begin, sh.end)
		}
	}
	next := ls.shards[len(ls.shards)-1].id + 1
	sh.status = statusReadOnly
	out := []*shard{sh}
	for i := 0; i+1 < len(bounds); i++ {
		c := ls.newShard(next+i, bounds[i], bounds[i+1], now)
		c.parents = []int{sh.id}
		ls.shards = append(ls.shards, c)
		out = append(out, c)
	}
	return out, nil
}

// merge makes sh and its right neighbour read-only and adds one shard
// covering both ranges.
func (ls *logstore) merge(sh *shard, now time.Time) ([]*shard, error) {
	if sh.status != statusReadWrite {
		return nil, fmt.Errorf("%w: %d", ErrShardReadOnly, sh.id)
	}
	var right *shard
	for _, o := range ls.shards {
		if o.status == statusReadWrite && o.begin == sh.end {
			right = o
		}
	}
	if right == nil {
		return nil, fmt.Errorf("%w: shard %d has no readwrite neighbour to merge with", ErrInvalidArgument, sh.id)
	}
	sh.status, right.status = statusReadOnly, statusReadOnly
	m := ls.newShard(ls.shards[len(ls.shards)-1].id+1, sh.begin, right.end, now)
	m.parents = []int{sh.id, right.id}
	ls.shards = append(ls.shards, m)
	return []*shard{m, sh, right}, nil
}

// shardJSON is one entry of ListShards, SplitShard and MergeShards answers.
type shardJSON struct {
	ShardID           int    `json:"shardID"`
	Status            string `json:"status"`
	InclusiveBeginKey string `json:"inclusiveBeginKey"`
	ExclusiveEndKey   string `json:"exclusiveEndKey"`
	CreateTime        int64  `json:"createTime"`
}

func toShardJSON(shs []*shard) []shardJSON {
	out := make([]shardJSON, 0, len(shs))
	for _, sh := range shs {
		out = append(out, shardJSON{sh.id, sh.status, sh.begin, sh.end, sh.createTime})
	}
	return out
}
