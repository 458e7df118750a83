package deliver_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/spool"
)

var _ deliver.Queue = (*spool.Spool)(nil)

// runLoop starts l.Run and returns a stop func that cancels and checks the
// result is nil.
func runLoop(t *testing.T, l *deliver.Loop) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func fieldN(e deliver.Event) string { v, _ := e.Field("n"); return v }

func TestLoop_AcksOnlyAfterSend(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 3)), record(t, 2, numbered(3, 2)))
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		if b.Seq == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mu.Lock()
		for _, e := range b.Events {
			got = append(got, fieldN(e))
		}
		mu.Unlock()
		return nil
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	if len(q.Acked()) != 0 {
		t.Fatal("acked before the sink confirmed")
	}
	close(release)
	waitFor(t, "two acks", func() bool { return len(q.Acked()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "0,1,2,3,4" {
		t.Errorf("sent %v", got)
	}
	if st := l.Stats(); st.DeliveredEvents != 5 || st.DeliveredRecords != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoop_PermanentEventIsDeadLettered(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 5)))
	var calls [][]string
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		var ns []string
		for _, e := range b.Events {
			ns = append(ns, fieldN(e))
		}
		calls = append(calls, ns)
		if len(calls) == 1 {
			return &deliver.Error{Kind: deliver.Permanent, Status: 400, Code: 6, EventIndex: 2, Text: "Invalid data format"}
		}
		return nil
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
	if len(calls) != 2 || strings.Join(calls[1], ",") != "3,4" {
		t.Fatalf("sends %v, want the events after the rejected one resent", calls)
	}
	dead := q.Dead()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters", len(dead))
	}
	evs, err := deliver.Decode(dead[0].rec)
	if err != nil || len(evs) != 1 || fieldN(evs[0]) != "2" || dead[0].rec.Count != 1 {
		t.Fatalf("dead letter holds %v (%v)", evs, err)
	}
	if m := evs[0].Meta; m.Topic != "audit" || m.Source != "10.0.0.1" || len(m.Tags) != 1 || dead[0].rec.Project != "proj" {
		t.Errorf("dead letter lost its metadata: %+v", m)
	}
	if !evs[0].Time.Equal(evs[0].Time) || evs[0].Time.Nanosecond() != 123456789 {
		t.Errorf("time %v", evs[0].Time)
	}
	if !strings.Contains(dead[0].reason, "Invalid data format") {
		t.Errorf("reason %q", dead[0].reason)
	}
	if st := l.Stats(); st.DeadLettered[deliver.ReasonRejected] != 1 || st.DeliveredEvents != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoop_PermanentWithoutIndexDeadLettersRecord(t *testing.T) {
	rec := record(t, 1, numbered(0, 3))
	q := newFakeQueue(rec)
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		return &deliver.Error{Kind: deliver.Permanent, Status: 422, EventIndex: -1}
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
	if d := q.Dead(); len(d) != 1 || d[0].rec != rec {
		t.Fatalf("dead letters %v, want the whole record", d)
	}
}

func TestLoop_UndecodableRecord(t *testing.T) {
	bad := &spool.Record{Seq: 1, Project: "p", Count: 2, Payload: []byte{0x0a, 0x7f, 0x01}}
	q := newFakeQueue(bad, record(t, 2, numbered(0, 1)))
	sent := 0
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error { sent += len(b.Events); return nil }}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	waitFor(t, "acks", func() bool { return len(q.Acked()) == 2 })
	d := q.Dead()
	if len(d) != 1 || d[0].rec != bad || !strings.HasPrefix(d[0].reason, "decode: ") {
		t.Fatalf("dead letters %+v", d)
	}
	if st := l.Stats(); st.DeadLettered[deliver.ReasonDecode] != 2 || sent != 1 {
		t.Errorf("stats %+v sent %d", st, sent)
	}
}

func TestLoop_ConfigPausesAndResumes(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 2)))
	var mu sync.Mutex
	broken := true
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return &deliver.Error{Kind: deliver.Config, Status: 401, Code: 3, EventIndex: -1}
		}
		return nil
	}}
	var paused []bool
	var logs syncBuffer
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, &logs), Retry: fastRetry,
		Metrics: deliver.LoopMetrics{Paused: func(p bool) { paused = append(paused, p) }}})
	runLoop(t, l)
	waitFor(t, "pause", func() bool { st := l.Stats(); return st.Paused && st.Retries >= 3 })
	if len(q.Acked()) != 0 || len(q.Dead()) != 0 {
		t.Fatal("config error acked or dead-lettered data")
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
	if st := l.Stats(); st.Paused || !strings.Contains(st.LastError, "401") {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "sink paused"); n != 1 {
		t.Errorf("%d pause logs, want 1 (once a minute)", n)
	}
	if !strings.Contains(logs.String(), "sink resumed") || !strings.Contains(logs.String(), "sink=fake") {
		t.Errorf("logs:\n%s", logs.String())
	}
	if len(paused) != 2 || !paused[0] || paused[1] {
		t.Errorf("paused hooks %v", paused)
	}
}

func TestLoop_TransientNeverGivesUp(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 1)))
	calls := 0
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		calls++
		if calls < 20 {
			return errors.New("connection reset by peer")
		}
		return nil
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
	runLoop(t, l)
	waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
	if st := l.Stats(); st.Retries != 19 || len(q.Dead()) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoop_CancelLeavesRecordUnacked(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 1)))
	started := make(chan struct{})
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil)})
	stop := runLoop(t, l)
	<-started
	stop()
	if len(q.Acked()) != 0 || len(q.Dead()) != 0 {
		t.Errorf("acked %v dead %v after cancel", q.Acked(), q.Dead())
	}
}

// Found by the chaos campaign (scenario 14, graceful stop): a send in
// flight at SIGTERM was abandoned and re-sent after the restart. With
// StopGrace the loop lets it finish and acks it; the next record is not sent.
func TestLoop_StopGraceFinishesSendInFlight(t *testing.T) {
	q := newFakeQueue(record(t, 1, numbered(0, 1)), record(t, 2, numbered(1, 1)))
	started, release := make(chan struct{}), make(chan struct{})
	var sends int
	sink := &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		sends++
		if sends == 1 {
			close(started)
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	l := deliver.NewLoop(q, sink, deliver.LoopOptions{Logger: testLogger(t, nil), StopGrace: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	<-started
	cancel()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := q.Acked(); len(got) != 1 || got[0] != 1 || sends != 1 {
		t.Errorf("acked %v after %d sends, want [1] after 1", got, sends)
	}
}

func TestLoop_QueueFailuresStopTheLoop(t *testing.T) {
	t.Run("dead letter fails: no ack", func(t *testing.T) {
		q := newFakeQueue(&spool.Record{Seq: 1, Payload: []byte{0xff}})
		q.deadErr = errors.New("disk full")
		l := deliver.NewLoop(q, &fakeSink{}, deliver.LoopOptions{Logger: testLogger(t, nil)})
		err := l.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "disk full") || len(q.Acked()) != 0 {
			t.Errorf("Run = %v, acked %v", err, q.Acked())
		}
	})
	t.Run("peek fails", func(t *testing.T) {
		q := newFakeQueue()
		q.peekErrs = spool.ErrClosed
		l := deliver.NewLoop(q, &fakeSink{}, deliver.LoopOptions{Logger: testLogger(t, nil)})
		if err := l.Run(context.Background()); !errors.Is(err, spool.ErrClosed) {
			t.Errorf("Run = %v", err)
		}
	})
}
