package spool_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slsrelay/spool"
)

// endCounter counts the spool's "removed fully read segment" messages (a
// caught-up reader met the end of a segment the writer left) and passes
// warnings and errors on to t.Log.
type endCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h endCounter) Enabled(_ context.Context, l slog.Level) bool { return true }

func (h endCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "removed fully read segment" {
		h.n.Add(1)
	}
	if r.Level < slog.LevelWarn || r.Message == "spool full; put waits" || r.Message == "spool has room again; put resumes" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h endCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return endCounter{h.Handler.WithAttrs(as), h.n}
}

func countingLogger(t testing.TB) (*slog.Logger, *atomic.Int64) {
	n := new(atomic.Int64)
	return slog.New(endCounter{slog.NewTextHandler(tWriter{t}, nil), n}), n
}

// noLeftovers fails if dir holds .bad segment files.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".bad") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

// A reader caught up at the end of a segment when the writer rolls to the
// next one: go-diskqueue (pinned version) reads at the end of the old file,
// meets io.EOF and reports a read error. That must neither stall Peek nor
// count as corruption.
func TestSpool_RotateWhileCaughtUp(t *testing.T) {
	dir := t.TempDir()
	log, ends := countingLogger(t)
	s, err := spool.Open(dir, spool.Options{MaxBytes: 256 << 20, MinFreeBytes: 1 << 20, SegmentBytes: 4 << 20,
		Compression: "none", Logger: log})
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
	if st := s.Stats(); st.Corrupt != 0 || st.DeadLetters != 0 || st.Depth != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, dir)
	if ends.Load() != 2 {
		t.Errorf("%d segment ends met, want 2 (the test no longer exercises the case?)", ends.Load())
	}
}

// The same with the head peeked (read ahead by diskqueue) but not yet
// acknowledged while the writer rolls, and with a reopen in between.
func TestSpool_RotateWhilePeeked(t *testing.T) {
	dir := t.TempDir()
	log, ends := countingLogger(t)
	o := spool.Options{MinFreeBytes: 1, SegmentBytes: 64 << 10, Compression: "none", Logger: log}
	s := openT(t, dir, o)
	ctx := ctxT(t)
	next := 0
	for round := range 2 {
		for range 6 {
			want := rec(next, 40<<10) // one record per segment
			next++
			put(t, s, want)
			r, err := s.Peek(ctx)
			if err != nil {
				t.Fatalf("peek: %v (stats %+v)", err, s.Stats())
			}
			sameRecord(t, r, want)
			// Roll while the head is peeked: the next record does not fit.
			put(t, s, rec(next, 40<<10))
			if err := s.Ack(r.Seq); err != nil {
				t.Fatal(err)
			}
			r, err = s.Peek(ctx)
			if err != nil {
				t.Fatalf("peek: %v (stats %+v)", err, s.Stats())
			}
			if r.Cursor != rec(next, 0).Cursor {
				t.Fatalf("got %s, want c%d", r.Cursor, next)
			}
			next++
			if err := s.Ack(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		if st := s.Stats(); st.Corrupt != 0 || st.DeadLetters != 0 || st.Depth != 0 {
			t.Fatalf("round %d: stats %+v", round, st)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		noLeftovers(t, dir)
		s = openT(t, dir, o)
	}
	if ends.Load() == 0 {
		t.Errorf("no segment end met (the test no longer exercises the case?)")
	}
}

// The reader in the middle of a segment while the writer rolls (diskqueue
// handles this one: it records where the old segment ends).
func TestSpool_RotateWhileBehind(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, spool.Options{MinFreeBytes: 1, SegmentBytes: 64 << 10, Compression: "none", Logger: testLogger(t)})
	var want []*spool.Record
	for i := range 40 {
		r := rec(i, 10<<10)
		put(t, s, r)
		want = append(want, r)
		if i%5 == 4 { // read some, staying behind the writer
			got := drainN(t, s, 3)
			for _, g := range got {
				sameRecord(t, g, want[0])
				want = want[1:]
			}
		}
	}
	for _, g := range drain(t, s) {
		sameRecord(t, g, want[0])
		want = want[1:]
	}
	if st := s.Stats(); st.Corrupt != 0 || st.DeadLetters != 0 || len(want) != 0 {
		t.Fatalf("stats %+v, %d undelivered", st, len(want))
	}
	noLeftovers(t, dir)
}

func drainN(t *testing.T, s *spool.Spool, n int) []*spool.Record {
	t.Helper()
	var got []*spool.Record
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := s.Peek(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Peek: %v", err)
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	return got
}

// Many rolls with a reader that alternates between caught up and behind:
// concurrent writers Put+Sync records of random sizes, one reader Peeks
// and Acks at a random pace. Every record arrives exactly once, in order
// per writer, and nothing is reported corrupt.
func TestSpool_RotateRandomised(t *testing.T) {
	dir := t.TempDir()
	log, ends := countingLogger(t)
	s := openT(t, dir, spool.Options{MaxBytes: 64 << 20, MinFreeBytes: 1, SegmentBytes: 4 << 20,
		Compression: "none", Logger: log})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	src := make([]byte, 3<<20)
	fill := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < len(src); i += 8 {
		binary.LittleEndian.PutUint64(src[i:], fill.Uint64())
	}

	const writers = 3
	run := 2 * time.Second
	if testing.Short() {
		run = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	// Run for run, longer (up to 4*run) until the reader met enough segment
	// ends while caught up.
	more := func() bool {
		d := time.Since(start)
		return d < run || d < 4*run && ends.Load() < 10
	}
	// Phases of 200ms: writers in a burst, writers trickling, in between.
	phase := func() int { return int(time.Since(start)/(200*time.Millisecond)) % 3 }
	var wg sync.WaitGroup
	sent := make([]int, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w+2)))
			for i := 0; more(); i++ {
				size := 1<<10 + rng.IntN(3<<20-1<<10+1)
				p := make([]byte, size)
				copy(p, src[rng.IntN(len(src)-size+1):])
				binary.BigEndian.PutUint32(p, uint32(i))
				r := &spool.Record{Project: "p", Logstore: "l", Shard: w, Count: 1, Payload: p}
				if err := s.Put(ctx, r); err != nil {
					t.Errorf("writer %d: put: %v", w, err)
					return
				}
				if err := s.Sync(ctx); err != nil {
					t.Errorf("writer %d: sync: %v", w, err)
					return
				}
				sent[w] = i + 1
				switch phase() {
				case 0: // burst: the reader falls behind
				case 1: // trickle: the reader catches up before the next put
					for t0 := time.Now(); s.Stats().Depth > 0 && time.Since(t0) < time.Second; {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
				default:
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	rng := rand.New(rand.NewPCG(seed, 0))
	next := make([]int, writers)
	var lastSeq uint64
	finished := false
	for {
		if !finished {
			select {
			case <-done:
				finished = true
			default:
			}
		}
		if finished && s.Stats().Depth == 0 {
			break
		}
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		r, err := s.Peek(pctx)
		pcancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			continue // writers may have finished meanwhile
		}
		if err != nil {
			t.Fatalf("peek: %v (stats %+v)", err, s.Stats())
		}
		if r.Seq <= lastSeq {
			t.Fatalf("seq %d after %d", r.Seq, lastSeq)
		}
		lastSeq = r.Seq
		i := int(binary.BigEndian.Uint32(r.Payload))
		if i != next[r.Shard] {
			t.Fatalf("writer %d: got record %d, want %d", r.Shard, i, next[r.Shard])
		}
		next[r.Shard]++
		if phase() == 0 {
			time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for w := range writers {
		if next[w] != sent[w] {
			t.Errorf("writer %d: delivered %d of %d", w, next[w], sent[w])
		}
		total += sent[w]
	}
	st := s.Stats()
	if st.Corrupt != 0 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d records, %d caught-up segment ends in %v, stats %+v", total, ends.Load(), time.Since(start).Round(time.Millisecond), st)
	if ends.Load() == 0 {
		t.Errorf("the reader never met a segment end while caught up")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, dir)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.dat"))
	t.Logf("files left: %d", len(segs))
}
