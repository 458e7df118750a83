package deliver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"slsrelay/deliver"
	"slsrelay/spool"
)

// batchSpool opens a real spool holding recs (written before the loop
// starts, so that they queue behind each other).
func batchSpool(t *testing.T, recs ...*spool.Record) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 64 << 20, MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	for i, r := range recs {
		if err := sp.Put(context.Background(), r); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := sp.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sp
}

// sendLog is a sink that records every Send's events (by their "n" field)
// and answers with reply (nil: accepted).
type sendLog struct {
	mu    sync.Mutex
	sends [][]string
	reply func(b *deliver.Batch) error
}

func (s *sendLog) sink() *fakeSink {
	return &fakeSink{SendFunc: func(ctx context.Context, b *deliver.Batch) error {
		var ns []string
		for _, e := range b.Events {
			ns = append(ns, fieldN(e))
		}
		s.mu.Lock()
		s.sends = append(s.sends, ns)
		s.mu.Unlock()
		if s.reply != nil {
			return s.reply(b)
		}
		return nil
	}}
}

func (s *sendLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.sends)
}

func deadLetterSummary(t *testing.T, sp *spool.Spool) []string {
	t.Helper()
	var out []string
	for d, err := range sp.DeadLetters() {
		if err != nil {
			t.Fatal(err)
		}
		evs, err := deliver.Decode(d.Record)
		if err != nil {
			t.Fatalf("dead letter %s: %v", d.Record.Cursor, err)
		}
		var ns []string
		for _, e := range evs {
			ns = append(ns, fieldN(e))
		}
		out = append(out, d.Record.Cursor+":"+strings.Join(ns, ","))
	}
	return out
}

// The records queued behind the head go out together, in order, in
// batches of at most BatchRecords, each acknowledged at once.
func TestLoop_BatchesQueuedRecords(t *testing.T) {
	var recs []*spool.Record
	for i := range 10 {
		recs = append(recs, record(t, uint64(i), numbered(2*i, 2)))
	}
	sp := batchSpool(t, recs...)
	var sl sendLog
	l := deliver.NewLoop(sp, sl.sink(), deliver.LoopOptions{Logger: testLogger(t, nil), BatchRecords: 4})
	runLoop(t, l)
	waitFor(t, "all acked", func() bool { return sp.Stats().Depth == 0 })
	want := "[[0 1 2 3 4 5 6 7] [8 9 10 11 12 13 14 15] [16 17 18 19]]"
	if got := sl.String(); got != want {
		t.Fatalf("sends %s, want %s", got, want)
	}
	if st := l.Stats(); st.DeliveredRecords != 10 || st.DeliveredEvents != 20 {
		t.Fatalf("delivered %d records, %d events", st.DeliveredRecords, st.DeliveredEvents)
	}
	if st := sp.Stats(); st.Acked != 10 {
		t.Fatalf("spool acked %d", st.Acked)
	}
}

// A rejection that names no event, of a batch of several records, is not
// applied to the whole batch: the records are sent one by one and only the
// one the SIEM refuses is dead-lettered.
func TestLoop_BatchRejectionWithoutIndexSplitsByRecord(t *testing.T) {
	sp := batchSpool(t, record(t, 0, numbered(0, 2)), record(t, 1, numbered(2, 2)), record(t, 2, numbered(4, 2)))
	var sl sendLog
	sl.reply = func(b *deliver.Batch) error {
		for _, e := range b.Events {
			if fieldN(e) == "3" {
				return &deliver.Error{Kind: deliver.Permanent, Status: 400, EventIndex: -1, Text: "bad"}
			}
		}
		return nil
	}
	l := deliver.NewLoop(sp, sl.sink(), deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	waitFor(t, "all acked", func() bool { return sp.Stats().Depth == 0 })
	if got, want := sl.String(), "[[0 1 2 3 4 5] [0 1] [2 3] [4 5]]"; got != want {
		t.Fatalf("sends %s, want %s", got, want)
	}
	if got := deadLetterSummary(t, sp); fmt.Sprint(got) != "[c1:2,3]" {
		t.Fatalf("dead letters %v, want record c1 whole", got)
	}
	if st := l.Stats(); st.DeliveredEvents != 4 || st.DeadLettered[deliver.ReasonRejected] != 2 {
		t.Fatalf("delivered %d, dead-lettered %v", st.DeliveredEvents, st.DeadLettered)
	}
}

// A rejected event of a batch is dead-lettered with the record it came
// from (its project, shard and cursor), and the events after it are sent.
func TestLoop_BatchRejectedEventKeepsItsRecord(t *testing.T) {
	sp := batchSpool(t, record(t, 0, numbered(0, 2)), record(t, 1, numbered(2, 3)), record(t, 2, numbered(5, 2)))
	var sl sendLog
	sl.reply = func(b *deliver.Batch) error {
		for i, e := range b.Events {
			if fieldN(e) == "3" {
				return &deliver.Error{Kind: deliver.Permanent, Status: 400, Code: 6, EventIndex: i, Text: "invalid data format"}
			}
		}
		return nil
	}
	l := deliver.NewLoop(sp, sl.sink(), deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	waitFor(t, "all acked", func() bool { return sp.Stats().Depth == 0 })
	if got, want := sl.String(), "[[0 1 2 3 4 5 6] [4 5 6]]"; got != want {
		t.Fatalf("sends %s, want %s", got, want)
	}
	if got := deadLetterSummary(t, sp); fmt.Sprint(got) != "[c1:3]" {
		t.Fatalf("dead letters %v, want event 3 of record c1", got)
	}
	if st := l.Stats(); st.DeliveredEvents != 6 || st.DeliveredRecords != 3 {
		t.Fatalf("delivered %d events, %d records", st.DeliveredEvents, st.DeliveredRecords)
	}
}

// An undecodable record inside a batch is dead-lettered whole; the records
// around it are delivered in the same send.
func TestLoop_BatchUndecodableRecord(t *testing.T) {
	bad := &spool.Record{Project: "p", Cursor: "bad", Count: 2, Payload: []byte{0x0a, 0x7f, 0x01}}
	sp := batchSpool(t, record(t, 0, numbered(0, 2)), bad, record(t, 2, numbered(2, 2)))
	var sl sendLog
	l := deliver.NewLoop(sp, sl.sink(), deliver.LoopOptions{Logger: testLogger(t, nil)})
	runLoop(t, l)
	waitFor(t, "all acked", func() bool { return sp.Stats().Depth == 0 })
	if got := sl.String(); got != "[[0 1 2 3]]" {
		t.Fatalf("sends %s", got)
	}
	n := 0
	for d, err := range sp.DeadLetters() {
		if err != nil || d.Record.Cursor != "bad" || !strings.HasPrefix(d.Reason, "decode: ") {
			t.Fatalf("dead letter %+v, %v", d, err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d dead letters", n)
	}
}

// A send that fails transiently is retried as the same batch; the records
// are acknowledged only once it goes through.
func TestLoop_BatchRetriedWhole(t *testing.T) {
	sp := batchSpool(t, record(t, 0, numbered(0, 1)), record(t, 1, numbered(1, 1)))
	var sl sendLog
	fails := 2
	sl.reply = func(b *deliver.Batch) error {
		if fails > 0 {
			fails--
			if sp.Stats().Depth != 2 {
				t.Errorf("depth %d while the batch is unconfirmed", sp.Stats().Depth)
			}
			return &deliver.Error{Kind: deliver.Transient, Status: 503, EventIndex: -1, Err: errors.New("busy")}
		}
		return nil
	}
	l := deliver.NewLoop(sp, sl.sink(), deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
	runLoop(t, l)
	waitFor(t, "all acked", func() bool { return sp.Stats().Depth == 0 })
	if got := sl.String(); got != "[[0 1] [0 1] [0 1]]" {
		t.Fatalf("sends %s", got)
	}
}
