package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// archiveWorld: a live relay with the archive on (retain) has delivered
// events before, inside and after a window of log time to a HEC receiver,
// and archived them (enough after the window that every segment holding
// the window's events has been delivered and archived; the newest segment
// is still the spool's write segment).
type archiveWorld struct {
	*world
	cfg      *Config
	live     *running
	inside   []string
	from, to time.Time
	total    int
}

func newArchiveWorld(t *testing.T, seed int64) *archiveWorld {
	t.Helper()
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, seed)
	before := appendIDs(t, w.sls, gen, 20, 100)
	from := nextSecond()
	inside := appendIDs(t, w.sls, gen, 30, 100)
	to := nextSecond()
	after := appendIDs(t, w.sls, gen, 150, 100)
	cfg := w.config()
	cfg.Spool.SegmentBytes = 1 << 20
	cfg.Sources[0].MaxFetchGroups = 10 // records of 1,000 logs, a few per segment
	cfg.Sinks[0].Spool.Retain = Duration(24 * time.Hour)
	live := startRelay(t, cfg, nil)
	total := len(before) + len(inside) + len(after)
	waitFor(t, 120*time.Second, "the live relay's delivery", func() bool {
		n, _, _ := received(w.hec)
		return n == total
	})
	dir := spoolDir(cfg, "hec")
	waitFor(t, 30*time.Second, "the window's segments in the archive", func() bool {
		st, err := spool.InspectArchive(dir)
		return err == nil && st.Events >= int64(len(before)+len(inside)+len(after)/2)
	})
	st, _ := spool.InspectArchive(dir)
	t.Logf("archive: %d segments, %d bytes, %d events of %d delivered", st.Segments, st.Bytes, st.Events, total)
	return &archiveWorld{world: w, cfg: cfg, live: live, inside: inside, from: from, to: to, total: total}
}

// hecIDs counts the event ids the receiver holds.
func hecIDs(hec *hectest.Server) map[string]int {
	out := map[string]int{}
	for _, ev := range hec.Events() {
		out[eventID(ev.Event)]++
	}
	return out
}

// The receiver loses everything (wiped); a window of log time replayed
// from the archive brings back exactly the window's events, none from
// outside it, with no pull from SLS.
func TestReplaySpool_WindowFromArchive(t *testing.T) {
	aw := newArchiveWorld(t, 31)
	if err := aw.live.stop(); err != nil {
		t.Fatal(err)
	}
	pulls := aw.sls.Stats().Pulls
	aw.hec.Reset()
	out, err := runReplayCmd(t, aw.cfg, "--from-spool", "--sink", "hec",
		"--from", aw.from.Format(time.RFC3339), "--to", aw.to.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	sameIDs(t, hecIDs(aw.hec), aw.inside)
	if got := aw.sls.Stats().Pulls; got != pulls {
		t.Errorf("the replay from the archive pulled from SLS: %d pulls before, %d after", pulls, got)
	}
	want := fmt.Sprintf(" archived segments, %d events, delivered %d, dead-lettered 0, missing none (aged out)", len(aw.inside), len(aw.inside))
	if s := lastLine(out); !strings.HasPrefix(s, "replay: ") || !strings.Contains(s, want) || strings.Contains(s, "NOT REPLAYED") {
		t.Errorf("summary %q, want %q", s, want)
	}
	if !strings.Contains(out, "the archive of sink hec") {
		t.Errorf("start line does not name the archive: %q", out)
	}
	if !strings.Contains(out, `"replay":"archive_hec_`) || !strings.Contains(out, `"percent":100`) {
		t.Errorf("no JSON progress line reaching 100%% in %q", out)
	}
}

// Bad uses of --from-spool fail before anything is written, naming what is
// wrong.
func TestReplaySpool_BadArguments(t *testing.T) {
	w := newWorld(t, 1, 0, 0, hectest.Options{})
	cfg := w.config()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from-spool", "--from", "-1h", "--to", "now"}, "--sink required"},
		{[]string{"--from-spool", "--sink", "nope", "--from", "-1h", "--to", "now"}, `--sink "nope": the config has no such sink`},
		{[]string{"--from-spool", "--sink", "hec", "--to-sink", "nope", "--from", "-1h", "--to", "now"}, `--to-sink "nope"`},
		{[]string{"--from-spool", "--sink", "hec", "--from", "-1h", "--to", "now"}, "has no archive"},
		{[]string{"--source", testProject + "/" + testLogstore, "--to-sink", "hec", "--from", "-1h", "--to", "now"}, "--to-sink needs --from-spool"},
		{[]string{"--from-spool", "--sink", "hec", "--query", "*", "--from", "-1h", "--to", "now"}, "does not apply to --from-spool"},
	} {
		_, err := runReplayCmd(t, cfg, tc.args...)
		if err == nil || (!strings.Contains(err.Error(), tc.want) && !(err == errUsage && strings.Contains(tc.want, "required"))) {
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "replay")); err == nil {
		t.Errorf("a refused replay wrote its data directory")
	}
}

// A damaged archived segment: the replay names the damaged range (summary,
// exit status 3) and delivers every other event of the window.
func TestReplaySpool_CorruptSegment(t *testing.T) {
	aw := newArchiveWorld(t, 32)
	if err := aw.live.stop(); err != nil {
		t.Fatal(err)
	}
	dir := spoolDir(aw.cfg, "hec")
	segs, err := spool.ReadArchive(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Spoil a payload byte in the middle of the first segment that holds
	// the window.
	var victim spool.ArchiveSegment
	for _, s := range segs {
		if s.LogMax >= aw.from.Unix() && s.LogMin < aw.to.Unix() {
			victim = s
			break
		}
	}
	path := filepath.Join(dir, spool.ArchiveDirName, fmt.Sprintf("%012d.seg", victim.ID))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x5a
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	aw.hec.Reset()
	out, err := runReplayCmd(t, aw.cfg, "--from-spool", "--sink", "hec",
		"--from", aw.from.Format(time.RFC3339), "--to", aw.to.Format(time.RFC3339))
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 3 {
		t.Fatalf("got %v, want exit status 3", err)
	}
	summary := lastLine(out)
	if !strings.Contains(summary, fmt.Sprintf("NOT REPLAYED: damaged: %012d.seg bytes [", victim.ID)) {
		t.Fatalf("summary %q does not name the damaged range", summary)
	}
	// The damaged bytes are quarantined in the job's dead-letter queue.
	jobs, _ := filepath.Glob(filepath.Join(aw.cfg.DataDir, "replay", "*", "spool", "hec"))
	quarantined := 0
	for _, j := range jobs {
		for dl, err := range spool.ReadDeadLetters(j) {
			if err != nil {
				t.Fatal(err)
			}
			if dl.Record == nil && dl.Segment == fmt.Sprintf("archive/%012d.seg", victim.ID) && len(dl.Raw) > 0 {
				quarantined++
			}
		}
	}
	if quarantined != 1 {
		t.Errorf("%d quarantined entries of the damaged archived segment in the job's dead-letter queue, want 1", quarantined)
	}
	got := hecIDs(aw.hec)
	missing := 0
	for _, id := range aw.inside {
		if got[id] == 0 {
			missing++
		}
	}
	in := map[string]bool{}
	for _, id := range aw.inside {
		in[id] = true
	}
	for id := range got {
		if !in[id] {
			t.Errorf("event %s from outside the window replayed", id)
		}
	}
	// One record (one pull of one shard: at most 10 groups of 100 logs
	// here) is lost to the damage; the rest of the window arrives.
	if missing == 0 || missing > 1000 {
		t.Errorf("%d events of the window missing, want those of the damaged record only (1..1000)", missing)
	}
	t.Logf("summary: %s", summary)
}

// The archive replay, run beside the live relay (no lock collision), is
// killed with SIGKILL three times at random instants and run again each
// time: it says it resumes, and every event of the window is delivered.
func TestReplaySpool_Kill9Resumes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; skipped with -short")
	}
	bin := relayBinary(t)
	t.Setenv("E2E_AK_SECRET", testAKSecret)
	aw := newArchiveWorld(t, 33)
	cfgPath := writeConfigFile(t, aw.world, aw.cfg.DataDir, 1000)
	y, _ := os.ReadFile(cfgPath)
	y = []byte(strings.Replace(string(y), "segment_bytes: 2MiB", "segment_bytes: 1MiB", 1) + "    spool: {retain: 24h}\n")
	if err := os.WriteFile(cfgPath, y, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(aw.dir, "replay.log")
	outPath := filepath.Join(aw.dir, "replay.out")
	args := []string{"replay", "--config", cfgPath, "--from-spool", "--sink", "hec", "--tag", "--rate", "500",
		"--from", aw.from.Format(time.RFC3339), "--to", aw.to.Format(time.RFC3339), "--progress-interval", "300ms"}
	start := func() *exec.Cmd {
		lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		of, err := os.OpenFile(outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer of.Close()
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = of, lf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(33, 3))
	for i := range 3 {
		cmd := start()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("replay %d ended before its kill (%v):\n%s", i+1, err, tail(logPath, 10))
		case <-time.After(time.Duration(150+rng.IntN(400)) * time.Millisecond):
		}
		_ = cmd.Process.Signal(os.Kill) // SIGKILL, by PID
		<-done
	}
	cmd := start()
	finished := make(chan error, 1)
	go func() { finished <- cmd.Wait() }()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("the last replay failed (%v):\n%s", err, tail(logPath, 20))
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the last replay did not finish:\n%s", tail(logPath, 20))
	}
	outText, _ := os.ReadFile(outPath)
	if n := strings.Count(string(outText), "replay: resuming job "); n == 0 {
		t.Errorf("no run said it was resuming:\n%s", outText)
	}
	if s := tail(outPath, 1); !strings.Contains(s, fmt.Sprintf("%d events, delivered %d, dead-lettered 0, missing none", len(aw.inside), len(aw.inside))) {
		t.Errorf("summary %q", s)
	}
	replayed := map[string]int{}
	for _, ev := range aw.hec.Events() {
		if tag, _ := ev.Fields["replay"].(string); tag != "" {
			replayed[eventID(ev.Event)]++
		}
	}
	sameIDs(t, replayed, aw.inside)
	dups := 0
	for _, n := range replayed {
		dups += n - 1
	}
	t.Logf("window %d events, replayed %d distinct, %d duplicates over 3 kills", len(aw.inside), len(replayed), dups)
}

// spool stat shows the archive (bytes, segments, oldest and newest receive
// times) while the relay runs; the metrics export its bytes, oldest time
// and evictions.
func TestReplaySpool_StatAndMetrics(t *testing.T) {
	aw := newArchiveWorld(t, 34)
	st, err := spool.InspectArchive(spoolDir(aw.cfg, "hec"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch(context.Background(), []string{"spool", "stat", "--data-dir", aw.cfg.DataDir}, &out, &errb); code != 0 {
		t.Fatalf("spool stat = %d: %s", code, errb.String())
	}
	t.Logf("spool stat:\n%s", out.String())
	row := fmt.Sprintf(`^hec\s.*\s%s\s+%d\s+%s\s+%s\s`, regexp.QuoteMeta(humanBytes(st.Bytes)), st.Segments,
		st.Oldest.UTC().Format(time.RFC3339), st.Newest.UTC().Format(time.RFC3339))
	if !strings.Contains(out.String(), "ARCHIVE-SEGMENTS") || !regexpLine(out.String(), row) {
		t.Fatalf("spool stat does not show the archive (want a row matching %s):\n%s", row, out.String())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(relayCollector{aw.live.r})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				got[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	live := aw.live.r.spools[0].Stats().Archive
	if got["slsrelay_archive_bytes"] != float64(live.Bytes) || live.Bytes == 0 {
		t.Errorf("slsrelay_archive_bytes = %v, want %d", got["slsrelay_archive_bytes"], live.Bytes)
	}
	if o := got["slsrelay_archive_oldest_timestamp_seconds"]; o < float64(live.Oldest.Unix()) || o > float64(live.Oldest.Unix()+1) {
		t.Errorf("slsrelay_archive_oldest_timestamp_seconds = %v, want %v", o, live.Oldest)
	}
	if _, ok := got["slsrelay_archive_evictions_total"]; !ok {
		t.Errorf("slsrelay_archive_evictions_total missing")
	}
}

// sinks[].spool.retain and retain_bytes parse into the sink's spool
// options; negative values are refused, named.
func TestConfig_SinkRetain(t *testing.T) {
	base := "data_dir: /tmp/x\nsls: {endpoint: cn-hangzhou.log.aliyuncs.com, access_key_id: a, access_key_secret: b}\n" +
		"sources: [{project: p, logstore: l}]\nsinks:\n  - type: file\n    file: {path: /tmp/x/out.jsonl}\n"
	c, err := ParseConfig(strings.NewReader(base+"    spool: {retain: 24h, retain_bytes: 20GiB}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	o := sinkSpoolOptions(c, c.Sinks[0], nil)
	if o.Retain != 24*time.Hour || o.RetainBytes != 20<<30 {
		t.Fatalf("retain %v, retain_bytes %d", o.Retain, o.RetainBytes)
	}
	_, err = ParseConfig(strings.NewReader(base+"    spool: {retain: -1h}\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "spool.retain") {
		t.Fatalf("got %v, want the negative retain named", err)
	}
}

// A small retain_bytes under steady load, then the SIEM down while logs
// keep coming: the archive stays under its bound (oldest evicted first,
// counted), the records waiting for the SIEM are never evicted, and once
// it is back every event arrives: lost 0.
func TestReplaySpool_SIEMDownArchiveBounded(t *testing.T) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	gen := slstest.NewGenerator(slstest.KindAudit, 35)
	cfg := w.config()
	cfg.Spool.SegmentBytes = 1 << 20
	cfg.Sources[0].MaxFetchGroups = 10
	const bound = 2 << 20
	cfg.Sinks[0].Spool = SinkSpoolConfig{Retain: Duration(24 * time.Hour), RetainBytes: bound}
	live := startRelay(t, cfg, nil)
	sp := live.r.spools[0]
	var ids []string
	for range 12 { // steady load, delivered
		ids = append(ids, appendIDs(t, w.sls, gen, 20, 100)...)
		waitFor(t, time.Minute, "delivery", func() bool { n, _, _ := received(w.hec); return n == len(ids) })
		if st := sp.Stats().Archive; st.Bytes > bound {
			t.Fatalf("archive %d bytes over retain_bytes %d", st.Bytes, bound)
		}
	}
	before := sp.Stats().Archive
	if before.Evictions == 0 {
		t.Fatalf("no eviction under steady load: %+v", before)
	}
	oldest := before.Oldest
	// The SIEM goes down; logs keep coming and wait in the spool.
	w.hec.SetFault(hectest.Fault{Down: true})
	held := appendIDs(t, w.sls, gen, 60, 100)
	ids = append(ids, held...)
	waitFor(t, time.Minute, "the outage's logs in the spool", func() bool {
		return spooledLogs(live) >= len(ids)
	})
	during := sp.Stats()
	if during.Archive.Bytes > bound {
		t.Fatalf("archive %d bytes over retain_bytes %d during the outage", during.Archive.Bytes, bound)
	}
	if !during.Archive.Oldest.IsZero() && during.Archive.Oldest.Before(oldest) {
		t.Fatalf("archive's oldest moved back: %v before %v", during.Archive.Oldest, oldest)
	}
	w.hec.SetFault(hectest.Fault{})
	waitFor(t, 2*time.Minute, "every event after the outage", func() bool { n, _, _ := received(w.hec); return n == len(ids) })
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	got := hecIDs(w.hec)
	for _, id := range ids {
		if got[id] == 0 {
			t.Fatalf("event %s lost", id)
		}
	}
	after, _ := spool.InspectArchive(spoolDir(cfg, "hec"))
	if after.Bytes > bound {
		t.Fatalf("archive %d bytes over retain_bytes %d", after.Bytes, bound)
	}
	t.Logf("archive before the outage %+v; after %+v; %d events, lost 0", before, after, len(ids))
}

// spooledLogs counts the logs the relay's ingest has spooled.
func spooledLogs(r *running) int {
	n := 0
	for _, w := range r.r.ingest.Workers() {
		n += int(w.Stats().Logs)
	}
	return n
}
