package ingest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"slsrelay/ingest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// The status fields of WorkerStats say what the loop sees: a place in the
// group, the shards held with their durable cursors, lag 0 once caught up,
// every error class present.
func TestWorker_StatsFilled(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 80, 10, 31); err != nil {
		t.Fatal(err)
	}
	a := &memSpool{}
	r := startRelay(t, s, "relay-1", openStore(t), a)
	w := r.in.Workers()[0]
	waitFor(t, 60*time.Second, "every shard held and caught up", func() bool {
		st := w.Stats()
		if !st.Consumer || st.LastHeartbeat.IsZero() || st.LastPull.IsZero() || len(st.Shards) != 4 || st.Logs != 80 {
			return false
		}
		for _, sh := range st.Shards {
			if !sh.Held || sh.Cursor == "" || sh.LagSeconds != 0 || sh.LastPull.IsZero() {
				return false
			}
		}
		return true
	})
	st := w.Stats()
	for _, c := range ingest.ErrorClasses {
		if _, ok := st.Errors[c]; !ok {
			t.Errorf("Errors lacks class %q: %v", c, st.Errors)
		}
	}
	c := newClient(s)
	for _, sh := range st.Shards {
		end, _ := c.GetCursor(project, logstore, sh.Shard, "end")
		if sh.Cursor != end || sh.BehindBytes != -1 {
			t.Errorf("shard %d: cursor %s behind %d; want %s, -1", sh.Shard, sh.Cursor, sh.BehindBytes, end)
		}
	}
	r.stop()
	if st := w.Stats(); st.Consumer {
		t.Error("still a consumer after Run returned")
	}
}

// Shutdown is bounded by ShutdownTimeout: a pull stuck in a spool that
// never takes it is abandoned, and nothing is checkpointed for it.
func TestIngest_ShutdownAbandonsStuckPull(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 40, 10, 32); err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{}, 16)
	never := make(chan struct{})
	a := &memSpool{put: func(context.Context, *spool.Record) error {
		stuck <- struct{}{}
		<-never // ignores ctx, like a wedged disk
		return nil
	}}
	cps := openStore(t)
	in, err := ingest.New(ingest.Options{Sources: []ingest.Source{testSource(s, "relay-1")}, Spools: []ingest.Spool{a},
		Checkpoints: cps, ShutdownTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	select {
	case <-stuck:
	case <-time.After(60 * time.Second):
		t.Fatal("no pull reached the spool")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(60 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("Run did not return after its shutdown timeout")
	}
	close(never)
	cs, err := cps.Cursors(project, logstore)
	if err != nil {
		t.Fatal(err)
	}
	for shard, c := range cs {
		t.Errorf("shard %d checkpointed at %s although nothing was spooled", shard, c.Cursor)
	}
	if got := s.Checkpoints(project, logstore, group); len(got) != 0 {
		t.Errorf("SLS checkpoints %v although nothing was spooled", got)
	}
}

// Shutdown is bounded by ShutdownTimeout also while SLS sits on an answer
// to the consumer group's own requests (heartbeat, shard list): the SDK
// takes no context, so such a request ends only with the HTTP client's
// timeout (sls.timeout, a minute by default), which used to hold a stopping
// relay that long before its shutdown even began. Here the client has no
// timeout and SLS answers nothing for an hour once the worker is running.
func TestIngest_ShutdownWhileSLSHoldsGroupRequest(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
	g := slstest.NewGenerator(slstest.KindAudit, 33)
	want := appendGroup(t, s, g, 0, 10)
	src := testSource(s, "relay-1")
	src.HTTPClient = &http.Client{Transport: s.HTTPClient().Transport} // no timeout
	src.HeartbeatInterval, src.HeartbeatTimeout = 50*time.Millisecond, time.Minute
	a := &memSpool{}
	in, err := ingest.New(ingest.Options{Sources: []ingest.Source{src}, Spools: []ingest.Spool{a},
		Checkpoints: openStore(t), ShutdownTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer cancel()
	waitFor(t, 60*time.Second, "the shard's logs spooled", func() bool { return len(ids(t, a.snapshot())) == len(want) })
	w := in.Workers()[0]
	s.SetFaults(project, logstore, slstest.Faults{Latency: time.Hour})
	t.Cleanup(func() { s.SetFaults(project, logstore, slstest.Faults{}) })
	// Stuck in a group request: no heartbeat for 40 intervals (a slow
	// machine only makes this wait longer; a worker not stuck yet would
	// make the test pass, never fail, wrongly).
	waitFor(t, 60*time.Second, "the worker stuck in a consumer-group request", func() bool {
		return time.Since(w.Stats().LastHeartbeat) > 40*src.HeartbeatInterval
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(60 * time.Second): // a hang guard: SLS answers in an hour
		t.Fatal("Run did not return after its context ended while SLS held the answer to a heartbeat: shutdown waits for the request, not ShutdownTimeout")
	}
	if w.Stats().Consumer {
		t.Error("still a consumer after Run returned")
	}
}

// A shard whose pull waits on a full spool shows a lag that keeps growing,
// and 0 again once it caught up.
func TestWorker_LagGrowsWhileSpoolBlocks(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	g := slstest.NewGenerator(slstest.KindAudit, 33)
	if err := s.Append(project, logstore, 0, g.LogGroup(5)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	a := &memSpool{put: func(ctx context.Context, r *spool.Record) error {
		if r.Shard != 0 {
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	r := startRelay(t, s, "relay-1", openStore(t), a)
	w := r.in.Workers()[0]
	lag := func() float64 {
		for _, sh := range w.Stats().Shards {
			if sh.Shard == 0 {
				return sh.LagSeconds
			}
		}
		return -1
	}
	var first float64
	waitFor(t, 60*time.Second, "a lag on the blocked shard", func() bool { first = lag(); return first > 0 })
	waitFor(t, 60*time.Second, "the lag growing while blocked", func() bool { return lag() > first })
	close(release)
	waitFor(t, 60*time.Second, "lag 0 once caught up", func() bool { return lag() == 0 })
}
