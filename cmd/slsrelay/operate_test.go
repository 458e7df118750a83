package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// appendLogs writes groups log groups of perGroup audit logs round-robin over
// the shards of project/logstore and returns the event ids written.
func appendLogs(t *testing.T, srv *slstest.Server, project, logstore string, shards, groups, perGroup int, seed int64) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	gen := slstest.NewGenerator(slstest.KindAudit, seed)
	for i := 0; i < groups; i++ {
		lg := gen.LogGroup(perGroup)
		for _, l := range lg.Logs {
			ids[logField(l, "event_id")] = true
		}
		if err := srv.Append(project, logstore, i%shards, lg); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestRelay_SeveralSources: one relay consumes three logstores in two
// projects (one consumer worker each) into one sink; every log arrives once,
// labelled with the project and logstore it came from.
func TestRelay_SeveralSources(t *testing.T) {
	const shards = 2
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	const other = "e2e-project-2"
	if err := w.sls.CreateLogstore(testProject, slstest.LogstoreOptions{Name: "web", Shards: shards}); err != nil {
		t.Fatal(err)
	}
	if err := w.sls.CreateProject(other); err != nil {
		t.Fatal(err)
	}
	if err := w.sls.CreateLogstore(other, slstest.LogstoreOptions{Name: testLogstore, Shards: shards}); err != nil {
		t.Fatal(err)
	}
	type src struct{ project, logstore string }
	srcs := []src{{testProject, testLogstore}, {testProject, "web"}, {other, testLogstore}}
	want := map[string]src{}
	for i, s := range srcs {
		for id := range appendLogs(t, w.sls, s.project, s.logstore, shards, 20, 50, int64(100+i)) {
			want[id] = s
		}
	}
	cfg := w.config()
	base := cfg.Sources[0]
	cfg.Sources = nil
	for _, s := range srcs {
		c := base
		c.Project, c.Logstore = s.project, s.logstore
		cfg.Sources = append(cfg.Sources, c)
	}
	rr := startRelay(t, cfg, nil)
	if n := len(rr.r.ingest.Workers()); n != len(srcs) {
		t.Fatalf("%d consumer workers, want one per source (%d)", n, len(srcs))
	}
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d events at HEC", len(want)), func() bool { return w.hec.EventCount() >= len(want) })
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}
	unique, dups, byID := received(w.hec)
	if unique != len(want) || dups != 0 {
		t.Fatalf("delivered %d unique (+%d duplicates), want %d once each", unique, dups, len(want))
	}
	for id, s := range want {
		e, ok := byID[id]
		if !ok {
			t.Fatalf("event %s of %s/%s not delivered", id, s.project, s.logstore)
		}
		if e.Fields["sls_project"] != s.project || e.Fields["sls_logstore"] != s.logstore {
			t.Fatalf("event %s: project/logstore %v/%v, want %s/%s", id, e.Fields["sls_project"], e.Fields["sls_logstore"], s.project, s.logstore)
		}
	}
}

// TestRelay_StartAtTime: with start set to an RFC 3339 time, a new consumer
// group begins at the first data SLS received at or after it: logs received
// before are skipped, every later one arrives.
func TestRelay_StartAtTime(t *testing.T) {
	const shards = 2
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	old := appendLogs(t, w.sls, testProject, testLogstore, shards, 10, 50, 201)
	// SLS cursors by time have whole-second resolution: leave whole
	// seconds on either side of the start time.
	time.Sleep(1100 * time.Millisecond)
	at := time.Now().Add(time.Second).Truncate(time.Second)
	time.Sleep(time.Until(at) + 1100*time.Millisecond)
	fresh := appendLogs(t, w.sls, testProject, testLogstore, shards, 10, 50, 202)
	cfg := w.config()
	cfg.Sources[0].Start = at.UTC().Format(time.RFC3339)
	rr := startRelay(t, cfg, nil)
	waitFor(t, time.Minute, "the logs after the start time", func() bool { return w.hec.EventCount() >= len(fresh) })
	// Give logs before the start time a chance to show up, were they read.
	time.Sleep(time.Second)
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}
	unique, dups, byID := received(w.hec)
	for id := range byID {
		if old[id] {
			t.Fatalf("log %s, received before the start time %s, was delivered", id, at.Format(time.RFC3339))
		}
	}
	if unique != len(fresh) || dups != 0 {
		t.Fatalf("delivered %d (+%d duplicates), want the %d logs after the start time once", unique, dups, len(fresh))
	}
}

// TestRelay_SecondSignalExitsAtOnce: the first SIGTERM starts a graceful stop
// that waits (here for a HEC answer held for a minute, within a long
// shutdown_timeout); a second signal ends the process at once with status
// 130. That is safe: a restart delivers everything.
func TestRelay_SecondSignalExitsAtOnce(t *testing.T) {
	bin := relayBinary(t)
	w := newWorld(t, 2, 2000, 100, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Delay: time.Minute})
	t.Setenv("E2E_AK_SECRET", testAKSecret)
	cfgPath := writeConfigFile(t, w, filepath.Join(w.dir, "data"), 100)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, bytes.Replace(raw, []byte("shutdown_timeout: 10s"), []byte("shutdown_timeout: 2m"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_AK_SECRET="+testAKSecret)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	// The receiver holds its answers: once SLS served pulls, the relay
	// spools them and its delivery loop sends within moments.
	waitFor(t, time.Minute, "pulls from SLS", func() bool { return w.sls.Stats().Pulls > 0 })
	time.Sleep(2 * time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the relay exited %v on the first signal, while its send was held: the test proves nothing\n%s", err, stderr.String())
	case <-time.After(time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("exit %v, want status 130", err)
		}
		t.Logf("exited %s after the second signal", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after the second signal\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "second signal") {
		t.Errorf("no word of the second signal on stderr:\n%s", stderr.String())
	}

	// Safe: a restart with the SIEM healthy delivers every log.
	w.hec.SetFault(hectest.Fault{})
	p := startProc(t, bin, cfgPath, filepath.Join(w.dir, "relay2.log"))
	waitFor(t, 2*time.Minute, "every log after the restart", func() bool { u, _, _ := received(w.hec); return u >= 2000 })
	if _, clean := p.term(30 * time.Second); !clean {
		t.Fatal("the restarted relay did not stop cleanly (its status and log are above)")
	}
}

// TestDemo_SummaryLine runs `slsrelay demo` (the built binary, small sizes):
// it ends with the summary line of the documented form, nothing lost, and
// exits 0.
func TestDemo_SummaryLine(t *testing.T) {
	bin := relayBinary(t)
	cmd := exec.Command(bin, "demo", "--events", "6000", "--live-events", "2000", "--outage", "2s", "--timeout", "3m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(4 * time.Minute):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Fatalf("demo still running after 4 minutes:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	m := regexp.MustCompile(`^demo: delivered (\d+)/(\d+) events, lost 0, duplicates (\d+)$`).FindStringSubmatch(last)
	if m == nil || m[1] != m[2] || m[2] != "8000" {
		t.Fatalf("last line %q, want \"demo: delivered 8000/8000 events, lost 0, duplicates D\"\n%s", last, out.String())
	}
}
