package deliver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
)

// sinkHarness drives one Sink implementation against its fake receiver for
// the conformance suite.
type sinkHarness struct {
	sink deliver.Sink
	// received returns the "n" field of every event the receiver accepted,
	// in arrival order.
	received func() []string
	// attempts counts requests the receiver answered.
	attempts func() int
	// fail makes the receiver refuse everything with an answer of kind.
	fail func(kind deliver.ErrorKind)
	// reject makes the receiver refuse the event whose "n" is n, for good;
	// nil when the protocol has no way to refuse one event (plain syslog).
	reject func(n string)
	// noConfig, when set, says why the receiver cannot produce a Config
	// failure (plain TCP syslog has no answer at all).
	noConfig string
	// heal clears every fault.
	heal func()
	// hold, when not nil, keeps confirmations back (true) or lets them go.
	hold func(bool)
}

func batchOf(t *testing.T, seq uint64, first, n int) *deliver.Batch {
	evs, err := deliver.Decode(record(t, seq, numbered(first, n)))
	if err != nil {
		t.Fatal(err)
	}
	return &deliver.Batch{Seq: seq, Events: evs}
}

func seqString(first, n int) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		if i > first {
			b.WriteByte(',')
		}
		b.WriteString(itoa(i))
	}
	return b.String()
}

// testSinkConformance runs the checks every Sink must pass.
func testSinkConformance(t *testing.T, newHarness func(t *testing.T) *sinkHarness) {
	ctx := context.Background()
	t.Run("order", func(t *testing.T) {
		h := newHarness(t)
		for i, n := range []int{3, 1, 50} {
			first := []int{0, 3, 4}[i]
			if err := h.sink.Send(ctx, batchOf(t, uint64(i+1), first, n)); err != nil {
				t.Fatal(err)
			}
		}
		if got := strings.Join(h.received(), ","); got != seqString(0, 54) {
			t.Errorf("received %s", got)
		}
	})
	t.Run("confirmed before return", func(t *testing.T) {
		h := newHarness(t)
		if h.hold == nil {
			t.Skip("receiver cannot hold confirmations")
		}
		h.hold(true)
		done := make(chan error, 1)
		go func() { done <- h.sink.Send(ctx, batchOf(t, 1, 0, 5)) }()
		waitFor(t, "events at the receiver", func() bool { return len(h.received()) > 0 })
		select {
		case err := <-done:
			t.Fatalf("Send returned %v before confirmation", err)
		default:
		}
		h.hold(false)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		h := newHarness(t)
		h.fail(deliver.Transient)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- h.sink.Send(cctx, batchOf(t, 1, 0, 2)) }()
		waitFor(t, "retries", func() bool { return h.attempts() >= 2 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Send ignored cancellation")
		}
	})
	t.Run("transient is retried until it heals", func(t *testing.T) {
		h := newHarness(t)
		h.fail(deliver.Transient)
		done := make(chan error, 1)
		go func() { done <- h.sink.Send(ctx, batchOf(t, 1, 0, 3)) }()
		waitFor(t, "retries", func() bool { return h.attempts() >= 3 })
		h.heal()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(h.received(), ","); got != "0,1,2" {
			t.Errorf("received %s", got)
		}
	})
	t.Run("config", func(t *testing.T) {
		h := newHarness(t)
		if h.noConfig != "" {
			t.Skip(h.noConfig)
		}
		h.fail(deliver.Config)
		err := h.sink.Send(ctx, batchOf(t, 1, 0, 2))
		var de *deliver.Error
		if !errors.As(err, &de) || de.Kind != deliver.Config {
			t.Fatalf("got %v, want a Config *deliver.Error", err)
		}
		h.heal()
		if err := h.sink.Send(ctx, batchOf(t, 1, 0, 2)); err != nil {
			t.Fatalf("after healing: %v", err)
		}
	})
	t.Run("permanent names the event", func(t *testing.T) {
		h := newHarness(t)
		if h.reject == nil {
			t.Skip("receiver cannot refuse one event")
		}
		h.reject("13")
		err := h.sink.Send(ctx, batchOf(t, 1, 10, 6))
		var de *deliver.Error
		if !errors.As(err, &de) || de.Kind != deliver.Permanent || de.EventIndex != 3 {
			t.Fatalf("got %v, want Permanent at event 3", err)
		}
		// Events after the rejected one may have arrived too (a RELP
		// window in flight); the loop sends them again: at least once.
		if got := strings.Join(h.received(), ","); !strings.Contains(got, "10,11,12") || strings.Contains(got, "13") {
			t.Errorf("received %s, want the events before the rejected one and not it", got)
		}
	})
	t.Run("close", func(t *testing.T) {
		h := newHarness(t)
		if err := h.sink.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h.sink.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}
