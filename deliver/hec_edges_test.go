package deliver_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
)

// The edges of HEC delivery: answers that look like success but confirm
// nothing with acks on, load balancers, and 4xx statuses HEC does not list.

// TestHEC_AckOnWithoutAckIDIsTransient: with acks on, a 2xx that carries no
// ackId (the token has acks off, or a proxy answered) or whose body cannot
// be read confirms nothing: Send fails transiently and says so in the log.
func TestHEC_AckOnWithoutAckIDIsTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"hectest with acks off", func(t *testing.T) string {
			return hectest.NewServer(t, hectest.Options{Token: testToken}).URL()
		}},
		{"2xx with an unreadable body", func(t *testing.T) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				w.Write([]byte(`<html>OK</html>`))
			}))
			t.Cleanup(s.Close)
			return s.URL
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			h, err := deliver.NewHEC(deliver.HECOptions{URL: tc.url(t), Token: testToken, AckEnabled: true,
				Retry: fastRetry, Logger: testLogger(t, &logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			err = h.Send(context.Background(), batchOf(t, 1, 0, 3))
			if err == nil || deliver.KindOf(err) != deliver.Transient {
				t.Fatalf("Send = %v, want a transient error: an answer without ackId confirms nothing", err)
			}
			if !strings.Contains(logs.String(), "without ackId") {
				t.Errorf("the log does not say why:\n%s", logs.String())
			}
		})
	}
}

// TestHEC_InvalidEventWithAcksConfirmsPrefixByAck: with acks on, a 400
// naming event 5 of 10 confirms nothing about events 0–4 (Splunk gives no
// ackId for them); they count as delivered only once an ack says so.
func TestHEC_InvalidEventWithAcksConfirmsPrefixByAck(t *testing.T) {
	srv, h, _ := hecHarness(t, hectest.Options{AckEnabled: true}, deliver.HECOptions{AckEnabled: true})
	srv.SetFault(hectest.Fault{RejectEvent: func(ev hectest.Event) (int, int, string, bool) {
		return 400, hectest.CodeInvalidDataFormat, "", eventN(t, ev) == "5"
	}})
	err := h.Send(context.Background(), batchOf(t, 1, 0, 10))
	var de *deliver.Error
	if !errors.As(err, &de) || de.Kind != deliver.Permanent || de.EventIndex != 5 {
		t.Fatalf("Send = %v, want permanent at event 5", err)
	}
	acked := map[string]bool{}
	for _, e := range srv.Events() {
		if e.Acked {
			acked[eventN(t, e)] = true
		}
	}
	for i := 0; i < 5; i++ {
		if !acked[itoa(i)] {
			t.Errorf("event %d reported confirmed (before the rejected one) but never acked", i)
		}
	}
}

// TestHEC_AcksBehindStickyLoadBalancer: two receivers behind a load
// balancer that sticks by cookie. The sink keeps the balancer's cookie for
// its channel, so its ack polls reach the receiver that took the request:
// every request is acked, none is sent twice.
func TestHEC_AcksBehindStickyLoadBalancer(t *testing.T) {
	a := hectest.NewServer(t, hectest.Options{Token: testToken, AckEnabled: true})
	b := hectest.NewServer(t, hectest.Options{Token: testToken, AckEnabled: true})
	lb := hectest.NewStickyProxy(t, a, b)
	var logs syncBuffer
	h, err := deliver.NewHEC(deliver.HECOptions{URL: lb.URL(), Token: testToken, AckEnabled: true,
		AckTimeout: 300 * time.Millisecond, AckPollInterval: 10 * time.Millisecond, MaxRequestBytes: 2000,
		Concurrency: 2, Retry: fastRetry, Logger: testLogger(t, &logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// Bounded, not timed: without stickiness the sink re-sends for ever.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for seq := 1; seq <= 3; seq++ {
		if err := h.Send(ctx, batchOf(t, uint64(seq), (seq-1)*50, 50)); err != nil {
			t.Fatalf("batch %d: %v (re-sends logged: %d)", seq, err, strings.Count(logs.String(), "sending again"))
		}
	}
	seen := map[string]int{}
	for _, srv := range []*hectest.Server{a, b} {
		for _, e := range srv.Events() {
			seen[eventN(t, e)]++
			if !e.Acked {
				t.Errorf("event %s not acked", eventN(t, e))
			}
		}
	}
	for i := 0; i < 150; i++ {
		if seen[itoa(i)] != 1 {
			t.Errorf("event %d received %d times, want once", i, seen[itoa(i)])
		}
	}
	if strings.Contains(logs.String(), "sending again") {
		t.Errorf("requests were re-sent")
	}
	per, byCookie := lb.Served()
	t.Logf("requests per receiver %v, %d routed by cookie", per, byCookie)
}

// TestLoop_HECUnlistedStatusPausesNotRejects: a 4xx HEC does not list as a
// rejection of the data (407 from a proxy, 411, 414, 415…) pauses the sink
// and retries, loudly, like 401/403; nothing is dead-lettered and
// everything arrives once it clears. The sink counts those answers.
func TestLoop_HECUnlistedStatusPausesNotRejects(t *testing.T) {
	for _, status := range []int{407, 411, 414, 415, 422} {
		t.Run(itoa(status), func(t *testing.T) {
			var logs syncBuffer
			srv, h, hh := hecHarness(t, hectest.Options{}, deliver.HECOptions{Logger: testLogger(t, &logs)})
			srv.SetFault(hectest.Fault{Status: status, Text: http.StatusText(status)})
			q := newFakeQueue(record(t, 1, numbered(0, 3)), record(t, 2, numbered(3, 2)))
			l := deliver.NewLoop(q, h, deliver.LoopOptions{Logger: testLogger(t, &logs), Retry: fastRetry})
			runLoop(t, l)
			waitFor(t, "pause", func() bool { return l.Stats().Paused && srv.Stats().ByStatus[status] >= 3 })
			srv.SetFault(hectest.Fault{})
			waitFor(t, "acks", func() bool { return len(q.Acked()) == 2 })
			if d := q.Dead(); len(d) != 0 {
				t.Fatalf("dead-lettered %d records on a %d", len(d), status)
			}
			if got := strings.Join(hh.received(), ","); got != "0,1,2,3,4" {
				t.Errorf("received %s", got)
			}
			if n := h.Counters().UnlistedStatus; n < 3 {
				t.Errorf("UnlistedStatus = %d, want ≥ 3", n)
			}
			if !strings.Contains(logs.String(), "sink paused") || !strings.Contains(logs.String(), "not a status HEC lists") {
				t.Errorf("logs:\n%s", logs.String())
			}
		})
	}
}
