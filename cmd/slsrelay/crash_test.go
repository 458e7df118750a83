package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

func writeConfigFile(t *testing.T, w *world, dataDir string, maxFetch int) string {
	t.Helper()
	y := fmt.Sprintf(`data_dir: %s
log: {level: info, format: json}
shutdown_timeout: 10s
sls:
  endpoint: %s
  connect_to: %s
  access_key_id: %s
  access_key_secret: ${E2E_AK_SECRET}
sources:
  - project: %s
    logstore: %s
    heartbeat_interval: 1s
    fetch_interval: 50ms
    max_fetch_log_groups: %d
    checkpoint_interval: 500ms
spool: {max_bytes: 256MiB, min_free_bytes: 16MiB, segment_bytes: 2MiB}
sinks:
  - type: hec
    hec:
      url: %s
      token: %s
`, dataDir, w.sls.Endpoint(), w.sls.Addr(), testAKID, testProject, testLogstore, maxFetch, w.hec.URL(), testToken)
	path := filepath.Join(w.dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRelay_CrashLoop kills the built binary with SIGKILL at least 5 times at
// different points of one run — during start-up, ingest, delivery, a HEC
// outage and the drain after it — restarting it each time. Every log must
// arrive, and duplicates stay within the design's bound: per kill, one
// in-flight record per sink plus one pull per shard.
func TestRelay_CrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop runs the binary; skipped with -short")
	}
	bin := relayBinary(t)
	t.Setenv("E2E_AK_SECRET", testAKSecret)
	const shards, perGroup, maxFetch = 4, 100, 10
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	exp := writeLogs(t, w.sls, shards, 300, perGroup, 21)
	cfgPath := writeConfigFile(t, w, filepath.Join(w.dir, "data"), maxFetch)
	logPath := filepath.Join(w.dir, "relay.log")

	// More logs arrive while the relay is being killed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	liveDone := make(chan int, 1)
	go func() {
		gen := slstest.NewGenerator(slstest.KindAudit, 22)
		n := 0
		for i := 0; i < 200 && ctx.Err() == nil; i++ {
			lg := gen.LogGroup(perGroup)
			if w.sls.Append(testProject, testLogstore, i%shards, lg) != nil {
				break
			}
			n += len(lg.Logs)
			time.Sleep(15 * time.Millisecond)
		}
		liveDone <- n
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	kills := []struct {
		name  string
		setup func()
		wait  func() bool
	}{
		{"during start-up", nil, func() bool { return true }},
		{"during ingest", nil, func() bool { return w.hec.EventCount() > 0 }},
		{"mid-delivery with slow HEC", func() { w.hec.SetFault(hectest.Fault{Delay: 300 * time.Millisecond}) }, func() bool { return w.hec.EventCount() > 20000 }},
		{"during a HEC outage", func() { w.hec.SetFault(hectest.Fault{Status: 503, Code: 9}) }, func() bool { return true }},
		{"while acks of a drain are in flight", func() { w.hec.SetFault(hectest.Fault{}) }, func() bool { return w.hec.EventCount() > 35000 }},
		{"during the drain", nil, func() bool { return w.hec.EventCount() > 45000 }},
	}
	for i, k := range kills {
		if k.setup != nil {
			k.setup()
		}
		p := startProc(t, bin, cfgPath, logPath)
		deadline := time.Now().Add(60 * time.Second)
		for !k.wait() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		p.kill()
		t.Logf("kill %d (%s): HEC has %d events", i+1, k.name, w.hec.EventCount())
	}
	w.hec.SetFault(hectest.Fault{})
	total := len(exp.logs) + <-liveDone
	p := startProc(t, bin, cfgPath, logPath)
	waitFor(t, 3*time.Minute, "every event after the last restart", func() bool {
		u, _, _ := received(w.hec)
		return u >= total
	})
	if _, clean := p.term(30 * time.Second); !clean {
		t.Errorf("graceful stop after the crash loop: not a clean exit (its status and log are above)")
	}
	unique, dups, _ := received(w.hec)
	bound := len(kills) * (1 + shards) * maxFetch * perGroup
	t.Logf("%d kills: delivered %d/%d, %d duplicates (bound %d)", len(kills), unique, total, dups, bound)
	if unique != total {
		t.Errorf("delivered %d unique events, want %d", unique, total)
	}
	if dups > bound {
		t.Errorf("%d duplicates exceed the bound of %d", dups, bound)
	}
}
