package ingest_test

import (
	"testing"
	"time"

	"slsrelay/checkpoint"
	"slsrelay/ingest"
	"slsrelay/ingest/slstest"
)

// startAt runs an Ingest named name with start position pos into sp.
func startAt(t *testing.T, s *slstest.Server, name, pos string, cps *checkpoint.Store, sp *memSpool) *relay {
	t.Helper()
	src := testSource(s, name)
	src.Start = ingest.Start{Position: pos}
	return runSource(t, src, cps, sp)
}

// appendGroup appends a generated group of n logs to shard and returns its ids.
func appendGroup(t *testing.T, s *slstest.Server, g *slstest.Generator, shard, n int) []string {
	t.Helper()
	lg := g.LogGroup(n)
	if err := s.Append(project, logstore, shard, lg); err != nil {
		t.Fatal(err)
	}
	return logIDs(lg)
}

// waitStarted waits until the relay holds n shards, each with a cursor
// (its start cursor is fetched).
func waitStarted(t *testing.T, r *relay, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, "every shard held with its start cursor", func() bool {
		st := r.in.Workers()[0].Stats()
		held := 0
		for _, sh := range st.Shards {
			if sh.Held && sh.Cursor != "" {
				held++
			}
		}
		return held == n
	})
}

// With start: end, the relay's first start on a logstore (created just
// before it, in the same second) skips every existing shard's logs; a child
// of a split made while the relay runs is read from its beginning.
func TestWorker_StartEndSkipsExistingReadsNewChildren(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
	g := slstest.NewGenerator(slstest.KindAudit, 51)
	old := map[string]bool{}
	for shard := range 2 {
		for _, id := range appendGroup(t, s, g, shard, 5) {
			old[id] = true
		}
	}
	sp := &memSpool{}
	r := startAt(t, s, "relay-1", "end", openStore(t), sp)
	waitStarted(t, r, 2)
	var want []string
	for shard := range 2 {
		want = append(want, appendGroup(t, s, g, shard, 5)...)
	}
	kids, err := s.SplitShard(project, logstore, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		want = append(want, appendGroup(t, s, g, k, 5)...)
	}
	waitFor(t, 60*time.Second, "the fresh logs and the children's", func() bool { return holdsAll(ids(t, sp.snapshot()), want) })
	r.stop()
	for _, id := range ids(t, sp.snapshot()) {
		if old[id] {
			t.Fatalf("log %s, written before the start with start: end, was spooled", id)
		}
	}
}

// A split while no relay runs: restarted with start: end, the relay reads
// the children (no checkpoint; their parent has one) from their beginning.
func TestWorker_StartEndReadsChildrenOfSplitWhileStopped(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
	g := slstest.NewGenerator(slstest.KindAudit, 52)
	cps := openStore(t)
	sp := &memSpool{}
	r := startAt(t, s, "relay-1", "end", cps, sp)
	waitStarted(t, r, 2)
	first := appendGroup(t, s, g, 1, 5)
	waitFor(t, 60*time.Second, "shard 1's fresh logs", func() bool { return holdsAll(ids(t, sp.snapshot()), first) })
	r.stop()
	if s.Checkpoints(project, logstore, group)[1] == "" {
		t.Fatal("shard 1 has no group checkpoint after a graceful stop")
	}
	kids, err := s.SplitShard(project, logstore, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range kids {
		want = append(want, appendGroup(t, s, g, k, 5)...)
	}
	// The split is older than the restart by more than createTime's one
	// second resolution: the relay must tell a child by its parent, not
	// by its age.
	time.Sleep(1100 * time.Millisecond)
	sp2 := &memSpool{}
	r2 := startAt(t, s, "relay-1", "end", cps, sp2)
	waitFor(t, 60*time.Second, "the children's logs written while stopped", func() bool { return holdsAll(ids(t, sp2.snapshot()), want) })
	r2.stop()
}
