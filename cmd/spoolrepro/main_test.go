package spoolrepro

import (
	"context"
	"sync"
	"testing"
	"time"

	"slsrelay/spool"
)

func TestRepro(t *testing.T) {
	s, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 256 << 20, MinFreeBytes: 1 << 20, SegmentBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const writers, per = 4, 20
	payload := make([]byte, 3<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>9)
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(500 * time.Millisecond)
			for i := 0; i < per; i++ {
				r := &spool.Record{Project: "p", Logstore: "l", Shard: w, Count: 1, Payload: payload}
				if err := s.Put(ctx, r); err != nil {
					t.Error(err)
					return
				}
				if err := s.Sync(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	got := 0
	for got < writers*per {
		r, err := s.Peek(ctx)
		if err != nil {
			t.Fatalf("peek after %d: %v (stats %+v)", got, err, s.Stats())
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
		got++
	}
	wg.Wait()
	t.Logf("ok %d, stats %+v", got, s.Stats())
}
