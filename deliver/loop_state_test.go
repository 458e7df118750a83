package deliver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
)

// The loop's state follows a real HEC sink against hectest: 503 answers
// are retried inside the sink and show as retrying with the status, a
// disabled token pauses the sink, and a success brings it back to
// delivering with a last-success time. Every error class and dead-letter
// reason is present from the start.
func TestLoopState_HEC(t *testing.T) {
	srv, h, _ := hecHarness(t, hectest.Options{}, deliver.HECOptions{Name: "splunk"})
	q := newFakeQueue(record(t, 1, numbered(0, 2)), record(t, 2, numbered(2, 2)), record(t, 3, numbered(4, 2)))
	l := deliver.NewLoop(q, h, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})

	st := l.Stats()
	if st.State != deliver.StateDelivering || !st.LastSuccess.IsZero() {
		t.Fatalf("fresh loop: state %q last success %v", st.State, st.LastSuccess)
	}
	for _, c := range deliver.ErrorClasses {
		if v, ok := st.Errors[c]; !ok || v != 0 {
			t.Errorf("fresh loop: Errors[%q] = %d, %v; want 0, present", c, v, ok)
		}
	}
	for _, r := range []string{deliver.ReasonDecode, deliver.ReasonRejected} {
		if _, ok := st.DeadLettered[r]; !ok {
			t.Errorf("fresh loop: DeadLettered[%q] missing", r)
		}
	}

	srv.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
	runLoop(t, l)
	waitFor(t, "retrying", func() bool { return l.Stats().State == deliver.StateRetrying })
	st = l.Stats()
	if !strings.Contains(st.StateReason, "503") || st.StateSince.IsZero() {
		t.Errorf("retrying: reason %q since %v; want the 503 and a time", st.StateReason, st.StateSince)
	}
	if st.Errors["transient"] == 0 || st.TransportRetries == 0 {
		t.Errorf("retrying: transient errors %d, transport retries %d; want > 0", st.Errors["transient"], st.TransportRetries)
	}

	srv.SetFault(hectest.Fault{TokenDisabled: true})
	waitFor(t, "paused", func() bool { return l.Stats().State == deliver.StatePaused })
	st = l.Stats()
	if !st.Paused || !strings.Contains(st.StateReason, "403") || st.Errors["config"] == 0 {
		t.Errorf("paused: paused %v reason %q config errors %d", st.Paused, st.StateReason, st.Errors["config"])
	}
	pausedSince := st.StateSince
	waitFor(t, "a retry while paused", func() bool { return l.Stats().Retries >= 2 })
	if got := l.Stats().StateSince; !got.Equal(pausedSince) {
		t.Errorf("paused since moved from %v to %v while still paused", pausedSince, got)
	}

	srv.SetFault(hectest.Fault{})
	waitFor(t, "all acked", func() bool { return len(q.Acked()) == 3 })
	st = l.Stats()
	if st.State != deliver.StateDelivering || st.StateReason != "" || st.LastSuccess.IsZero() || st.Paused {
		t.Errorf("after recovery: state %q reason %q last success %v paused %v", st.State, st.StateReason, st.LastSuccess, st.Paused)
	}
}

// A loop told to stop while its send is being retried inside the sink
// (HEC refusing with 503) gives up the send at once instead of waiting out
// StopGrace; the record stays unacked. The grace here is an hour: Run
// returning at all is the proof.
func TestLoop_StopDoesNotWaitGraceWhileRetrying(t *testing.T) {
	srv, h, _ := hecHarness(t, hectest.Options{}, deliver.HECOptions{Name: "splunk"})
	srv.SetFault(hectest.Fault{Status: 503, Code: hectest.CodeServerBusy})
	q := newFakeQueue(record(t, 1, numbered(0, 2)))
	l := deliver.NewLoop(q, h, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry, StopGrace: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	waitFor(t, "retrying", func() bool { return l.Stats().State == deliver.StateRetrying })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(q.Acked()); n != 0 {
		t.Errorf("%d records acked, want 0 (the send never succeeded)", n)
	}
}

// Retries counts sends made again: one failed send followed by a
// successful one is one retry, and a transient failure seen by the loop
// moves it to retrying with the error as reason.
func TestLoop_RetriesCountResends(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 1)))
	fails := 3
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		if fails > 0 {
			fails--
			return &deliver.Error{Kind: deliver.Transient, EventIndex: -1, Text: "connection refused"}
		}
		return nil
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
	runLoop(t, l)
	waitFor(t, "acked", func() bool { return len(q.Acked()) == 1 })
	st := l.Stats()
	if st.Retries != 3 || st.Errors["transient"] != 3 {
		t.Errorf("retries %d, transient errors %d; want 3 and 3", st.Retries, st.Errors["transient"])
	}
	if st.State != deliver.StateDelivering {
		t.Errorf("state %q after success", st.State)
	}
}
