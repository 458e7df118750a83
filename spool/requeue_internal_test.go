package spool

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func reqRec(i int) *Record {
	return &Record{Project: "p", Logstore: "l", Shard: i % 3, Cursor: fmt.Sprintf("c-%d", i), Count: 10 + i,
		Payload: []byte(strings.Repeat(fmt.Sprintf("record %d;", i), 100)), ReceivedAt: time.Now().Add(-time.Hour)}
}

func TestSpool_InspectAndRequeue(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	opts := Options{MinFreeBytes: 1, SegmentBytes: 64 << 10}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	for i := range 5 {
		if err := s.Put(ctx, reqRec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	reasons := []string{"hec 400 code 7: incorrect index", "hec: event over the size limit", ""}
	for _, reason := range reasons {
		r, err := s.Peek(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if reason != "" {
			if err := s.DeadLetter(r, reason); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	// A quarantined corrupt region: raw bytes, never requeued.
	if err := s.quarantine("spool.diskqueue.000000.dat", 123, []byte("garbage"), "crc mismatch"); err != nil {
		t.Fatal(err)
	}

	// Inspect reads the files of the open spool without its lock.
	st, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	open := s.Stats()
	if st.Depth != 2 || st.Bytes != open.Bytes || st.DeadLetters != 3 || st.OldestAge < 59*time.Minute {
		t.Fatalf("Inspect = %+v; the open spool says depth %d bytes %d dead %d", st, open.Depth, open.Bytes, open.DeadLetters)
	}

	n, err := s.Requeue(ctx, func(d DeadLetter) bool { return strings.Contains(d.Reason, "code 7") })
	if err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v; want 1 record", n, err)
	}
	if st := s.Stats(); st.Depth != 3 || st.DeadLetters != 2 {
		t.Fatalf("after the requeue: depth %d dead %d, want 3 and 2", st.Depth, st.DeadLetters)
	}
	var left []string
	for d, err := range s.DeadLetters() {
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, d.Reason)
	}
	if fmt.Sprint(left) != "[hec: event over the size limit crc mismatch]" {
		t.Fatalf("dead letters left: %q", left)
	}
	// A dead letter added after the requeue goes after the kept ones.
	if err := s.DeadLetter(reqRec(9), "later"); err != nil {
		t.Fatal(err)
	}
	var order []string
	for range 3 {
		r, err := s.Peek(ctx)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, r.Cursor)
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(order) != "[c-3 c-4 c-0]" {
		t.Fatalf("delivery order after the requeue %v, want the requeued record last", order)
	}

	// Requeue everything that holds a record; the raw entry stays. It
	// survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	n, err = s.Requeue(ctx, nil)
	if err != nil || n != 2 {
		t.Fatalf("Requeue(all) = %d, %v; want 2", n, err)
	}
	left = left[:0]
	for d, err := range s.DeadLetters() {
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, fmt.Sprintf("%s raw=%d", d.Reason, len(d.Raw)))
	}
	if fmt.Sprint(left) != "[crc mismatch raw=7]" {
		t.Fatalf("dead letters after requeue(all): %q", left)
	}
	st, err = Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 2 || st.DeadLetters != 1 {
		t.Fatalf("Inspect after requeue(all) = %+v", st)
	}
}

// A full spool stops a requeue when its ctx ends: what was put stays put
// and leaves the dead-letter queue, the rest stays dead-lettered.
func TestSpool_RequeueIntoFullSpool(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{MinFreeBytes: 1, SegmentBytes: 64 << 10, MaxBytes: 3000, Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 4 {
		if err := s.DeadLetter(reqRec(i), "rejected"); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	n, err := s.Requeue(cctx, nil)
	if err == nil || n < 1 || n >= 4 {
		t.Fatalf("Requeue into a spool with room for about one record = %d, %v", n, err)
	}
	if st := s.Stats(); st.Depth != int64(n) || st.DeadLetters != int64(4-n) {
		t.Fatalf("after a partial requeue of %d: depth %d dead %d", n, st.Depth, st.DeadLetters)
	}
	t.Logf("requeued %d of 4 before the budget stopped it: %v", n, err)
}

func TestInspect_Errors(t *testing.T) {
	if _, err := Inspect(t.TempDir() + "/missing"); err == nil {
		t.Fatal("Inspect of a missing directory did not fail")
	}
	st, err := Inspect(t.TempDir())
	if err != nil || st.Depth != 0 || st.DeadLetters != 0 {
		t.Fatalf("Inspect of an empty directory = %+v, %v", st, err)
	}
}
