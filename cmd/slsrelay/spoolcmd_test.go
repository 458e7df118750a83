package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// TestSpoolCommand: HEC rejects a few events for bad data (400 code 6), so
// the relay dead-letters exactly those; `slsrelay spool stat` and `dump`
// show them with their reason and contents; after the cause is "fixed",
// `spool requeue` puts them back and the next run delivers them. Nothing is
// lost on the way.
func TestSpoolCommand(t *testing.T) {
	const shards, groups, perGroup = 2, 20, 50
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	exp := writeLogs(t, w.sls, shards, groups, perGroup, 31)
	bad := map[string]bool{}
	for _, id := range exp.order[100:103] {
		bad[id] = true
	}
	var mu sync.Mutex
	rejecting := true
	w.hec.SetFault(hectest.Fault{RejectEvent: func(ev hectest.Event) (int, int, string, bool) {
		mu.Lock()
		defer mu.Unlock()
		var b struct {
			ID string `json:"event_id"`
		}
		json.Unmarshal(ev.Event, &b)
		return 400, 6, "Invalid data format", rejecting && bad[b.ID]
	}})
	cfg := w.config()
	rr := startRelay(t, cfg, nil)
	total := len(exp.logs)
	waitFor(t, time.Minute, "all good events", func() bool { return w.hec.EventCount() >= total-len(bad) })
	waitFor(t, 30*time.Second, "3 dead letters and an empty spool", func() bool {
		st := rr.r.spools[0].Stats()
		return st.DeadLetters == 3 && st.Depth == 0
	})

	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), append([]string{"spool"}, args...), &out, &errb)
		return out.String() + errb.String(), code
	}
	// stat works while the relay holds the spool.
	out, code := run("stat", "--data-dir", cfg.DataDir)
	t.Logf("spool stat (relay running):\n%s", out)
	if code != 0 || !strings.Contains(out, "DEAD-LETTERS") || !regexpLine(out, `^hec\s+0\s+0B\s+-\s+-\s+3\s`) {
		t.Fatalf("spool stat = %d:\n%s", code, out)
	}
	// requeue does not: the relay holds the lock.
	if out, code := run("requeue", "--data-dir", cfg.DataDir); code != 1 || !strings.Contains(out, "relay stopped") {
		t.Fatalf("requeue with the relay running = %d: %s", code, out)
	}
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}

	out, code = run("dump", "--data-dir", cfg.DataDir, "--events")
	if code != 0 {
		t.Fatalf("spool dump = %d: %s", code, out)
	}
	dumped := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Kind, Reason, Project, Logstore string
			Count                           int
			Events                          []struct {
				Time   string
				Fields map[string]string
			}
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("dump line %q: %v", line, err)
		}
		if e.Kind != "record" || !strings.Contains(e.Reason, "Invalid data format") || e.Project != testProject ||
			e.Logstore != testLogstore || e.Count != 1 || len(e.Events) != 1 {
			t.Fatalf("dump entry %s", line)
		}
		id := e.Events[0].Fields["event_id"]
		want := exp.logs[id]
		if !bad[id] || want == nil || e.Events[0].Fields["requestId"] != logField(want, "requestId") {
			t.Fatalf("dumped event %v is not one of the rejected %v", e.Events[0].Fields, bad)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Events[0].Time); err != nil {
			t.Fatalf("dumped time %q: %v", e.Events[0].Time, err)
		}
		dumped[id] = true
	}
	if len(dumped) != len(bad) {
		t.Fatalf("dumped %v, want %v", dumped, bad)
	}
	if out, _ := run("dump", "--data-dir", cfg.DataDir, "--limit", "1"); strings.Count(out, "\n") != 1 {
		t.Fatalf("dump --limit 1 printed %q", out)
	}
	// -o json: the same entries as one JSON array.
	var arr []map[string]any
	if out, code := run("dump", "--data-dir", cfg.DataDir, "-o", "json"); code != 0 || json.Unmarshal([]byte(out), &arr) != nil || len(arr) != len(bad) {
		t.Fatalf("dump -o json = %d, %d entries: %s", code, len(arr), out)
	}
	var stats []spoolStatJSON
	if out, code := run("stat", "--data-dir", cfg.DataDir, "-o", "json"); code != 0 || json.Unmarshal([]byte(out), &stats) != nil ||
		len(stats) != 1 || stats[0].Sink != "hec" || stats[0].DeadLetters != 3 || !stats[0].Created {
		t.Fatalf("stat -o json = %d: %s", code, out)
	}

	// The cause is fixed; requeue one by reason text that matches nothing,
	// then all of them.
	mu.Lock()
	rejecting = false
	mu.Unlock()
	if out, code := run("requeue", "--data-dir", cfg.DataDir, "--reason", "no such reason"); code != 0 || !strings.HasPrefix(out, "requeued 0 ") {
		t.Fatalf("requeue of nothing = %d: %s", code, out)
	}
	out, code = run("requeue", "--data-dir", cfg.DataDir, "--reason", "code 6")
	if code != 0 || !strings.HasPrefix(out, "requeued 3 ") || !strings.Contains(out, "0 entries left") {
		t.Fatalf("requeue = %d: %s", code, out)
	}
	rr = startRelay(t, cfg, nil)
	waitFor(t, time.Minute, "the requeued events", func() bool { return w.hec.EventCount() >= total })
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}
	unique, _, byID := received(w.hec)
	if unique != total {
		t.Fatalf("%d of %d events delivered after the requeue", unique, total)
	}
	for id := range bad {
		if _, ok := byID[id]; !ok {
			t.Fatalf("requeued event %s not delivered", id)
		}
	}
	out, _ = run("stat", "--data-dir", cfg.DataDir)
	if !regexpLine(out, `^hec\s+0\s+0B\s+-\s+-\s+0\s`) {
		t.Fatalf("spool stat after the redelivery:\n%s", out)
	}
}

// Usage and bad arguments: exit status 2 with the usage, or 1 naming the
// problem.
func TestSpoolCommand_Errors(t *testing.T) {
	dd := t.TempDir()
	for _, sink := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dd, "spool", sink), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "a subcommand is required: stat, dump or requeue (see slsrelay spool --help)"},
		{[]string{"stat"}, 2, "give either --config or --data-dir"},
		{[]string{"frobnicate", "--data-dir", dd}, 2, `unknown subcommand "frobnicate"`},
		{[]string{"stat", "--data-dir", dd, "--config", "x.yaml"}, 2, "give either --config or --data-dir"},
		{[]string{"stat", "--data-dir", dd, "-o", "yaml"}, 2, `-o "yaml" is not an output of spool stat`},
		{[]string{"--help"}, 0, "usage: slsrelay spool"},
		{[]string{"dump", "--data-dir", dd}, 1, "--sink is required: there are 2 sinks (a, b)"},
		{[]string{"dump", "--data-dir", dd, "--sink", "c"}, 1, `no sink named "c" (sinks: a, b)`},
		{[]string{"stat", "--data-dir", filepath.Join(dd, "missing")}, 1, "no spools in"},
		{[]string{"stat", "--config", filepath.Join(dd, "missing.yaml")}, 1, "open config"},
		{[]string{"dump", "--data-dir", dd, "--sink", "a"}, 0, ""},
		{[]string{"dump", "--data-dir", dd, "--sink", "a", "-o", "json"}, 0, "[]\n"},
		{[]string{"stat", "--data-dir", dd, "-o", "json"}, 0, `"sink": "b"`},
	} {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), append([]string{"spool"}, tc.args...), &out, &errb)
		all := out.String() + errb.String()
		if code != tc.code || !strings.Contains(all, tc.want) || (code == 2 && strings.Count(errb.String(), "\n") != 1) {
			t.Errorf("spool %v = %d %q; want %d with %q", tc.args, code, all, tc.code, tc.want)
		}
	}
	// With --config the budget is known.
	cfgPath := filepath.Join(dd, "relay.yaml")
	yaml := fmt.Sprintf("data_dir: %s\nspool:\n  max_bytes: 2GiB\nsls:\n  endpoint: x.example\n  access_key_id: id\n  access_key_secret: s\nsources:\n  - project: p\n    logstore: l\nsinks:\n  - name: a\n    type: hec\n    hec:\n      url: https://splunk:8088\n      token: t\n", dd)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := dispatch(context.Background(), []string{"spool", "stat", "--config", cfgPath}, &out, &out); code != 0 || !regexpLine(out.String(), `^a\s+0\s+0B\s+2GiB\s`) {
		t.Fatalf("stat --config = %d:\n%s", code, out.String())
	}
}

// regexpLine reports whether a line of out matches the regular expression.
func regexpLine(out, expr string) bool {
	re := regexp.MustCompile(expr)
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}
