package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/checkpoint"
	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// expected holds what was written to the emulator, by event_id.
type expected struct {
	logs  map[string]*sls.Log
	group map[string]*sls.LogGroup
	order []string
}

// writeLogs appends groups of perGroup generated logs round-robin over the
// shards and remembers each log.
func writeLogs(t *testing.T, srv *slstest.Server, shards, groups, perGroup int, seed int64) *expected {
	t.Helper()
	exp := &expected{logs: map[string]*sls.Log{}, group: map[string]*sls.LogGroup{}}
	gen := slstest.NewGenerator(slstest.KindAudit, seed)
	for i := 0; i < groups; i++ {
		lg := gen.LogGroup(perGroup)
		for _, l := range lg.Logs {
			id := logField(l, "event_id")
			if id == "" {
				t.Fatalf("generated log without event_id")
			}
			exp.logs[id], exp.group[id] = l, lg
			exp.order = append(exp.order, id)
		}
		if err := srv.Append(testProject, testLogstore, i%shards, lg); err != nil {
			t.Fatal(err)
		}
	}
	return exp
}

func logField(l *sls.Log, key string) string {
	for _, c := range l.Contents {
		if c.GetKey() == key {
			return c.GetValue()
		}
	}
	return ""
}

// received counts distinct event ids at the HEC receiver.
func received(hec *hectest.Server) (unique, dups int, byID map[string]hectest.Event) {
	byID = map[string]hectest.Event{}
	for _, ev := range hec.Events() {
		var b struct {
			ID string `json:"event_id"`
		}
		if json.Unmarshal(ev.Event, &b) != nil {
			continue
		}
		if _, ok := byID[b.ID]; ok {
			dups++
			continue
		}
		byID[b.ID] = ev
	}
	return len(byID), dups, byID
}

// TestRelay_EndToEnd: 4 shards, 100,000 logs, every one delivered once with
// its contents, nanosecond time, topic, source and tags intact.
func TestRelay_EndToEnd(t *testing.T) {
	const shards, groups, perGroup = 4, 500, 200
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	exp := writeLogs(t, w.sls, shards, groups, perGroup, 7)
	total := len(exp.logs)

	start := time.Now()
	rr := startRelay(t, w.config(), nil)
	waitFor(t, 3*time.Minute, fmt.Sprintf("%d events at HEC", total), func() bool { return w.hec.EventCount() >= total })
	elapsed := time.Since(start)
	if err := rr.stop(); err != nil {
		t.Fatalf("relay stopped with %v", err)
	}
	unique, dups, byID := received(w.hec)
	t.Logf("delivered %d events in %s (%.0f events/s incl. start-up), %d duplicates", unique, elapsed.Round(time.Millisecond), float64(unique)/elapsed.Seconds(), dups)
	if unique != total || dups != 0 {
		t.Fatalf("delivered %d unique with %d duplicates, want %d once each", unique, dups, total)
	}
	for _, id := range exp.order {
		got, want, lg := byID[id], exp.logs[id], exp.group[id]
		if err := sameEvent(got, want, lg); err != nil {
			t.Fatalf("event %s: %v", id, err)
		}
	}
}

// sameEvent checks one HEC event against the SLS log it came from.
func sameEvent(got hectest.Event, want *sls.Log, lg *sls.LogGroup) error {
	sec, frac, _ := strings.Cut(got.RawTime, ".")
	if sec != strconv.FormatUint(uint64(want.GetTime()), 10) {
		return fmt.Errorf("time %s, want seconds %d", got.RawTime, want.GetTime())
	}
	if want.TimeNs != nil && *want.TimeNs != 0 {
		if ns, err := strconv.Atoi((frac + "000000000")[:9]); err != nil || uint32(ns) != *want.TimeNs {
			return fmt.Errorf("time %s, want nanoseconds %d", got.RawTime, *want.TimeNs)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(got.Event))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for i := 0; dec.More(); i++ {
		k, _ := dec.Token()
		v, _ := dec.Token()
		if i >= len(want.Contents) {
			return fmt.Errorf("extra field %v", k)
		}
		if k != want.Contents[i].GetKey() || v != want.Contents[i].GetValue() {
			return fmt.Errorf("field %d = %v=%q, want %s=%q", i, k, v, want.Contents[i].GetKey(), want.Contents[i].GetValue())
		}
	}
	if got.Fields["sls_topic"] != nilIfEmpty(lg.GetTopic()) || got.Fields["sls_source"] != nilIfEmpty(lg.GetSource()) {
		return fmt.Errorf("topic/source = %v/%v, want %q/%q", got.Fields["sls_topic"], got.Fields["sls_source"], lg.GetTopic(), lg.GetSource())
	}
	if lg.GetSource() != "" && got.Host != lg.GetSource() {
		return fmt.Errorf("host %q, want the log group's source %q", got.Host, lg.GetSource())
	}
	for _, tag := range lg.LogTags {
		name := "sls_tag_" + strings.Trim(strings.TrimPrefix(tag.GetKey(), "__tag__:"), "_")
		if got.Fields[name] != tag.GetValue() {
			return fmt.Errorf("tag %s = %v, want %q (fields %v)", tag.GetKey(), got.Fields[name], tag.GetValue(), got.Fields)
		}
	}
	if got.Fields["sls_project"] != testProject || got.Fields["sls_logstore"] != testLogstore {
		return fmt.Errorf("fields %v lack project/logstore", got.Fields)
	}
	return nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// TestRelay_Outage: HEC answers 503 for a while, then drops connections,
// then recovers. While it is down the SLS checkpoints keep advancing (the
// spool absorbs the data) until the spool budget is reached, where they stop;
// afterwards everything arrives.
func TestRelay_Outage(t *testing.T) {
	const shards, groups, perGroup = 4, 400, 100
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Status: 503, Code: 9})
	cfg := w.config()
	cfg.Spool.MaxBytes = 4 << 20 // far below the 40,000 logs' size
	cfg.Spool.SegmentBytes = 1 << 20
	cfg.Sources[0].MaxFetchGroups = 5
	w.sls.SetFaults(testProject, testLogstore, slstest.Faults{Bandwidth: 512 << 10})
	exp := writeLogs(t, w.sls, shards, groups, perGroup, 11)
	total := len(exp.logs)
	rr := startRelay(t, cfg, nil)

	worker := rr.r.ingest.Workers()[0]
	// Until the budget is reached the SLS checkpoints keep moving (the spool
	// absorbs the data); then ingest stalls short of the total. The WAN is
	// capped so that the filling takes a few checkpoint intervals.
	snapshots := map[string]bool{}
	var last int64 = -1
	stableSince := time.Now()
	waitFor(t, 2*time.Minute, "ingest to stall on the full spool", func() bool {
		n := worker.Stats().Logs
		if cps := w.sls.Checkpoints(testProject, testLogstore, DefaultConsumerGroup); len(cps) > 0 {
			snapshots[fmt.Sprint(cps)] = true
		}
		if n != last {
			last, stableSince = n, time.Now()
		}
		return n > 0 && time.Since(stableSince) > 2*time.Second
	})
	st := rr.r.spools[0].Stats()
	t.Logf("stalled: %d of %d logs spooled, spool %d bytes (budget %d); %d distinct SLS checkpoint states while HEC was down",
		last, total, st.Bytes, cfg.Spool.MaxBytes, len(snapshots))
	if len(snapshots) < 3 {
		t.Errorf("SLS checkpoints took %d states while the spool absorbed the outage, want them to keep advancing (≥3)", len(snapshots))
	}
	if last >= int64(total) {
		t.Fatalf("ingest spooled everything (%d logs): the budget did not stop it", last)
	}
	if st.Bytes > int64(cfg.Spool.MaxBytes) {
		t.Errorf("spool holds %d bytes, over its %d budget", st.Bytes, cfg.Spool.MaxBytes)
	}
	stalled := w.sls.Checkpoints(testProject, testLogstore, DefaultConsumerGroup)
	time.Sleep(1500 * time.Millisecond) // > checkpoint_interval: a moving checkpoint would show
	if now := w.sls.Checkpoints(testProject, testLogstore, DefaultConsumerGroup); fmt.Sprint(now) != fmt.Sprint(stalled) {
		t.Errorf("SLS checkpoints moved while the spool was full: %v → %v", stalled, now)
	}
	if w.hec.EventCount() != 0 {
		t.Fatalf("HEC recorded %d events during a 503 window", w.hec.EventCount())
	}

	w.sls.SetFaults(testProject, testLogstore, slstest.Faults{})
	w.hec.SetFault(hectest.Fault{DropConnections: true})
	waitFor(t, 90*time.Second, "the relay to hit dropped connections (it backs off up to 30 s)", func() bool { return w.hec.Stats().Dropped > 0 })
	w.hec.SetFault(hectest.Fault{})
	waitFor(t, 3*time.Minute, "every event after recovery", func() bool {
		u, _, _ := received(w.hec)
		return u == total
	})
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}
	u, d, _ := received(w.hec)
	t.Logf("after the outage: %d/%d delivered, %d duplicates", u, total, d)
}

// TestRelay_SecretsNeverLogged runs the relay with a wrong SLS secret and a
// rejected HEC token and checks that no secret reaches its log.
func TestRelay_SecretsNeverLogged(t *testing.T) {
	w := newWorld(t, 2, 2000, 100, hectest.Options{})
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	t.Run("wrong SLS secret", func(t *testing.T) {
		cfg := w.config()
		cfg.DataDir = t.TempDir()
		cfg.SLS.AccessKeySecret = "wrong-secret-DO-NOT-LOG"
		rr := startRelay(t, cfg, log)
		waitFor(t, 30*time.Second, "the SDK to log the rejection", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return bytes.Contains(buf.Bytes(), []byte("SignatureNotMatch")) || bytes.Contains(buf.Bytes(), []byte("Unauthorized"))
		})
		rr.stop()
		if n := w.hec.EventCount(); n != 0 {
			t.Errorf("%d events delivered with a wrong secret", n)
		}
	})
	t.Run("rejected HEC token", func(t *testing.T) {
		cfg := w.config()
		cfg.DataDir = t.TempDir()
		cfg.Sinks[0].HEC.Token = "bad-token-DO-NOT-LOG"
		rr := startRelay(t, cfg, log)
		waitFor(t, 30*time.Second, "the sink to pause on 401", func() bool { return rr.r.loops[0].Stats().Paused })
		rr.stop()
	})
	var pages bytes.Buffer // /metrics and /healthz bodies
	t.Run("STS token, metrics and health pages", func(t *testing.T) {
		cfg := w.config()
		cfg.DataDir = t.TempDir()
		cfg.SLS.SecurityToken = "sts-token-DO-NOT-LOG"
		cfg.Sinks[0].HEC.Token = "bad-token-DO-NOT-LOG"
		cfg.Metrics.Listen = freeAddr(t)
		rr := startRelay(t, cfg, log)
		waitFor(t, 30*time.Second, "the sink to pause on 401", func() bool { return rr.r.loops[0].Stats().Paused })
		for _, path := range []string{"/metrics", "/healthz"} {
			resp, err := http.Get("http://" + cfg.Metrics.Listen + path)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = pages.ReadFrom(resp.Body)
			resp.Body.Close()
		}
		rr.stop()
		if !bytes.Contains(pages.Bytes(), []byte("slsrelay_")) {
			t.Fatalf("no slsrelay metrics scraped: the check proves nothing\n%s", pages.String())
		}
	})
	mu.Lock()
	defer mu.Unlock()
	for _, secret := range []string{testAKSecret, "wrong-secret-DO-NOT-LOG", "bad-token-DO-NOT-LOG", testToken, "sts-token-DO-NOT-LOG"} {
		if bytes.Contains(pages.Bytes(), []byte(secret)) {
			t.Errorf("/metrics or /healthz contains the secret %q", secret)
		}
		if bytes.Contains(buf.Bytes(), []byte(secret)) {
			t.Errorf("the log contains the secret %q", secret)
		}
	}
	if buf.Len() == 0 {
		t.Fatal("nothing was logged: the test proves nothing")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRelay_GarbageFromSLS: truncated and garbage pull bodies make the relay
// retry without spooling or checkpointing anything; once they stop, all is
// delivered.
func TestRelay_GarbageFromSLS(t *testing.T) {
	const total = 4000
	w := newWorld(t, 2, total, 100, hectest.Options{})
	w.sls.SetFaults(testProject, testLogstore, slstest.Faults{Fail: map[slstest.FailMode]float64{
		slstest.FailMode("garbage"): 0.5, slstest.FailMode("truncated"): 0.5}})
	rr := startRelay(t, w.config(), nil)
	time.Sleep(3 * time.Second)
	if n := rr.r.ingest.Workers()[0].Stats().Logs; n != 0 {
		t.Errorf("%d logs spooled from garbage answers", n)
	}
	if cps := w.sls.Checkpoints(testProject, testLogstore, DefaultConsumerGroup); len(cps) != 0 {
		t.Errorf("checkpoints moved on garbage answers: %v", cps)
	}
	w.sls.SetFaults(testProject, testLogstore, slstest.Faults{})
	waitFor(t, 2*time.Minute, "every event after the garbage stops", func() bool {
		u, _, _ := received(w.hec)
		return u == total
	})
}

// TestRelay_DataDirLocked: a second relay on the same data directory fails
// at once, naming the reason.
func TestRelay_DataDirLocked(t *testing.T) {
	w := newWorld(t, 1, 0, 0, hectest.Options{})
	cfg := w.config()
	startRelay(t, cfg, nil)
	_, err := openRelay(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a second relay opened the same data directory")
	}
	if !strings.Contains(err.Error(), "another relay") && !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q does not say the directory is held", err)
	}
	var _ = checkpoint.ErrLocked
}
