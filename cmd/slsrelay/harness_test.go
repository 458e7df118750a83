package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// The end-to-end tests run the real relay (in-process, or the built binary)
// against the SLS emulator and the HEC test receiver, all on loopback.

const (
	testProject  = "e2e-project"
	testLogstore = "audit"
	testAKID     = "e2e-ak-id"
	testAKSecret = "e2e-ak-secret-DO-NOT-LOG"
	testToken    = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
)

type world struct {
	sls *slstest.Server
	hec *hectest.Server
	dir string
}

// newWorld starts an emulator with shards shards seeded with n audit logs
// (perGroup per log group) and a HEC receiver.
func newWorld(t *testing.T, shards, n, perGroup int, hecOpts hectest.Options) *world {
	t.Helper()
	w := &world{dir: t.TempDir()}
	w.sls = slstest.NewServer(t, slstest.Options{
		Project:    testProject,
		Logstores:  []slstest.LogstoreOptions{{Name: testLogstore, Shards: shards}},
		AccessKeys: map[string]string{testAKID: testAKSecret},
	})
	if n > 0 {
		if _, err := slstest.Seed(w.sls, testProject, testLogstore, slstest.KindAudit, n, perGroup, 1); err != nil {
			t.Fatal(err)
		}
	}
	if hecOpts.Token == "" {
		hecOpts.Token = testToken
	}
	w.hec = hectest.NewServer(t, hecOpts)
	return w
}

// config is a relay config pointing at the world; tweak before use.
func (w *world) config() *Config {
	c := &Config{
		DataDir: filepath.Join(w.dir, "data"),
		SLS: SLSConfig{Endpoint: w.sls.Endpoint(), ConnectTo: w.sls.Addr(),
			AccessKeyID: testAKID, AccessKeySecret: Secret(testAKSecret)},
		Sources: []Source{{Project: testProject, Logstore: testLogstore,
			HeartbeatInterval: Duration(time.Second), FetchInterval: Duration(50 * time.Millisecond),
			CheckpointInterval: Duration(500 * time.Millisecond)}},
		Spool: SpoolConfig{MaxBytes: 256 << 20, MinFreeBytes: 16 << 20},
		Sinks: []SinkConfig{{Type: "hec", HEC: &HECConfig{URL: w.hec.URL(), Token: testToken},
			Retry: RetryConfig{MinBackoff: Duration(100 * time.Millisecond), MaxBackoff: Duration(2 * time.Second)}}},
		ShutdownTimeout: Duration(10 * time.Second),
	}
	c.applyDefaults()
	return c
}

// running is a relay running in-process.
type running struct {
	r    *relay
	stop func() error
}

func startRelay(t *testing.T, cfg *Config, log *slog.Logger) *running {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r, err := openRelay(cfg, log)
	if err != nil {
		t.Fatalf("open relay: %v", err)
	}
	r.statusEvery = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("relay did not stop within 60s")
			}
			if err := r.Close(); err != nil && stopErr == nil {
				stopErr = err
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{r: r, stop: stop}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// relayBinary returns the built slsrelay binary: $SLSRELAY_BIN (set by make
// test), else one built into a temp dir once per test run.
func relayBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLSRELAY_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slsrelay-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "slsrelay")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatalf("build slsrelay: %v", buildErr)
	}
	return builtBin
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }
