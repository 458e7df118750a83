package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"slsrelay/spool"
)

// testLogger routes the spool's logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

func testOptions(t testing.TB) spool.Options {
	return spool.Options{MinFreeBytes: 1, SegmentBytes: 64 << 10, Logger: testLogger(t)}
}

func openT(t testing.TB, dir string, opts spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rec returns a deterministic record for index i with ~size bytes of
// JSON-ish payload.
func rec(i, size int) *spool.Record {
	var p bytes.Buffer
	for p.Len() < size {
		fmt.Fprintf(&p, `{"i":%d,"user":"alice%d","action":"login","ip":"10.0.%d.%d"}`, i, i%7, i%255, p.Len()%255)
	}
	return &spool.Record{
		Project: "proj", Logstore: "audit", Shard: i % 4,
		Cursor: fmt.Sprintf("c%d", i), NextCursor: fmt.Sprintf("c%d", i+1),
		Count: i, MinTime: int64(1000 + i), MaxTime: int64(2000 + i),
		ReceivedAt: time.Unix(1700000000, int64(i)),
		Payload:    p.Bytes()[:size],
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t testing.TB, s *spool.Spool, r *spool.Record) uint64 {
	t.Helper()
	if err := s.Put(ctxT(t), r); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return r.Seq
}

// drain peeks and acks until the spool is empty (Depth 0), returning the
// records in order.
func drain(t testing.TB, s *spool.Spool) []*spool.Record {
	t.Helper()
	var got []*spool.Record
	for s.Stats().Depth > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := s.Peek(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Peek after %d records (depth %d): %v", len(got), s.Stats().Depth, err)
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatalf("Ack(%d): %v", r.Seq, err)
		}
		got = append(got, r)
	}
	return got
}

func sameRecord(t testing.TB, got, want *spool.Record) {
	t.Helper()
	if got.Seq != want.Seq || got.Project != want.Project || got.Logstore != want.Logstore ||
		got.Shard != want.Shard || got.Cursor != want.Cursor || got.NextCursor != want.NextCursor ||
		got.Count != want.Count || got.MinTime != want.MinTime || got.MaxTime != want.MaxTime ||
		!got.ReceivedAt.Equal(want.ReceivedAt) || !bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("record mismatch:\n got %+v\nwant %+v", summary(got), summary(want))
	}
}

func summary(r *spool.Record) string {
	return fmt.Sprintf("seq=%d %s/%s/%d %s..%s n=%d t=%d..%d recv=%v payload=%dB",
		r.Seq, r.Project, r.Logstore, r.Shard, r.Cursor, r.NextCursor, r.Count, r.MinTime, r.MaxTime, r.ReceivedAt, len(r.Payload))
}

func TestSpool_PutPeekAck(t *testing.T) {
	for _, comp := range []string{"s2", "lz4", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			opts := testOptions(t)
			opts.Compression = comp
			s := openT(t, t.TempDir(), opts)
			var want []*spool.Record
			for i := range 50 {
				r := rec(i, 100+i*97)
				put(t, s, r)
				want = append(want, r)
			}
			if err := s.Sync(ctxT(t)); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			got := drain(t, s)
			if len(got) != len(want) {
				t.Fatalf("got %d records, want %d", len(got), len(want))
			}
			for i := range want {
				sameRecord(t, got[i], want[i])
			}
			if st := s.Stats(); st.Depth != 0 || st.Bytes != 0 || st.Put != 50 || st.Acked != 50 {
				t.Errorf("Stats = %+v, want empty with 50 put and acked", st)
			}
		})
	}
}

func TestSpool_PeekDoesNotRemove(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOptions(t))
	for i := range 3 {
		put(t, s, rec(i, 500))
	}
	r1, err := s.Peek(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Peek(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Seq != r2.Seq {
		t.Fatalf("second Peek seq = %d, want %d", r2.Seq, r1.Seq)
	}
	if err := s.Ack(r1.Seq + 1); !errors.Is(err, spool.ErrNotHead) {
		t.Fatalf("Ack(wrong seq) = %v, want ErrNotHead", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, testOptions(t))
	if got, want := s.Stats().Depth, int64(3); got != want {
		t.Fatalf("Depth after reopen = %d, want %d", got, want)
	}
	got := drain(t, s)
	if got[0].Seq != r1.Seq {
		t.Fatalf("first record after reopen seq = %d, want %d", got[0].Seq, r1.Seq)
	}
}

func TestSpool_Reopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOptions(t))
	for i := range 20 {
		put(t, s, rec(i, 3000))
	}
	for range 7 {
		r, err := s.Peek(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	s = openT(t, dir, testOptions(t))
	t.Run("acked not redelivered", func(t *testing.T) {
		r, err := s.Peek(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.Seq, uint64(8); got != want {
			t.Fatalf("head seq = %d, want %d", got, want)
		}
		if got, want := s.Stats().Depth, int64(13); got != want {
			t.Fatalf("Depth = %d, want %d", got, want)
		}
	})
	t.Run("seq continues", func(t *testing.T) {
		if got, want := put(t, s, rec(99, 10)), uint64(21); got < want {
			t.Fatalf("seq after reopen = %d, want >= %d", got, want)
		}
	})
}

func TestSpool_Close(t *testing.T) {
	t.Run("nil spool", func(t *testing.T) {
		var s *spool.Spool
		if err := s.Close(); err != nil {
			t.Fatalf("Close on nil = %v", err)
		}
	})
	t.Run("unblocks peek", func(t *testing.T) {
		s := openT(t, t.TempDir(), testOptions(t))
		errc := make(chan error, 1)
		go func() { _, err := s.Peek(context.Background()); errc <- err }()
		s.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, spool.ErrClosed) {
				t.Fatalf("Peek = %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Peek still blocked after Close")
		}
		if err := s.Put(ctxT(t), rec(1, 10)); !errors.Is(err, spool.ErrClosed) {
			t.Fatalf("Put after Close = %v, want ErrClosed", err)
		}
	})
	t.Run("peek respects ctx", func(t *testing.T) {
		s := openT(t, t.TempDir(), testOptions(t))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := s.Peek(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Peek = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("second open locked", func(t *testing.T) {
		dir := t.TempDir()
		openT(t, dir, testOptions(t))
		if s, err := spool.Open(dir, testOptions(t)); err == nil {
			s.Close()
			t.Fatal("second Open of the same dir succeeded")
		}
	})
}

func TestOpen_Options(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts spool.Options
		want string
	}{
		{"negative max bytes", spool.Options{MaxBytes: -1}, "MaxBytes"},
		{"negative min free", spool.Options{MinFreeBytes: -1}, "MinFreeBytes"},
		{"tiny segment", spool.Options{SegmentBytes: 10}, "SegmentBytes"},
		{"tiny record", spool.Options{MaxRecordBytes: 10}, "MaxRecordBytes"},
		{"bad compression", spool.Options{Compression: "gzip"}, "Compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := spool.Open(t.TempDir(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

func TestSpool_Budget(t *testing.T) {
	opts := testOptions(t)
	opts.MaxBytes = 20 << 10
	opts.Compression = "none"
	s := openT(t, t.TempDir(), opts)
	for i := range 4 {
		put(t, s, rec(i, 4<<10)) // ~4.2 KiB each: 16.8 KiB
	}
	t.Run("put blocks over budget", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := s.Put(ctx, rec(5, 4<<10)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put over budget = %v, want DeadlineExceeded", err)
		}
		if st := s.Stats(); st.Bytes > opts.MaxBytes {
			t.Fatalf("Bytes = %d over MaxBytes %d", st.Bytes, opts.MaxBytes)
		}
	})
	t.Run("ack wakes put", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { errc <- s.Put(ctxT(t), rec(5, 4<<10)) }()
		r, err := s.Peek(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Put after Ack = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		o := testOptions(t)
		o.MaxRecordBytes = 8 << 10
		o.Compression = "none"
		s := openT(t, t.TempDir(), o)
		if err := s.Put(ctxT(t), rec(1, 9<<10)); !errors.Is(err, spool.ErrTooLarge) {
			t.Fatalf("Put = %v, want ErrTooLarge", err)
		}
	})
	t.Run("record over budget accepted when empty", func(t *testing.T) {
		o := testOptions(t)
		o.MaxBytes = 4 << 10
		o.Compression = "none"
		s := openT(t, t.TempDir(), o)
		put(t, s, rec(1, 8<<10))
		if got := s.Stats().Depth; got != 1 {
			t.Fatalf("Depth = %d, want 1", got)
		}
	})
}

func TestSpool_Stats(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	r := rec(1, 1000)
	r.ReceivedAt = time.Now().Add(-time.Hour)
	put(t, s, r)
	put(t, s, rec(2, 1000))
	st := s.Stats()
	if st.Depth != 2 || st.Bytes <= 0 || st.Put != 2 {
		t.Fatalf("Stats = %+v, want depth 2, bytes > 0, put 2", st)
	}
	if st.OldestAge < time.Hour || st.OldestAge > 2*time.Hour {
		t.Fatalf("OldestAge = %v, want about 1h", st.OldestAge)
	}
}

func TestSpool_DeadLetter(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, testOptions(t))
	put(t, s, rec(1, 1000))
	r, err := s.Peek(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(r, "hec 400: invalid event"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(rec(2, 10), "event too large"); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().DeadLetters; got != 2 {
		t.Fatalf("DeadLetters = %d, want 2", got)
	}
	if got := s.Stats().Depth; got != 1 {
		t.Fatalf("Depth after DeadLetter = %d, want 1 (DeadLetter does not ack)", got)
	}
	s.Close()
	var reasons []string
	for d, err := range spool.ReadDeadLetters(dir) {
		if err != nil {
			t.Fatal(err)
		}
		if d.Record == nil {
			t.Fatalf("dead letter %q has no record", d.Reason)
		}
		reasons = append(reasons, d.Reason)
	}
	if got, want := fmt.Sprint(reasons), "[hec 400: invalid event event too large]"; got != want {
		t.Fatalf("reasons = %s, want %s", got, want)
	}
	s = openT(t, dir, testOptions(t))
	if got := s.Stats().DeadLetters; got != 2 {
		t.Fatalf("DeadLetters after reopen = %d, want 2", got)
	}
}
