package main

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"slsrelay/checkpoint"
	"slsrelay/deliver/hectest"
)

// TestRelay_AgedOutCheckpoint is invariant 6 of docs/DESIGN.md: logs that expire in
// SLS while the relay is down are reported as a named gap (logs and the
// checkpoint database), and the relay resumes at the oldest data held instead
// of retrying the dead cursor for ever.
func TestRelay_AgedOutCheckpoint(t *testing.T) {
	const shards = 1
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	a := writeLogs(t, w.sls, shards, 10, 100, 31)
	cfg := w.config()
	rr := startRelay(t, cfg, nil)
	waitFor(t, time.Minute, "batch A delivered", func() bool { return w.hec.EventCount() >= len(a.logs) })
	waitFor(t, 10*time.Second, "the SLS checkpoint to be committed", func() bool {
		return len(w.sls.Checkpoints(testProject, testLogstore, DefaultConsumerGroup)) == shards
	})
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}

	// While the relay is down: batch B arrives and ages out, then batch C.
	bWritten := time.Now()
	b := writeLogs(t, w.sls, shards, 10, 100, 32)
	time.Sleep(2100 * time.Millisecond)
	if err := w.sls.SetTTL(testProject, testLogstore, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	c := writeLogs(t, w.sls, shards, 10, 100, 33)

	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rr = startRelay(t, cfg, log)
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("relay log:\n%s", buf.String())
			mu.Unlock()
		}
	})
	waitFor(t, time.Minute, "batch C delivered after the gap", func() bool {
		_, _, byID := received(w.hec)
		for id := range c.logs {
			if _, ok := byID[id]; !ok {
				return false
			}
		}
		return true
	})
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}
	_, _, byID := received(w.hec)
	for id := range b.logs {
		if _, ok := byID[id]; ok {
			t.Fatalf("event %s of the expired batch was delivered: the test did not create a gap", id)
		}
	}
	mu.Lock()
	logged := bytes.Contains(buf.Bytes(), []byte("DATA LOST"))
	mu.Unlock()
	if !logged {
		t.Errorf("the relay did not log the gap loudly; log:\n%s", buf.String())
	}
	st, err := checkpoint.Open(cfg.DataDir, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gaps, err := st.Gaps()
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 {
		t.Fatalf("recorded gaps = %+v, want one", gaps)
	}
	g := gaps[0]
	t.Logf("gap: shard %d from %s to %s (%s)", g.Key.Shard, g.From, g.To, g.Reason)
	if g.To.Before(bWritten.Truncate(time.Second)) {
		t.Errorf("gap ends %s, before the expired batch was written (%s)", g.To, bWritten)
	}
	if !g.From.IsZero() && g.From.After(g.To) {
		t.Errorf("gap from %s after to %s", g.From, g.To)
	}
}
