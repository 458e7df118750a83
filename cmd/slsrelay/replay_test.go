package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"slsrelay/checkpoint"
	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// appendIDs appends groups log groups of perGroup generated logs, round
// robin over the readwrite shards, and returns their event ids.
func appendIDs(t *testing.T, srv *slstest.Server, gen *slstest.Generator, groups, perGroup int) []string {
	t.Helper()
	var ids []string
	for range groups {
		lg := gen.LogGroup(perGroup)
		for _, l := range lg.Logs {
			ids = append(ids, logField(l, "event_id"))
		}
		if err := srv.Append(testProject, testLogstore, -1, lg); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// nextSecond sleeps past the next whole second and returns it: what was
// appended before was received before it, what is appended after at or
// after it (SLS cursors by time count in seconds).
func nextSecond() time.Time {
	next := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(next) + 20*time.Millisecond)
	return next.UTC()
}

// runReplayCmd runs the replay command in-process against cfg and returns
// its stdout and error.
func runReplayCmd(t *testing.T, cfg *Config, args ...string) (string, error) {
	t.Helper()
	a, err := parseReplayArgs(append([]string{"--config", "unused.yaml", "--progress-interval", "200ms"}, args...), testWriter{t}, time.Now())
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	log := newLogger(testWriter{t}, LogConfig{Level: "info", Format: "text"})
	err = replay(context.Background(), cfg, a, &out, log)
	t.Logf("replay stdout:\n%s", out.String())
	return out.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// fileIDs reads the event ids of every line of a file sink's files.
func fileIDs(t *testing.T, pattern string) map[string]int {
	t.Helper()
	names, _ := filepath.Glob(pattern)
	out := map[string]int{}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			var v map[string]string
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out[v["event_id"]]++
		}
	}
	return out
}

func fileSinkConfig(w *world, c *Config) string {
	pattern := filepath.Join(w.dir, "export", "audit-*.jsonl")
	c.Sinks = []SinkConfig{{Name: "export", Type: "file", File: &FileConfig{Path: filepath.Join(w.dir, "export", "audit.jsonl"), Format: "raw"}}}
	return pattern
}

func sameIDs(t *testing.T, got map[string]int, want []string) {
	t.Helper()
	for _, id := range want {
		if got[id] == 0 {
			t.Errorf("event %s of the range is missing", id)
		}
	}
	in := map[string]bool{}
	for _, id := range want {
		in[id] = true
	}
	for id := range got {
		if !in[id] {
			t.Errorf("event %s from outside the range was replayed", id)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestReplay_BesideLiveRelay: a live relay delivers the logstore to a HEC
// receiver while a replay of a range, tagged, goes to the same receiver:
// every event of the range arrives through the replay, none from outside.
func TestReplay_BesideLiveRelay(t *testing.T) {
	w := newWorld(t, 4, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, 7)
	before := appendIDs(t, w.sls, gen, 8, 50)
	from := nextSecond()
	inside := appendIDs(t, w.sls, gen, 12, 50)
	to := nextSecond()
	after := appendIDs(t, w.sls, gen, 8, 50)

	cfg := w.config()
	live := startRelay(t, cfg, nil)
	defer live.stop()
	out, err := runReplayCmd(t, cfg, "--source", testProject+"/"+testLogstore,
		"--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--tag")
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	total := len(before) + len(inside) + len(after)
	waitFor(t, 60*time.Second, "the live relay's delivery", func() bool {
		n, _, _ := received(w.hec)
		return n == total
	})
	replayed := map[string]int{}
	liveIDs := map[string]bool{}
	for _, ev := range w.hec.Events() {
		id := eventID(ev.Event)
		if tag, _ := ev.Fields["replay"].(string); tag != "" {
			if !strings.HasPrefix(tag, testProject+"_"+testLogstore+"_") {
				t.Errorf("replay tag %q", tag)
			}
			replayed[id]++
		} else {
			liveIDs[id] = true
		}
	}
	sameIDs(t, replayed, inside)
	if len(liveIDs) != total {
		t.Errorf("the live relay delivered %d distinct events, want %d", len(liveIDs), total)
	}
	if want := "replay: 4 shards, 600 events, delivered 600, dead-lettered 0, missing none (aged out)"; !strings.HasPrefix(lastLine(out), want) {
		t.Errorf("summary %q, want it to start with %q", lastLine(out), want)
	}
	if !strings.Contains(out, `"replay":"`) {
		t.Errorf("no JSON progress line in %q", out)
	}
}

// TestReplay_SplitShard: a shard split, and its children merged again,
// inside the range; the read-only parents and the children are all read.
func TestReplay_SplitShard(t *testing.T) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, 8)
	appendIDs(t, w.sls, gen, 4, 20)
	from := nextSecond()
	inside := appendIDs(t, w.sls, gen, 6, 20)
	children, err := w.sls.SplitShard(testProject, testLogstore, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	inside = append(inside, appendIDs(t, w.sls, gen, 9, 20)...)
	if _, err := w.sls.MergeShards(testProject, testLogstore, children[0]); err != nil {
		t.Fatal(err)
	}
	inside = append(inside, appendIDs(t, w.sls, gen, 6, 20)...)
	to := nextSecond()
	appendIDs(t, w.sls, gen, 6, 20)

	cfg := w.config()
	pattern := fileSinkConfig(w, cfg)
	out, err := runReplayCmd(t, cfg, "--source", testProject+"/"+testLogstore, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, fileIDs(t, pattern), inside)
	if !strings.HasPrefix(lastLine(out), "replay: 5 shards, 420 events, delivered 420,") {
		t.Errorf("summary %q", lastLine(out))
	}
}

// TestReplay_AgedOut: the range reaches back past the retention; what is
// held is replayed and the missing part is named, exit status 3.
func TestReplay_AgedOut(t *testing.T) {
	w := newWorld(t, 1, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, 9)
	tA := time.Now()
	old := appendIDs(t, w.sls, gen, 3, 10)
	held0 := nextSecond()
	tB := time.Now()
	held := appendIDs(t, w.sls, gen, 4, 10)
	// Expire what came before held0, then keep the rest for a day (the
	// emulator reports its retention in days, as SLS does).
	if err := w.sls.SetTTL(testProject, testLogstore, time.Since(tA.Add(tB.Sub(tA)/2))); err != nil {
		t.Fatal(err)
	}
	if err := w.sls.SetTTL(testProject, testLogstore, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	nextSecond() // "now" counts whole seconds: let the held data's pass
	cfg := w.config()
	pattern := fileSinkConfig(w, cfg)
	out, err := runReplayCmd(t, cfg, "--source", testProject+"/"+testLogstore, "--from", "-48h", "--to", "now")
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 3 {
		t.Fatalf("got %v, want exit status 3", err)
	}
	got := fileIDs(t, pattern)
	sameIDs(t, got, held)
	for _, id := range old {
		if got[id] > 0 {
			t.Fatalf("aged-out event %s delivered", id)
		}
	}
	summary := lastLine(out)
	if want := ", " + held0.Format(time.RFC3339) + ") (aged out)"; !strings.Contains(summary, want) {
		t.Errorf("summary %q does not name the missing part up to %s", summary, held0.Format(time.RFC3339))
	}
	if !strings.HasPrefix(summary, "replay: 1 shards, 40 events, delivered 40, dead-lettered 0, missing [") {
		t.Errorf("summary %q", summary)
	}
	cps := openJobStore(t, filepath.Join(cfg.DataDir, "replay"))
	gaps, _ := cps.Gaps()
	if len(gaps) != 1 || !gaps[0].To.Equal(held0) {
		t.Errorf("recorded gaps %+v, want one up to %s", gaps, held0)
	}
}

// TestReplay_EmptyRange: a range with no data delivers nothing and
// succeeds.
func TestReplay_EmptyRange(t *testing.T) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, 10)
	appendIDs(t, w.sls, gen, 4, 10)
	from := nextSecond()
	to := nextSecond()
	appendIDs(t, w.sls, gen, 4, 10)
	cfg := w.config()
	pattern := fileSinkConfig(w, cfg)
	out, err := runReplayCmd(t, cfg, "--source", testProject+"/"+testLogstore, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	if got := fileIDs(t, pattern); len(got) != 0 {
		t.Errorf("%d events written", len(got))
	}
	if !strings.HasPrefix(lastLine(out), "replay: 0 shards, 0 events, delivered 0, dead-lettered 0, missing none (aged out)") {
		t.Errorf("summary %q", lastLine(out))
	}
}

// TestReplay_LogTime: with --log-time only logs whose own __time__ is in
// the range are kept, though all were received inside it.
func TestReplay_LogTime(t *testing.T) {
	w := newWorld(t, 1, 0, 0, hectest.Options{})
	from := nextSecond()
	var inside []string
	lg := &sls.LogGroup{Topic: proto.String("t")}
	for i := range 40 {
		id := "lt-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		sec := from.Unix()
		if i%2 == 1 {
			sec -= 86400 // logged a day before it reached SLS
		} else {
			inside = append(inside, id)
		}
		lg.Logs = append(lg.Logs, &sls.Log{Time: proto.Uint32(uint32(sec)),
			Contents: []*sls.LogContent{{Key: proto.String("event_id"), Value: proto.String(id)}}})
	}
	if err := w.sls.Append(testProject, testLogstore, 0, lg); err != nil {
		t.Fatal(err)
	}
	to := nextSecond()
	cfg := w.config()
	pattern := fileSinkConfig(w, cfg)
	out, err := runReplayCmd(t, cfg, "--source", testProject+"/"+testLogstore, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--log-time")
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, fileIDs(t, pattern), inside)
	if want := "replay: 1 shards, 20 events, delivered 20, dead-lettered 0, missing none (aged out), in "; !strings.HasPrefix(lastLine(out), want) ||
		!strings.HasSuffix(lastLine(out), "; 20 outside the log-time range skipped") {
		t.Errorf("summary %q", lastLine(out))
	}
}

// TestReplay_BadInputs: a bad --source, an inverted or future range, bad
// times: a clear error, a non-zero exit, nothing written.
func TestReplay_BadInputs(t *testing.T) {
	w := newWorld(t, 1, 0, 0, hectest.Options{})
	path, dataDir := replayConfigFile(t, w, "")
	src := testProject + "/" + testLogstore
	for _, c := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"no such logstore", []string{"--source", testProject + "/nope", "--from", "-1h", "--to", "now"}, "--source " + testProject + "/nope: ", 1},
		{"no such project", []string{"--source", "nope-project/audit", "--from", "-1h", "--to", "now"}, "--source nope-project/audit: ", 1},
		{"source without logstore", []string{"--source", testProject, "--from", "-1h", "--to", "now"}, "want PROJECT/LOGSTORE", 1},
		{"inverted", []string{"--source", src, "--from", "-1h", "--to", "-2h"}, "is not before --to", 1},
		{"empty", []string{"--source", src, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, "is not before --to", 1},
		{"future", []string{"--source", src, "--from", "-1h", "--to", "+1h"}, "is in the future", 1},
		{"bad time", []string{"--source", src, "--from", "yesterday", "--to", "now"}, `--from: "yesterday" is not an RFC 3339 time`, 1},
		{"unknown sink", []string{"--source", src, "--from", "-1h", "--to", "now", "--sink", "splunk"}, `--sink "splunk": the config has no such sink (it has export)`, 1},
		{"missing flags", []string{"--source", src}, "--from, --to required", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(context.Background(), append([]string{"replay", "--config", path}, c.args...), &stdout, &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), c.code, c.want)
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was created: %v", err)
			}
			if _, err := os.Stat(filepath.Join(w.dir, "export")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the file sink's directory was created: %v", err)
			}
		})
	}
}

// openJobStore opens the checkpoint store of the only job under dir.
func openJobStore(t *testing.T, dir string) *checkpoint.Store {
	t.Helper()
	jobs, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(jobs) != 1 {
		t.Fatalf("jobs under %s: %v", dir, jobs)
	}
	s, err := checkpoint.Open(jobs[0], checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// replayConfigFile writes a config with a raw file sink for w.
func replayConfigFile(t *testing.T, w *world, extra string) (path, dataDir string) {
	t.Helper()
	dataDir = filepath.Join(w.dir, "data")
	y := fmt.Sprintf(`data_dir: %s
log: {level: info, format: json}
shutdown_timeout: 10s
sls:
  endpoint: %s
  connect_to: %s
  access_key_id: %s
  access_key_secret: %s
sources:
  - project: %s
    logstore: %s
    max_fetch_log_groups: 2
spool: {max_bytes: 256MiB, min_free_bytes: 16MiB, segment_bytes: 2MiB}
sinks:
  - name: export
    type: file
    file: {path: %s, format: raw}
%s`, dataDir, w.sls.Endpoint(), w.sls.Addr(), testAKID, testAKSecret, testProject, testLogstore,
		filepath.Join(w.dir, "export", "audit.jsonl"), extra)
	path = filepath.Join(w.dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dataDir
}

// TestRelay_FileSink: run delivers a logstore into a file sink, each event
// once, as lines of the HEC event object.
func TestRelay_FileSink(t *testing.T) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	ids := appendIDs(t, w.sls, slstest.NewGenerator(slstest.KindAudit, 11), 20, 50)
	cfg := w.config()
	dir := filepath.Join(w.dir, "export")
	cfg.Sinks = []SinkConfig{{Name: "export", Type: "file", File: &FileConfig{Path: filepath.Join(dir, "audit.jsonl"), MaxBytes: 64 << 10}}}
	r := startRelay(t, cfg, nil)
	got := map[string]int{}
	waitFor(t, 60*time.Second, "every event in the files", func() bool {
		got = map[string]int{}
		names, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
		for _, name := range names {
			b, _ := os.ReadFile(name)
			for l := range strings.SplitSeq(string(b), "\n") {
				if id := eventID([]byte(l)); id != "" {
					got[id]++
				}
			}
		}
		return len(got) == len(ids)
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	sameIDs(t, got, ids)
	names, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	if len(names) < 2 {
		t.Errorf("%d files, want rotation at 64KiB", len(names))
	}
	b, _ := os.ReadFile(names[0])
	var ev struct {
		Time   float64           `json:"time"`
		Source string            `json:"source"`
		Event  map[string]string `json:"event"`
		Fields map[string]string `json:"fields"`
	}
	if err := json.Unmarshal(bytes.SplitN(b, []byte("\n"), 2)[0], &ev); err != nil || ev.Time == 0 ||
		ev.Source != "sls:"+testProject+":"+testLogstore || ev.Event["event_id"] == "" || ev.Fields["sls_logstore"] != testLogstore {
		t.Errorf("first line %+v (%v)", ev, err)
	}
}

func TestParseReplayTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 4, 30, 15, 700_000_000, time.UTC)
	for _, c := range []struct {
		in, want string
	}{
		{"now", "2026-12-07T04:30:15Z"},
		{"-24h", "2026-12-06T04:30:15Z"},
		{"-90m", "2026-12-07T03:00:15Z"},
		{"+0s", "2026-12-07T04:30:15Z"},
		{"2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-12-01T08:00:00.9+08:00", "2026-12-01T00:00:00Z"},
		{"yesterday", "error"},
		{"-1d", "error"},
		{"2026-12-01", "error"},
	} {
		got, err := parseReplayTime(c.in, now)
		s := got.Format(time.RFC3339Nano)
		if err != nil {
			s = "error"
		}
		if s != c.want {
			t.Errorf("parseReplayTime(%q) = %s (%v), want %s", c.in, s, err, c.want)
		}
	}
}

// TestReplay_DeadLetters: events the SIEM rejects for good are
// dead-lettered in the job's spool and counted in the summary; the job
// still completes (exit 0).
func TestReplay_DeadLetters(t *testing.T) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	w.hec.SetFault(hectest.Fault{RejectEvent: func(ev hectest.Event) (int, int, string, bool) {
		return 400, 6, "", strings.HasSuffix(eventID(ev.Event), "7")
	}})
	from := nextSecond()
	ids := appendIDs(t, w.sls, slstest.NewGenerator(slstest.KindAudit, 12), 10, 20)
	to := nextSecond()
	out, err := runReplayCmd(t, w.config(), "--source", testProject+"/"+testLogstore, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, id := range ids {
		if strings.HasSuffix(id, "7") {
			bad = append(bad, id)
		}
	}
	want := fmt.Sprintf("replay: 2 shards, %d events, delivered %d, dead-lettered %d, missing none (aged out)", len(ids), len(ids)-len(bad), len(bad))
	if !strings.HasPrefix(lastLine(out), want) {
		t.Errorf("summary %q, want %q", lastLine(out), want)
	}
	n, _, _ := received(w.hec)
	if n != len(ids)-len(bad) {
		t.Errorf("received %d distinct events, want %d", n, len(ids)-len(bad))
	}
}

// TestReplay_Query: --query filters on the SLS side.
func TestReplay_Query(t *testing.T) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, 13)
	from := nextSecond()
	var want []string
	for range 10 {
		lg := gen.LogGroup(20)
		for _, l := range lg.Logs {
			if logField(l, "eventType") == "ConsoleSignin" {
				want = append(want, logField(l, "event_id"))
			}
		}
		if err := w.sls.Append(testProject, testLogstore, -1, lg); err != nil {
			t.Fatal(err)
		}
	}
	to := nextSecond()
	if len(want) == 0 || len(want) == 200 {
		t.Fatalf("%d of 200 logs match: the filter would prove nothing", len(want))
	}
	cfg := w.config()
	pattern := fileSinkConfig(w, cfg)
	out, err := runReplayCmd(t, cfg, "--source", testProject+"/"+testLogstore, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--query", "* | where eventType = 'ConsoleSignin'")
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, fileIDs(t, pattern), want)
	if !strings.HasPrefix(lastLine(out), fmt.Sprintf("replay: 2 shards, %d events, delivered %d,", len(want), len(want))) {
		t.Errorf("summary %q", lastLine(out))
	}
}
