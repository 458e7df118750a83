package main

import (
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// These two transitions depend on the ingest consumer loop filling
// ingest.WorkerStats' consumer, pull and error fields (it does since the
// consumer-loop rewrite); with an ingest that does not, they skip saying so.
func requireIngestState(t *testing.T, rr *running) {
	t.Helper()
	for _, w := range rr.r.ingest.Workers() {
		if w.Stats().Errors == nil {
			t.Skip("ingest.WorkerStats.Errors is not filled by this ingest, so SLS errors cannot show in /status")
		}
	}
}

func slsTransition(t *testing.T, tweak func(*Config), class string) {
	w := newWorld(t, 2, 0, 0, hectest.Options{})
	cfg := w.config()
	fastHealth(cfg)
	tweak(cfg)
	rr := startRelay(t, cfg, nil)
	requireIngestState(t, rr)
	var st Status
	waitFor(t, time.Minute, "source degraded with an SLS error", func() bool {
		st = getStatus(t, rr.r)
		return len(st.Sources) == 1 && st.Sources[0].State != StateDelivering && st.Sources[0].LastErrorClass != ""
	})
	s := st.Sources[0]
	if s.LastErrorClass != class {
		t.Fatalf("source error class %q, want %q: %+v", s.LastErrorClass, class, s)
	}
	if s.Errors[class] == 0 || !strings.Contains(s.Reason, class) || st.Ready || !hasReason(st, "source "+testProject+"/"+testLogstore) {
		t.Errorf("source: %+v; relay ready %v reasons %q", s, st.Ready, st.Reasons)
	}
	if code, body := get(t, rr.r, "/readyz"); code != 503 || !strings.Contains(body, class) {
		t.Errorf("/readyz: %d %q, want 503 naming the %s error", code, body, class)
	}
	_, m := get(t, rr.r, "/metrics")
	if !strings.Contains(m, `slsrelay_ingest_errors_total{class="`+class+`",source="`+testProject+"/"+testLogstore+`"}`) {
		t.Errorf("/metrics has no ingest_errors_total for class %s", class)
	}
	waitFor(t, time.Minute, "source stalled", func() bool { return getStatus(t, rr.r).State == StateStalled })
}

// SLS unreachable (connect_to a closed port): the source holds no consumer,
// is degraded with an "unreachable" error, then stalled.
func TestHealth_SLSUnreachable(t *testing.T) {
	slsTransition(t, func(c *Config) { c.SLS.ConnectTo = freeAddr(t) }, "unreachable")
}

// SLS refusing the AccessKey: degraded with an "auth" error, then stalled.
func TestHealth_SLSWrongKey(t *testing.T) {
	slsTransition(t, func(c *Config) { c.SLS.AccessKeySecret = "not-the-secret" }, "auth")
}
