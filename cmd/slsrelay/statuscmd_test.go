package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/internal/failpoint"
)

// `slsrelay status --addr` against a running relay: exit 0 and the table
// while delivering, 1 once a sink refuses (degraded), with -o json the
// /status document itself.
func TestStatusCommand_ExitCodes(t *testing.T) {
	w := newWorld(t, 2, 2000, 100, hectest.Options{})
	cfg := w.config()
	cfg.DrainOnly, cfg.Sources = true, nil
	fastHealth(cfg)
	addr := freeAddr(t)
	cfg.Metrics.Listen = addr
	startRelay(t, cfg, nil)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), append([]string{"status"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	waitFor(t, 30*time.Second, "the status endpoint", func() bool {
		resp, err := http.Get("http://" + addr + "/status")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	code, out, errs := run("--addr", addr)
	if code != 0 || !strings.Contains(out, "slsrelay ") || !strings.Contains(out, ": DELIVERING") || !regexpLine(out, `^hec\s+delivering\s`) {
		t.Errorf("delivering: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = run("--addr", addr, "-o", "json")
	if code != 0 || !strings.HasPrefix(out, "{") || !strings.Contains(out, `"state": "delivering"`) {
		t.Errorf("-o json: exit %d\n%s", code, out)
	}
	if code, _, errs = run("--addr", "127.0.0.1:1"); code != statusExitUnknown || !strings.Contains(errs, "not reachable") {
		t.Errorf("nothing listening: exit %d, stderr %q; want 3 and 'not reachable'", code, errs)
	}
	if code, _, _ = run(); code != 2 {
		t.Errorf("no --config or --addr: exit %d, want 2 (usage)", code)
	}
}

// fsync failing (SLSRELAY_FAILERR in the failpoints binary): /healthz
// fails (the process needs a restart once the disk is fixed), the relay is
// stalled with the fsync error as the reason, and `slsrelay status
// --config` exits 2 saying so, without the config's secrets in its
// environment.
func TestStatusCommand_FsyncFailing(t *testing.T) {
	bin := chaosBinary(t)
	w := newWorld(t, 2, 20000, 100, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Down: true})
	addr := freeAddr(t)
	cfgPath := writeConfigFile(t, w, filepath.Join(w.dir, "data"), 2)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, fmt.Sprintf("metrics: {listen: %q}\n", addr)...)
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(w.dir, "relay.log")
	t.Setenv("E2E_AK_SECRET", testAKSecret)
	p := startProc(t, bin, cfgPath, log, fmt.Sprintf("%s=%s=20", failpoint.ErrEnvVar, failpoint.SpoolFsync))
	defer p.kill()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", tail(log, 30))
		}
	})
	var body string
	waitFor(t, time.Minute, "/healthz failing", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		body = b.String()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "fsync") {
		t.Errorf("/healthz body %q does not name fsync", body)
	}
	cmd := exec.Command(bin, "status", "--config", cfgPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no E2E_AK_SECRET
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != statusExitStalled || !strings.Contains(out.String(), "STALLED") || !strings.Contains(out.String(), "fsync") {
		t.Errorf("status: exit %d (%v), want 2\nstdout:\n%s\nstderr:\n%s", code, err, out.String(), errb.String())
	}
}
