package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// get serves one request through the relay's HTTP handler (the one
// metrics.listen serves) and returns the status code and body.
func get(t *testing.T, r *relay, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	r.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func getStatus(t *testing.T, r *relay) Status {
	t.Helper()
	code, body := get(t, r, "/status")
	if code != 200 {
		t.Fatalf("/status answered %d: %s", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	return st
}

// fastHealth makes the health thresholds short enough for a test: a sink
// with records waiting is not ready after 1 s without delivery and stalled
// after 3 s.
func fastHealth(c *Config) {
	c.Health = HealthConfig{PullStaleAfter: Duration(2 * time.Second), SinkStaleAfter: Duration(time.Second),
		StallAfter: Duration(3 * time.Second), SpoolFullRatio: 0.9}
}

// waitSink polls /status until sink 0 satisfies cond and returns that status.
func waitSink(t *testing.T, r *relay, what string, cond func(SinkStatus) bool) Status {
	t.Helper()
	var st Status
	waitFor(t, time.Minute, what, func() bool {
		st = getStatus(t, r)
		return len(st.Sinks) == 1 && cond(st.Sinks[0])
	})
	return st
}

func hasReason(st Status, sub string) bool {
	for _, r := range st.Reasons {
		if strings.Contains(r, sub) {
			return true
		}
	}
	return false
}

// A relay with nothing to do (drain only, empty spool) is live, ready and
// delivering on every endpoint; counters with known labels are exported
// at 0 from the start.
func TestHealth_IdleRelayIsReady(t *testing.T) {
	w := newWorld(t, 1, 0, 0, hectest.Options{})
	cfg := w.config()
	cfg.DrainOnly, cfg.Sources = true, nil
	rr := startRelay(t, cfg, nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, rr.r, p); code != 200 || body != "ok\n" {
			t.Errorf("%s: %d %q, want 200 ok", p, code, body)
		}
	}
	st := getStatus(t, rr.r)
	if st.State != StateDelivering || !st.Ready || !st.Live || len(st.Reasons) != 0 {
		t.Errorf("status: state %q ready %v live %v reasons %q", st.State, st.Ready, st.Live, st.Reasons)
	}
	if len(st.Sinks) != 1 || st.Sinks[0].State != "delivering" || st.Sinks[0].SpoolMaxBytes != 256<<20 {
		t.Errorf("sinks: %+v", st.Sinks)
	}
	code, page := get(t, rr.r, "/")
	if code != 200 || !strings.Contains(page, `class="state delivering">delivering<`) || strings.Contains(page, "http://") && strings.Contains(page, "<script") {
		t.Errorf("status page: %d\n%s", code, page)
	}
	_, m := get(t, rr.r, "/metrics")
	for _, want := range []string{
		`slsrelay_build_info{goversion="go`,
		`slsrelay_delivery_errors_total{class="transient",sink="hec"} 0`,
		`slsrelay_delivery_errors_total{class="permanent",sink="hec"} 0`,
		`slsrelay_delivery_errors_total{class="config",sink="hec"} 0`,
		`slsrelay_dead_lettered_events_total{reason="decode",sink="hec"} 0`,
		`slsrelay_dead_lettered_events_total{reason="rejected",sink="hec"} 0`,
		`slsrelay_delivery_retries_total{sink="hec"} 0`,
		`slsrelay_spool_events{sink="hec"} 0`,
		`slsrelay_sink_state{sink="hec",state="delivering"} 1`,
		`slsrelay_sink_state{sink="hec",state="stalled"} 0`,
		`slsrelay_sink_last_success_timestamp_seconds{sink="hec"}`,
		`slsrelay_ready 1`,
		`slsrelay_state{state="delivering"} 1`,
		`slsrelay_spool_dead_letter_refused_total{sink="hec"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// allDescs (what TestAlerts_UseExportedMetrics checks the rules
	// against) lists every slsrelay_ metric exported.
	var descs []string
	for _, d := range allDescs {
		descs = append(descs, d.String())
	}
	for _, l := range strings.Split(m, "\n") {
		if name, ok := strings.CutPrefix(l, "# TYPE slsrelay_"); ok {
			name = "slsrelay_" + strings.Fields(name)[0]
			if !strings.Contains(strings.Join(descs, "\n"), `fqName: "`+name+`"`) {
				t.Errorf("%s is exported but not in allDescs", name)
			}
		}
	}
}

// sinkTransition runs a relay over seeded SLS data with a HEC fault set
// from the start, waits for the sink to show want (state and reason),
// then for the relay to be not ready, clears the fault and waits for the
// sink to deliver everything and be ready again.
func sinkTransition(t *testing.T, n int, fault hectest.Fault, tweak func(*Config), wantState, wantReason string, stalls bool) {
	w := newWorld(t, 2, n, 100, hectest.Options{})
	w.hec.SetFault(fault)
	cfg := w.config()
	fastHealth(cfg)
	if tweak != nil {
		tweak(cfg)
	}
	rr := startRelay(t, cfg, nil)
	var last SinkStatus
	st := waitSink(t, rr.r, "sink "+wantState+" with "+wantReason, func(s SinkStatus) bool {
		last = s
		return s.State == wantState && strings.Contains(s.Reason, wantReason)
	})
	t.Logf("sink: %+v", last)
	if s := st.Sinks[0]; s.Since == "" || s.SpoolRecords == 0 {
		t.Errorf("%s: since %q, spool records %d; want a time and a backlog", wantState, s.Since, s.SpoolRecords)
	}
	_, m := get(t, rr.r, "/metrics")
	for _, want := range []string{
		`slsrelay_sink_state{sink="hec",state="` + wantState + `"} 1`,
		`slsrelay_gap_lost_seconds_total{logstore="audit",project="e2e-project"} 0`,
		`slsrelay_ingest_errors_total{class="unreachable",source="e2e-project/audit"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if wantState == "retrying" && strings.Contains(m, `slsrelay_delivery_errors_total{class="transient",sink="hec"} 0`) {
		t.Errorf("transient delivery errors still 0 while retrying")
	}
	st = waitSink(t, rr.r, "sink not ready", func(s SinkStatus) bool { return !s.Ready })
	if st.Ready || st.State == StateDelivering || !hasReason(st, "sink hec: ") {
		t.Errorf("not-ready sink: relay state %q ready %v reasons %q", st.State, st.Ready, st.Reasons)
	}
	if code, body := get(t, rr.r, "/readyz"); code != 503 || !strings.Contains(body, "sink hec") {
		t.Errorf("/readyz: %d %q, want 503 naming the sink", code, body)
	}
	if code, _ := get(t, rr.r, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200 (a SIEM problem is no reason to restart)", code)
	}
	if stalls {
		st = waitSink(t, rr.r, "sink stalled", func(s SinkStatus) bool { return s.State == StateStalled })
		if st.State != StateStalled || !hasReason(st, wantReason) {
			t.Errorf("stalled: relay state %q reasons %q", st.State, st.Reasons)
		}
		_, m := get(t, rr.r, "/metrics")
		if !strings.Contains(m, `slsrelay_sink_state{sink="hec",state="stalled"} 1`) || !strings.Contains(m, `slsrelay_state{state="stalled"} 1`) {
			t.Errorf("/metrics does not say stalled")
		}
	}
	w.hec.SetFault(hectest.Fault{})
	waitFor(t, 2*time.Minute, "all events at HEC", func() bool { return w.hec.EventCount() >= n })
	st = waitSink(t, rr.r, "sink delivering and ready", func(s SinkStatus) bool {
		return s.State == "delivering" && s.Ready && s.SpoolRecords == 0
	})
	if s := st.Sinks[0]; s.LastSuccess == "" || s.Reason != "" || hasReason(st, "sink hec") {
		t.Errorf("recovered: last success %q reason %q relay reasons %q", s.LastSuccess, s.Reason, st.Reasons)
	}
	// With the source pulling too, the relay is delivering and ready.
	waitFor(t, time.Minute, "relay delivering", func() bool { return getStatus(t, rr.r).State == StateDelivering })
	if code, body := get(t, rr.r, "/readyz"); code != 200 {
		t.Errorf("/readyz after recovery: %d %q", code, body)
	}
	if st := getStatus(t, rr.r); len(st.Sources) != 1 || !st.Sources[0].Consumer || len(st.Sources[0].Shards) == 0 || st.Sources[0].LastPull == "" {
		t.Errorf("source after recovery: %+v", st.Sources)
	}
}

// HEC down (connection refused): retrying with the dial error, not ready
// after sink_stale_after, stalled after stall_after, back once it listens.
func TestHealth_SinkRefused(t *testing.T) {
	sinkTransition(t, 4000, hectest.Fault{Down: true}, nil, "retrying", "refused", true)
}

// HEC answering 503 busy: retrying with the status as the reason.
func TestHealth_Sink503(t *testing.T) {
	sinkTransition(t, 4000, hectest.Fault{Status: 503, Code: hectest.CodeServerBusy}, nil, "retrying", "503", false)
}

// HEC answering 401: the sink is paused (an operator must fix the token)
// and not ready at once.
func TestHealth_Sink401Paused(t *testing.T) {
	sinkTransition(t, 4000, hectest.Fault{Status: 401, Code: hectest.CodeInvalidAuthorization}, nil, "paused", "401", true)
}

// A spool at its budget (HEC down, a 2 MiB spool) makes the relay
// degraded with the spool's use as the reason; it clears once delivered.
func TestHealth_SpoolFull(t *testing.T) {
	sinkTransition(t, 30000, hectest.Fault{Down: true}, func(c *Config) {
		c.Spool.MaxBytes, c.Spool.SegmentBytes = 2<<20, 1<<20
		c.Health.SinkStaleAfter, c.Health.StallAfter = Duration(time.Hour), Duration(time.Hour)
	}, "retrying", "spool at ", false)
}

// A send that neither returns nor reports a retry for stall_after (HEC
// holding its answers, the request timeout longer than that) makes
// /healthz fail: only a restart clears a wedged loop.
func TestHealth_WedgedSendFailsLiveness(t *testing.T) {
	w := newWorld(t, 2, 1000, 100, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Delay: 5 * time.Minute})
	cfg := w.config()
	fastHealth(cfg)
	cfg.Sinks[0].HEC.Timeout = Duration(5 * time.Minute)
	cfg.ShutdownTimeout = Duration(time.Second)
	rr := startRelay(t, cfg, nil)
	var body string
	waitFor(t, time.Minute, "/healthz failing", func() bool {
		var code int
		code, body = get(t, rr.r, "/healthz")
		return code == 503
	})
	if !strings.Contains(body, "wedged") {
		t.Errorf("/healthz: %q, want the wedged send named", body)
	}
	st := getStatus(t, rr.r)
	if st.Live || st.State != StateStalled || st.Sinks[0].State != StateStalled {
		t.Errorf("status: live %v state %q sink %q", st.Live, st.State, st.Sinks[0].State)
	}
	w.hec.SetFault(hectest.Fault{})
}
