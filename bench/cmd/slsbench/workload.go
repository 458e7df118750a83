package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"slsrelay/ingest/slstest"
)

// The workload: ActionTrail-like audit logs from slstest's generator (about
// 20 fields and 1 KB each), in log groups of perGroup logs, spread over the
// shards of a logstore. Shard i's logs come from their own generator seeded
// genSeed(seed, i), so the shards are loaded in parallel and the workload
// is the same in every run (apart from the logs' times, which are the wall
// clock).
//
// "Raw bytes" everywhere in the report are the serialized LogGroup
// protobuf bytes, what SLS reports as x-log-bodyrawsize for a pull and the
// emulator counts as RawBytesServed (it adds the __receive_time__ tag, a few
// bytes a group). Content bytes (the sum of key and value lengths) are
// reported beside them.

const (
	benchProject = "bench-project"
	benchAKID    = "bench-ak-id"
	benchAKSec   = "bench-ak-secret"
	benchToken   = "5e1f0b6e-1d2a-4c3b-9a7e-0123456789ab"
	perGroup     = 100
)

func genSeed(seed int64, shard int) int64 { return seed*1000 + int64(shard) }

// loaded describes what was appended to a logstore.
type loaded struct {
	Logstore     string
	Shards       int
	Logs         int
	Groups       int
	RawBytes     int64 // serialized LogGroup bytes, as appended
	ContentBytes int64 // sum of key + value bytes
	Took         time.Duration
}

// loadLogstore creates a logstore of shards shards in s and appends n
// workload logs to it, perGroup a group, shard by shard in parallel (two
// loaders at a time: the machine has two cores).
func loadLogstore(s *slstest.Server, logstore string, shards, n int, seed int64) (loaded, error) {
	start := time.Now()
	if err := s.CreateLogstore(benchProject, slstest.LogstoreOptions{Name: logstore, Shards: shards}); err != nil {
		return loaded{}, err
	}
	res := loaded{Logstore: logstore, Shards: shards, Logs: n}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 2)
	)
	for sh := 0; sh < shards; sh++ {
		count := n / shards
		if sh < n%shards {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			g := slstest.NewGenerator(slstest.KindAudit, genSeed(seed, sh))
			var raw, content int64
			groups := 0
			for done := 0; done < count; {
				k := min(perGroup, count-done)
				lg := g.LogGroup(k)
				raw += int64(proto.Size(lg))
				content += contentBytes(lg)
				if err := s.Append(benchProject, logstore, sh, lg); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("load %s shard %d: %w", logstore, sh, err))
					mu.Unlock()
					return
				}
				done += k
				groups++
			}
			mu.Lock()
			res.RawBytes += raw
			res.ContentBytes += content
			res.Groups += groups
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return res, errs[0]
	}
	res.Took = time.Since(start)
	return res, nil
}

func contentBytes(lg *sls.LogGroup) int64 {
	var n int64
	for _, l := range lg.Logs {
		for _, c := range l.Contents {
			n += int64(len(c.GetKey()) + len(c.GetValue()))
		}
	}
	return n
}

// tracker counts the distinct workload event ids that reached a receiver,
// and duplicates, in a bitmap per generator; safe for concurrent use.
// Arrival times are kept when wantTimes is set (for latency).
type tracker struct {
	mu      sync.Mutex
	seen    map[string][]uint64 // id prefix "audit-<seed>-" → bitmap of sequence numbers
	unique  int
	dups    int
	bad     int // events without a parsable workload id
	first   time.Time
	last    time.Time
	written map[string][]int64 // prefix → write time (unix ns) by sequence, for latency
	delays  []time.Duration
	delayAt []int64 // write time (unix ns) of delays[i]'s event
}

func newTracker() *tracker { return &tracker{seen: map[string][]uint64{}} }

// trackWrites makes the tracker compute delays from the write times that
// noteWrite records.
func (t *tracker) trackWrites() { t.written = map[string][]int64{} }

// parseID splits "audit-<seed>-<seq>" into its prefix and sequence.
func parseID(id string) (string, int, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return id[:i+1], n, true
}

// eventID finds the workload's event_id in a HEC event object (the
// generator's first field, so it is near the start) without decoding it.
func eventID(raw []byte) string {
	key := []byte(`"event_id":"`)
	i := bytes.Index(raw[:min(len(raw), 256)], key)
	if i < 0 {
		if i = bytes.Index(raw, key); i < 0 {
			return ""
		}
	}
	rest := raw[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j]) // copied: the receiver reuses raw after Consume
}

// noteWrite records when logs seq0..seq0+n-1 of prefix were written.
func (t *tracker) noteWrite(prefix string, seq0, n int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.written[prefix]
	for len(w) < seq0+n {
		w = append(w, 0)
	}
	for i := seq0; i < seq0+n; i++ {
		w[i] = at.UnixNano()
	}
	t.written[prefix] = w
}

// add counts the ids of events that arrived together at one instant.
func (t *tracker) add(ids []string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.first.IsZero() {
		t.first = at
	}
	t.last = at
	for _, id := range ids {
		p, n, ok := parseID(id)
		if !ok {
			t.bad++
			continue
		}
		bm := t.seen[p]
		for len(bm) <= n/64 {
			bm = append(bm, 0)
		}
		if bm[n/64]&(1<<(n%64)) != 0 {
			t.dups++
			continue
		}
		bm[n/64] |= 1 << (n % 64)
		t.seen[p] = bm
		t.unique++
		if t.written != nil {
			if w := t.written[p]; n < len(w) && w[n] != 0 {
				t.delays = append(t.delays, at.Sub(time.Unix(0, w[n])))
				t.delayAt = append(t.delayAt, w[n])
			}
		}
	}
}

func (t *tracker) counts() (unique, dups, bad int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unique, t.dups, t.bad
}

func (t *tracker) span() (first, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first, t.last
}

// missing counts, for each shard's generator, the sequence numbers below
// want[shard] that did not arrive.
func (t *tracker) missing(seed int64, perShard []int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	miss := 0
	for sh, want := range perShard {
		bm := t.seen[fmt.Sprintf("%s-%d-", slstest.KindAudit, genSeed(seed, sh))]
		for n := 0; n < want; n++ {
			if n/64 >= len(bm) || bm[n/64]&(1<<(n%64)) == 0 {
				miss++
			}
		}
	}
	return miss
}

// perShardCounts splits n logs over shards as loadLogstore does.
func perShardCounts(n, shards int) []int {
	out := make([]int, shards)
	for sh := range out {
		out[sh] = n / shards
		if sh < n%shards {
			out[sh]++
		}
	}
	return out
}
