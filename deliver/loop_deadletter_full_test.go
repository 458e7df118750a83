package deliver_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"slsrelay/deliver"
	"slsrelay/spool"
)

// fullDLQ is a real spool whose dead-letter queue can be declared full: it
// answers DeadLetter with spool.ErrDeadLetterFull while full is set, as the
// spool does at its dead-letter budget or floor.
type fullDLQ struct {
	*spool.Spool
	full    atomic.Bool
	refused atomic.Int64
}

func (q *fullDLQ) DeadLetter(r *spool.Record, reason string) error {
	if q.full.Load() {
		q.refused.Add(1)
		return spool.ErrDeadLetterFull
	}
	return q.Spool.DeadLetter(r, reason)
}

// A full dead-letter queue must not stop the sink's loop (and with it the
// relay, on every restart): the rejected record stays in the spool, the sink
// shows as paused with the reason, and once the queue takes entries again
// the events are dead-lettered and delivery carries on.
func TestLoop_DeadLetterFullPausesNotStops(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 64 << 20, MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	ctx := context.Background()
	for i, r := range []*spool.Record{record(t, 0, numbered(0, 3)), record(t, 0, numbered(3, 2))} {
		if err := sp.Put(ctx, r); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := sp.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	q := &fullDLQ{Spool: sp}
	q.full.Store(true)
	var sent atomic.Int64
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		if fieldN(b.Events[0]) == "0" {
			return &deliver.Error{Kind: deliver.Permanent, EventIndex: -1, Err: errors.New("hec 400: invalid data format")}
		}
		sent.Add(int64(len(b.Events)))
		return nil
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil)})
	ctxRun, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctxRun) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	waitFor(t, "two refused dead letters", func() bool { return q.refused.Load() >= 2 })
	select {
	case err := <-done:
		t.Fatalf("Run returned while the dead-letter queue was full: %v", err)
	default:
	}
	st := l.Stats()
	if st.State != deliver.StatePaused || !strings.Contains(st.StateReason, "dead-letter") {
		t.Errorf("state %q (%q), want paused naming the dead-letter queue", st.State, st.StateReason)
	}
	if sp.Stats().Depth != 2 || sent.Load() != 0 {
		t.Errorf("depth %d, sent %d: the rejected record must stay and block the ones behind it", sp.Stats().Depth, sent.Load())
	}

	q.full.Store(false)
	waitFor(t, "both records done", func() bool { return sp.Stats().Depth == 0 })
	if n := sent.Load(); n != 2 {
		t.Errorf("sent %d events after the queue freed, want 2", n)
	}
	if st := l.Stats(); st.DeadLettered[deliver.ReasonRejected] != 3 || st.State != deliver.StateDelivering {
		t.Errorf("dead-lettered %v, state %q; want 3 rejected and delivering", st.DeadLettered, st.State)
	}
	var dl int
	for _, err := range sp.DeadLetters() {
		if err != nil {
			t.Fatal(err)
		}
		dl++
	}
	if dl != 1 {
		t.Errorf("%d dead-letter entries, want 1", dl)
	}
}
