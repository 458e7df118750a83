package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// A log line never repeats a key, durations are Go duration strings, and
// text output to something that is not a terminal has no ANSI codes.
func TestLogger_Conventions(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, LogConfig{Level: "info", Format: "json"})
	log.With("sink", "a", "component", "x").With("sink", "a").Info("m", "sink", "a", "component", "y", "oldest", 90*time.Second, "n", 1, "n", 2)
	line := buf.String()
	for _, k := range []string{`"sink"`, `"component"`, `"n"`} {
		if strings.Count(line, k) != 1 {
			t.Errorf("key %s %d times in %s", k, strings.Count(line, k), line)
		}
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil || m["oldest"] != "1m30s" || m["component"] != "x" {
		t.Errorf("line %s: oldest %v component %v; want 1m30s and the first value", line, m["oldest"], m["component"])
	}
	buf.Reset()
	newLogger(&buf, LogConfig{Level: "info", Format: "text"}).Warn("careful", "d", time.Second)
	if strings.Contains(buf.String(), "\x1b[") || !strings.Contains(buf.String(), "d=1s") {
		t.Errorf("text output to a buffer: %q; want no ANSI codes and d=1s", buf.String())
	}
	// --log-level and --log-format override the config.
	cli = globalFlags{logLevel: "debug", logFormat: "text"}
	defer func() { cli = globalFlags{} }()
	c := LogConfig{Level: "info", Format: "json"}
	if err := applyLogFlags(&c); err != nil || c.Level != "debug" || c.Format != "text" {
		t.Errorf("applyLogFlags: %+v %v", c, err)
	}
	cli.logLevel = "loud"
	if err := applyLogFlags(&c); err == nil {
		t.Errorf("--log-level loud accepted")
	}
}

// The binary's start line has the version and the config path; SIGTERM
// while HEC refuses connections logs what the relay waits for and until
// when, and the relay exits without sitting out its shutdown_timeout (an
// hour here: exiting at all is the proof). --log-level warn from the
// command line would hide both lines, so it is also checked that it
// overrides the config's info.
func TestRun_StartAndSignalLines(t *testing.T) {
	bin := relayBinary(t)
	w := newWorld(t, 2, 2000, 100, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Down: true})
	cfgPath := writeConfigFile(t, w, filepath.Join(w.dir, "data"), 10)
	raw, _ := os.ReadFile(cfgPath)
	raw = bytes.Replace(raw, []byte("shutdown_timeout: 10s"), []byte("shutdown_timeout: 1h"), 1)
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_AK_SECRET="+testAKSecret)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	})
	waitFor(t, time.Minute, "HEC retries in the log", func() bool { return strings.Contains(out.String(), "hec request failed, retrying") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("still running 2 minutes after SIGTERM (shutdown_timeout 1h)\n%s", out.String())
	}
	var start, stop map[string]any
	for _, l := range strings.Split(out.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		switch msg, _ := m["msg"].(string); {
		case msg == "relay started":
			start = m
		case strings.HasPrefix(msg, "received SIGTERM: stopping"):
			stop = m
		}
		if strings.Count(l, `"sink":`) > 1 || strings.Count(l, `"component":`) > 1 {
			t.Errorf("repeated key: %s", l)
		}
	}
	if start == nil || start["config"] != cfgPath || start["version"] == nil {
		t.Errorf("start line %v: want version and config %s", start, cfgPath)
	}
	if stop == nil || stop["shutdown_timeout"] != "1h0m0s" || stop["until"] == nil {
		t.Errorf("signal line %v: want shutdown_timeout 1h0m0s and until", stop)
	}
	if t.Failed() {
		t.Logf("relay output:\n%s", out.String())
	}
}

// syncBuf is a bytes.Buffer safe for the process's writers and the test.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
