package ingest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/checkpoint"
	"slsrelay/ingest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

const group = "relays"

// relay is one Ingest over the emulator, running until the test ends.
type relay struct {
	in   *ingest.Ingest
	cps  *checkpoint.Store
	stop func()
}

func openStore(t *testing.T) *checkpoint.Store {
	t.Helper()
	cps, err := checkpoint.Open(t.TempDir(), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cps.Close() })
	return cps
}

func testSource(s *slstest.Server, name string) ingest.Source {
	return ingest.Source{
		Project: project, Logstore: logstore, ConsumerGroup: group, ConsumerName: name,
		Endpoint:          s.Endpoint(),
		Credentials:       &ingest.FileCredentials{AccessKeyID: slstest.DefaultAKID, AccessKeySecret: slstest.DefaultAKSecret},
		HTTPClient:        s.HTTPClient(),
		Start:             ingest.Start{Position: "begin"},
		HeartbeatInterval: time.Second, HeartbeatTimeout: 3 * time.Second,
		FetchInterval: 20 * time.Millisecond, CheckpointInterval: 200 * time.Millisecond,
	}
}

// startRelay runs an Ingest named name into spools with store cps.
func startRelay(t *testing.T, s *slstest.Server, name string, cps *checkpoint.Store, spools ...ingest.Spool) *relay {
	t.Helper()
	return runSource(t, testSource(s, name), cps, spools...)
}

// runSource runs an Ingest of src into spools with store cps until the
// test ends (or relay.stop).
func runSource(t *testing.T, src ingest.Source, cps *checkpoint.Store, spools ...ingest.Spool) *relay {
	t.Helper()
	in, err := ingest.New(ingest.Options{Sources: []ingest.Source{src}, Spools: spools,
		Checkpoints: cps, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx) }()
	r := &relay{in: in, cps: cps}
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	return r
}

// shardIDs returns the ids of the events spooled from shard.
func shardIDs(t *testing.T, sp *memSpool, shard int) []string {
	var recs []*spool.Record
	for _, r := range sp.snapshot() {
		if r.Shard == shard {
			recs = append(recs, r)
		}
	}
	return ids(t, recs)
}

func logIDs(lg *sls.LogGroup) []string {
	var out []string
	for _, l := range lg.Logs {
		out = append(out, l.Contents[0].GetValue())
	}
	return out
}

// holdsAll reports whether got holds every id of want.
func holdsAll(got, want []string) bool {
	n := countIDs(got)
	for _, id := range want {
		if n[id] == 0 {
			return false
		}
	}
	return true
}

// cursorPlus returns the emulator cursor n positions after c (its cursors
// are base64 of a decimal sequence number).
func cursorPlus(t *testing.T, c string, n int64) string {
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(v+n, 10)))
}

// Several sinks: sink B's spool blocks a pull of shard 0 that sink A
// already holds; meanwhile more data arrives on shard 0 and another shard
// meets an expired cursor. Every sink must still get every log of shard 0:
// a spool that holds part of a pull is never taken to hold a longer range.
func TestIngest_TwoSinksBlockedSpoolAndGapLoseNothing(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	a := &memSpool{}
	b := &memSpool{put: func(ctx context.Context, r *spool.Record) error {
		if r.Shard != 0 {
			return nil
		}
		select {
		case <-release:
			return nil
		default:
		}
		select {
		case blocked <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-release:
			return nil
		}
	}}
	r := startRelay(t, s, "relay-1", openStore(t), a, b)
	g := slstest.NewGenerator(slstest.KindAudit, 11)
	g1, g2 := g.LogGroup(5), g.LogGroup(5)
	if err := s.Append(project, logstore, 0, g1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked:
	case <-time.After(60 * time.Second):
		t.Fatal("shard 0's pull never reached spool B")
	}
	if err := s.Append(project, logstore, 0, g2); err != nil {
		t.Fatal(err)
	}
	// A gap elsewhere: shard 1 splits and its child's checkpoint points
	// past its data (the emulator answers InvalidCursor).
	kids, err := s.SplitShard(project, logstore, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	end, _ := c.GetCursor(project, logstore, kids[0], "end")
	if err := c.UpdateCheckpoint(project, logstore, group, "someone", kids[0], cursorPlus(t, end, 5), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the expired cursor handled", func() bool { return r.in.Workers()[0].Stats().Gaps > 0 })
	close(release)
	want := append(logIDs(g1), logIDs(g2)...)
	deadline := time.Now().Add(60 * time.Second)
	for !holdsAll(shardIDs(t, a, 0), want) || !holdsAll(shardIDs(t, b, 0), want) {
		if time.Now().After(deadline) {
			t.Fatalf("shard 0's 10 logs: sink A holds %d distinct, sink B %d (a sink lost a range)",
				len(countIDs(shardIDs(t, a, 0))), len(countIDs(shardIDs(t, b, 0))))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A relay starting with local checkpoints for every shard must not move
// the group's checkpoints back where another consumer has gone further.
func TestIngest_StartDoesNotRewindOtherConsumers(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 80, 10, 12); err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: group, Timeout: 3}); err != nil {
		t.Fatal(err)
	}
	cps := openStore(t)
	for shard := range 4 {
		begin, _ := c.GetCursor(project, logstore, shard, "begin")
		end, _ := c.GetCursor(project, logstore, shard, "end")
		key := checkpoint.ShardKey{Project: project, Logstore: logstore, Shard: shard}
		if err := cps.Commit(key, checkpoint.Cursor{Cursor: begin, Updated: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := c.UpdateCheckpoint(project, logstore, group, "other", shard, end, true); err != nil {
			t.Fatal(err)
		}
	}
	// "other" stays in the group, holding what it is given.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go heartbeatAs(ctx, c, "other", nil)
	a := &memSpool{}
	r := startRelay(t, s, "relay-1", cps, a)
	waitFor(t, 60*time.Second, "the relay holds two shards", func() bool {
		n := 0
		for _, who := range s.Assignments(project, logstore, group) {
			if who == "relay-1" {
				n++
			}
		}
		return n == 2
	})
	pulls := s.Stats().Pulls
	waitFor(t, 60*time.Second, "the relay pulls", func() bool { return s.Stats().Pulls > pulls+10 })
	r.stop()
	for _, u := range s.CheckpointUpdates(project, logstore, group) {
		if u.Backwards() {
			t.Errorf("shard %d's checkpoint moved backwards by %s (force %v): %s -> %s", u.Shard, u.Consumer, u.Force, u.Previous, u.Cursor)
		}
	}
	if n := len(ids(t, a.snapshot())); n != 0 {
		t.Errorf("the relay spooled %d logs another consumer had already consumed", n)
	}
}

// heartbeatAs keeps consumer name alive in the group, holding the shards
// it is given, until ctx ends.
func heartbeatAs(ctx context.Context, c *sls.Client, name string, onHeld func([]int)) {
	held := []int{}
	for ctx.Err() == nil {
		if got, err := c.HeartBeat(project, logstore, group, name, held); err == nil {
			held = got
			if onHeld != nil {
				onHeld(held)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Shards whose pulls cannot be spooled are taken by another consumer: the
// relay must give back their pull slots, and its other shards flow.
func TestIngest_ReleasedFailingShardsFreePullSlots(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 6}}})
	g := slstest.NewGenerator(slstest.KindAudit, 13)
	for shard := 3; shard < 6; shard++ {
		if err := s.Append(project, logstore, shard, g.LogGroup(3)); err != nil {
			t.Fatal(err)
		}
	}
	var failed [6]atomic.Int32
	a := &memSpool{put: func(_ context.Context, r *spool.Record) error {
		if r.Shard >= 3 {
			failed[r.Shard].Add(1)
			return fmt.Errorf("shard %d: %w", r.Shard, errInjected)
		}
		return nil
	}}
	startRelay(t, s, "relay-1", openStore(t), a)
	waitFor(t, 60*time.Second, "shards 3-5 failing", func() bool {
		return failed[3].Load() > 0 && failed[4].Load() > 0 && failed[5].Load() > 0
	})
	c := newClient(s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var thief atomic.Value
	go heartbeatAs(ctx, c, "thief", func(held []int) { thief.Store(fmt.Sprint(held)) })
	waitFor(t, 60*time.Second, "shards 3-5 released to another consumer", func() bool { return thief.Load() == "[3 4 5]" })
	var want []string
	for shard := range 3 {
		lg := g.LogGroup(4)
		want = append(want, logIDs(lg)...)
		if err := s.Append(project, logstore, shard, lg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "the relay's remaining shards spooled", func() bool { return holdsAll(ids(t, a.snapshot()), want) })
}

// A checkpoint aged out of retention, SLS cannot date it, and the only
// other hint (the newest __time__ spooled) is after the oldest data held:
// the gap is still recorded with what is known, and the relay resumes.
func TestIngest_UndatableGapIsRecordedOnce(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	g := slstest.NewGenerator(slstest.KindAudit, 14)
	if err := s.Append(project, logstore, 0, g.LogGroup(3)); err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	stale, _ := c.GetCursor(project, logstore, 0, "begin")
	time.Sleep(1200 * time.Millisecond)
	fresh := g.LogGroup(4)
	if err := s.Append(project, logstore, 0, fresh); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTTL(project, logstore, time.Second); err != nil { // the first group expires
		t.Fatal(err)
	}
	if err := s.SetTTL(project, logstore, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: group, Timeout: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateCheckpoint(project, logstore, group, "relay-1", 0, stale, true); err != nil {
		t.Fatal(err)
	}
	cps := openStore(t)
	key := checkpoint.ShardKey{Project: project, Logstore: logstore, Shard: 0}
	if err := cps.Commit(key, checkpoint.Cursor{Cursor: stale, MaxTime: time.Now().Add(time.Hour).Unix(), Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	a := &memSpool{}
	startRelay(t, s, "relay-1", cps, a)
	waitFor(t, 60*time.Second, "the relay resumed after the gap", func() bool { return holdsAll(ids(t, a.snapshot()), logIDs(fresh)) })
	gaps, err := cps.Gaps()
	if err != nil || len(gaps) != 1 || gaps[0].Key.Shard != 0 || gaps[0].To.IsZero() {
		t.Fatalf("gaps = %+v, %v; want one for shard 0", gaps, err)
	}
}
