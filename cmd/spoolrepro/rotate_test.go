package spoolrepro

import (
	"context"
	"testing"
	"time"

	"slsrelay/spool"
)

// A reader caught up at the end of a segment when the writer rotates.
func TestRotateWhileCaughtUp(t *testing.T) {
	s, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 256 << 20, MinFreeBytes: 1 << 20, SegmentBytes: 4 << 20, Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	payload := make([]byte, 3<<20)
	for i := 0; i < 3; i++ {
		if err := s.Put(ctx, &spool.Record{Project: "p", Logstore: "l", Count: 1, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		r, err := s.Peek(ctx)
		if err != nil {
			t.Fatalf("record %d: peek: %v (stats %+v)", i, err, s.Stats())
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := s.Stats(); st.Corrupt != 0 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v", st)
	}
}
