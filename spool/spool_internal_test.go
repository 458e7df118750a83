package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("SPOOL_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

func iopts(t testing.TB) Options {
	return Options{MinFreeBytes: 1, SegmentBytes: 16 << 10, Compression: "none",
		Logger: slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

func irec(i, size int) *Record {
	p := bytes.Repeat([]byte(fmt.Sprintf(`{"i":%d,"a":"login"}`, i)), size/16+1)[:size]
	return &Record{Project: "p", Logstore: "l", Shard: 1, Cursor: strconv.Itoa(i), NextCursor: strconv.Itoa(i + 1),
		Count: 1, ReceivedAt: time.Unix(1700000000, 0), Payload: p}
}

func ictx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openHooks(t testing.TB, dir string, o Options, h hooks) *Spool {
	t.Helper()
	s, err := open(dir, o, h)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// drainAll peeks and acks until empty and returns the cursors (indexes).
func drainAll(t testing.TB, s *Spool) []int {
	t.Helper()
	var got []int
	for s.Stats().Depth > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := s.Peek(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Peek after %v: %v", got, err)
		}
		i, _ := strconv.Atoi(r.Cursor)
		if want := irec(i, len(r.Payload)); !bytes.Equal(r.Payload, want.Payload) {
			t.Fatalf("record %d: payload differs", i)
		}
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
		got = append(got, i)
	}
	return got
}

func seqInts(from, to int) []int {
	var r []int
	for i := from; i < to; i++ {
		r = append(r, i)
	}
	return r
}

func TestSpool_SyncFsyncError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target func(dir, name string) bool
		errno  syscall.Errno
		roll   bool
	}{
		{"segment ENOSPC", func(dir, name string) bool { return strings.Contains(name, segPrefix) }, syscall.ENOSPC, false},
		{"segment EIO", func(dir, name string) bool { return strings.Contains(name, segPrefix) }, syscall.EIO, false},
		{"directory after roll", func(dir, name string) bool { return name == dir }, syscall.EIO, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var fail atomic.Bool
			h := defaultHooks()
			h.syncFile = func(f *os.File) error {
				if fail.Load() && tc.target(dir, f.Name()) {
					return tc.errno
				}
				return f.Sync()
			}
			s := openHooks(t, dir, iopts(t), h)
			if err := s.Put(ictx(t), irec(0, 100)); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(ictx(t)); err != nil {
				t.Fatalf("Sync before fault: %v", err)
			}
			fail.Store(true)
			n := 1
			if tc.roll {
				n = 40 // past SegmentBytes: a new segment file
			}
			for i := range n {
				if err := s.Put(ictx(t), irec(i+1, 1000)); err != nil {
					t.Fatal(err)
				}
			}
			err := s.Sync(ictx(t))
			if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, tc.errno) {
				t.Fatalf("Sync = %v, want ErrSyncFailed wrapping %v", err, tc.errno)
			}
			fail.Store(false)
			if err := s.Sync(ictx(t)); !errors.Is(err, ErrSyncFailed) {
				t.Fatalf("Sync after fault cleared = %v, want sticky ErrSyncFailed", err)
			}
			if err := s.Put(ictx(t), irec(99, 10)); !errors.Is(err, ErrSyncFailed) {
				t.Fatalf("Put after fault = %v, want ErrSyncFailed", err)
			}
			if st := s.Stats(); !errors.Is(st.SyncError, ErrSyncFailed) {
				t.Fatalf("Stats.SyncError = %v", st.SyncError)
			}
			s.Close()
			s = openHooks(t, dir, iopts(t), defaultHooks())
			if got, want := drainAll(t, s), seqInts(0, n+1); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after reopen got %v, want %v", got, want)
			}
		})
	}
}

func TestSpool_AckStateFsyncError(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	h := defaultHooks()
	h.syncFile = func(f *os.File) error {
		if fail.Load() && strings.HasSuffix(f.Name(), stateFileName) {
			return syscall.EIO
		}
		return f.Sync()
	}
	s := openHooks(t, dir, iopts(t), h)
	s.Put(ictx(t), irec(0, 10))
	r, err := s.Peek(ictx(t))
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := s.Ack(r.Seq); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Ack = %v, want EIO", err)
	}
	if got := s.Stats().Depth; got != 1 {
		t.Fatalf("Depth after failed Ack = %d, want 1", got)
	}
	fail.Store(false)
	if err := s.Ack(r.Seq); err != nil {
		t.Fatalf("Ack retry = %v", err)
	}
}

func TestSpool_SyncGroupCommit(t *testing.T) {
	dir := t.TempDir()
	var segSyncs atomic.Int64
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	var armed atomic.Bool
	h := defaultHooks()
	h.syncFile = func(f *os.File) error {
		if armed.Load() && strings.Contains(f.Name(), segPrefix+"0") && !strings.HasSuffix(f.Name(), ".tmp") {
			segSyncs.Add(1)
			once.Do(func() { entered <- struct{}{}; <-release })
		}
		return f.Sync()
	}
	o := iopts(t)
	o.SegmentBytes = 1 << 20
	s := openHooks(t, dir, o, h)
	armed.Store(true)
	s.Put(ictx(t), irec(0, 100))
	errc := make(chan error, 10)
	go func() { errc <- s.Sync(ictx(t)) }()
	<-entered // the first round is inside fsync
	for i := range 8 {
		go func() {
			if err := s.Put(ictx(t), irec(i+1, 100)); err != nil {
				errc <- err
				return
			}
			errc <- s.Sync(ictx(t))
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Put < 9 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 9 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if got, want := segSyncs.Load(), int64(2); got != want {
		t.Fatalf("segment fsyncs for 9 Syncs = %d, want %d (one blocked round, one shared round)", got, want)
	}
}

func TestSpool_MinFreeBytes(t *testing.T) {
	var free atomic.Int64
	free.Store(10 << 20)
	h := defaultHooks()
	h.statfs = func(string) (int64, error) { return free.Load(), nil }
	h.diskPoll = 5 * time.Millisecond
	o := iopts(t)
	o.MinFreeBytes = 8 << 20
	s := openHooks(t, t.TempDir(), o, h)
	if err := s.Put(ictx(t), irec(0, 100)); err != nil {
		t.Fatal(err)
	}
	free.Store(8<<20 + 50)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Put(ctx, irec(1, 100)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put under floor = %v, want DeadlineExceeded", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Put(ictx(t), irec(1, 100)) }()
	free.Store(9 << 20)
	if err := <-errc; err != nil {
		t.Fatalf("Put after disk freed = %v", err)
	}
}

// copyDir snapshots a spool directory, as a crash at this instant would
// leave it (page cache included, as after kill -9).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dst, 0o700)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpool_StaleDiskqueueMetadata: diskqueue's metadata is older than
// the data by several segments (its own fsync/rename never landed). Plain
// go-diskqueue would skip to writeFileNum+1, a file that exists, and
// overwrite it; the spool's recovery scan must deliver every synced record.
func TestSpool_StaleDiskqueueMetadata(t *testing.T) {
	dir := t.TempDir()
	s := openHooks(t, dir, iopts(t), defaultHooks())
	for i := range 10 {
		s.Put(ictx(t), irec(i, 1000))
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	oldMeta, err := os.ReadFile(metaPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	s = openHooks(t, dir, iopts(t), defaultHooks())
	for i := 10; i < 60; i++ {
		s.Put(ictx(t), irec(i, 1000))
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)
	s.Close()
	if err := os.WriteFile(metaPath(crashed), oldMeta, 0o600); err != nil {
		t.Fatal(err)
	}
	segs, _, _ := listSegments(crashed)
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %v", segs)
	}
	s = openHooks(t, crashed, iopts(t), defaultHooks())
	for i := 60; i < 65; i++ { // new writes must not overwrite recovered data
		s.Put(ictx(t), irec(i, 1000))
	}
	if got, want := drainAll(t, s), seqInts(0, 65); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestSpool_CorruptWhileOpen corrupts segment bytes under a running spool,
// so that diskqueue itself (bad length: renames the segment .bad and skips
// it) or the CRC check (bad payload) meets them.
func TestSpool_CorruptWhileOpen(t *testing.T) {
	for _, tc := range []struct {
		name     string
		corrupt  func(b []byte, frames []int64) // frames: offsets of frames
		wantLost []int
	}{
		{"payload byte flipped", func(b []byte, fr []int64) { b[fr[3]+4+fixedHeaderBytes+20] ^= 0xff }, []int{3}},
		{"length field huge", func(b []byte, fr []int64) { copy(b[fr[3]:], []byte{0x7f, 0xff, 0xff, 0xff}) }, []int{3}},
		{"length field plausible", func(b []byte, fr []int64) { copy(b[fr[3]:], []byte{0, 0, 1, 0}) }, []int{3}},
		{"zeroed region", func(b []byte, fr []int64) { clear(b[fr[3] : fr[5]+10]) }, []int{3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := iopts(t)
			o.SegmentBytes = 1 << 20
			s := openHooks(t, dir, o, defaultHooks())
			var frames []int64
			off := int64(0)
			for i := range 10 {
				r := irec(i, 500)
				frames = append(frames, off)
				s.Put(ictx(t), r)
				off = s.mirrorPos()
			}
			// The first record is already read ahead by diskqueue; corrupt later ones.
			path := segPath(dir, 0)
			b, _ := os.ReadFile(path)
			tc.corrupt(b, frames)
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt(b, 0)
			f.Close()
			got := drainAll(t, s)
			var want []int
			for i := range 10 {
				if !containsInt(tc.wantLost, i) {
					want = append(want, i)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			st := s.Stats()
			if st.Corrupt != 1 || st.DeadLetters != 1 {
				t.Fatalf("Corrupt = %d, DeadLetters = %d, want 1, 1", st.Corrupt, st.DeadLetters)
			}
			for d, err := range s.DeadLetters() {
				if err != nil || d.Reason == "" || d.Segment == "" {
					t.Fatalf("dead letter %+v, %v: want segment and reason", d, err)
				}
			}
			// still usable
			s.Put(ictx(t), irec(10, 100))
			if got := drainAll(t, s); fmt.Sprint(got) != "[10]" {
				t.Fatalf("after repair got %v", got)
			}
		})
	}
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// crashChild is the subprocess of TestSpool_KillDashNine: it puts and
// syncs records, acks some, and reports on stdout what it was promised,
// until it is killed.
func crashChild(dir string) {
	start, _ := strconv.Atoi(os.Getenv("SPOOL_CRASH_START"))
	s, err := Open(dir, Options{MinFreeBytes: 1, SegmentBytes: 32 << 10, Compression: "lz4"})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	batch := 1 // SPOOL_CRASH_BATCH: records per PeekBatch, acked with AckThrough
	if n, err := strconv.Atoi(os.Getenv("SPOOL_CRASH_BATCH")); err == nil {
		batch = n
	}
	go func() {
		for n := 0; ; n++ {
			var b []*Record
			if batch > 1 {
				b, err = s.PeekBatch(context.Background(), batch, 1<<20)
			} else {
				var r *Record
				r, err = s.Peek(context.Background())
				b = []*Record{r}
			}
			if err != nil {
				return
			}
			if n%3 == 0 { // the sink is slower than ingest
				time.Sleep(time.Millisecond)
			}
			for _, r := range b {
				say("acking %d", r.Seq) // the sink confirmed; a kill may land before "acked"
			}
			last := b[len(b)-1].Seq
			if batch > 1 {
				err = s.AckThrough(last)
			} else {
				err = s.Ack(last)
			}
			if err != nil {
				return
			}
			for _, r := range b {
				say("acked %d", r.Seq)
			}
		}
	}()
	var wg sync.WaitGroup
	var next atomic.Int64
	next.Store(int64(start))
	for range 3 { // concurrent shards
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				r := irec(i, 200+(i*7919)%9000)
				if err := s.Put(context.Background(), r); err != nil {
					say("error %v", err)
					return
				}
				if err := s.Sync(context.Background()); err != nil {
					say("error %v", err)
					return
				}
				say("synced %d %d", r.Seq, i)
			}
		}()
	}
	wg.Wait()
}

func TestSpool_KillDashNine(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess crash test")
	}
	// Records acknowledged one at a time (Peek/Ack) and in batches of up
	// to 8 (PeekBatch/AckThrough): no acknowledged record comes back, no
	// synced record is lost.
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) { killDashNine(t, batch) })
	}
}

func killDashNine(t *testing.T, batch int) {
	dir := t.TempDir()
	synced := map[uint64]int{} // seq -> index
	acked := map[uint64]bool{}
	acking := map[uint64]bool{} // confirmed by the sink, Ack maybe not returned
	start := 0
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SPOOL_CRASH_CHILD="+dir, "SPOOL_CRASH_START="+strconv.Itoa(start),
			"SPOOL_CRASH_BATCH="+strconv.Itoa(batch))
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		lines := 0
		killAt := 150 + round*97
		for sc.Scan() {
			var seq uint64
			var idx int
			switch f := strings.Fields(sc.Text()); f[0] {
			case "synced":
				seq, _ = strconv.ParseUint(f[1], 10, 64)
				idx, _ = strconv.Atoi(f[2])
				synced[seq] = idx
				start = max(start, idx+1000)
			case "acked":
				seq, _ = strconv.ParseUint(f[1], 10, 64)
				acked[seq] = true
			case "acking":
				seq, _ = strconv.ParseUint(f[1], 10, 64)
				acking[seq] = true
			default:
				t.Fatalf("child: %s", sc.Text())
			}
			if lines++; lines == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if lines < killAt {
			t.Fatalf("child ended after %d lines", lines)
		}
	}
	s := openHooks(t, dir, Options{MinFreeBytes: 1, SegmentBytes: 32 << 10}, defaultHooks())
	var last uint64
	delivered := map[uint64]bool{}
	for s.Stats().Depth > 0 {
		r, err := s.Peek(ictx(t))
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq <= last {
			t.Fatalf("seq %d after %d: order broken", r.Seq, last)
		}
		last = r.Seq
		if acked[r.Seq] {
			t.Fatalf("seq %d redelivered after it was acked", r.Seq)
		}
		i, _ := strconv.Atoi(r.Cursor)
		if !bytes.Equal(r.Payload, irec(i, len(r.Payload)).Payload) {
			t.Fatalf("seq %d: payload differs", r.Seq)
		}
		if idx, ok := synced[r.Seq]; ok && idx != i {
			t.Fatalf("seq %d holds record %d, want %d", r.Seq, i, idx)
		}
		delivered[r.Seq] = true
		s.Ack(r.Seq)
	}
	lost := 0
	for seq := range synced {
		if !acked[seq] && !delivered[seq] && !acking[seq] {
			lost++
			t.Errorf("synced seq %d lost", seq)
		}
	}
	t.Logf("%d synced, %d acked before crashes, %d delivered after; lost %d", len(synced), len(acked), len(delivered), lost)
}

// TestSpool_RepairDoesNotLoop: a record that passes its CRC but does not
// decode survives salvage, so each repair would meet it again: Peek
// quarantines it instead (dead letter, counted) and moves on, without a
// repair.
func TestSpool_RepairDoesNotLoop(t *testing.T) {
	dir := t.TempDir()
	s := openHooks(t, dir, iopts(t), defaultHooks())
	f, err := encodeRecord(irec(0, 100), codecNone)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(f.buf[60:], 101)         // payload length disagrees; the CRC is computed after
	if err := s.Put(ictx(t), irec(1, 10)); err != nil { // accounted for; its frame is replaced below
		t.Fatal(err)
	}
	s.Close()
	editSegment(t, dir, 0, func([]byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(f.buf)))
		return append(b, f.seal(1)...)
	})
	s = openHooks(t, dir, iopts(t), defaultHooks())
	if err := s.Put(ictx(t), irec(2, 10)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Peek(ictx(t))
	if err != nil || r.Cursor != "2" {
		t.Fatalf("Peek: %v, %v; want record 2 after the undecodable one", r, err)
	}
	if st := s.Stats(); st.Corrupt != 1 || st.DeadLetters != 1 || st.Depth != 1 {
		t.Fatalf("stats %+v", st)
	}
	if s.repairRuns != 0 {
		t.Fatalf("%d repairs ran", s.repairRuns)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestSpool_FullyReadBadRemovedAtOpen: a segment that diskqueue read to its
// end and renamed .bad, left behind by a crash before the spool removed it,
// holds only acknowledged frames: Open deletes it without salvage.
func TestSpool_FullyReadBadRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	s := openHooks(t, dir, o, defaultHooks())
	for i := range 3 {
		s.Put(ictx(t), irec(i, 500))
	}
	if got := drainAll(t, s); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("got %v", got)
	}
	s.Close()
	if err := os.Rename(segPath(dir, 0), segPath(dir, 0)+badSuffix); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segPath(dir, 1), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openHooks(t, dir, o, defaultHooks())
	if _, err := os.Stat(segPath(dir, 0) + badSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".bad file: %v, want it removed", err)
	}
	if _, err := os.Stat(segPath(dir, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment 0: %v, want it not salvaged back", err)
	}
	s.Put(ictx(t), irec(3, 500))
	if got := drainAll(t, s); fmt.Sprint(got) != "[3]" {
		t.Fatalf("got %v", got)
	}
	if st := s.Stats(); st.Corrupt != 0 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSpool_SlowSyncKeepsDiskqueueMetadata: Sync's slow path (after
// diskqueue moved on its own) lists the directory while diskqueue runs; it
// must not delete diskqueue's metadata temporaries (diskqueue's sync would
// fail and the spool would refuse writes).
func TestSpool_SlowSyncKeepsDiskqueueMetadata(t *testing.T) {
	o := iopts(t)
	o.SegmentBytes = 4096 // diskqueue persists its metadata at every roll
	s := openHooks(t, t.TempDir(), o, defaultHooks())
	ctx := ictx(t)
	var wg sync.WaitGroup
	stop := time.Now().Add(time.Second)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				s.diverged.Store(true)
				if err := s.Put(ctx, irec(w*1000000+i, 1500)); err != nil {
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
	go func() {
		for time.Now().Before(stop) {
			r, err := s.Peek(ctx)
			if err != nil {
				return
			}
			if s.Ack(r.Seq) != nil {
				return
			}
		}
	}()
	wg.Wait()
	if st := s.Stats(); st.SyncError != nil {
		t.Fatalf("sync error %v", st.SyncError)
	}
}

// Recovering a torn last write reads the bytes from the torn frame on, not
// the whole segment.
func TestSpool_TornTailRecoveryReadsTheTail(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 48 << 20, MinFreeBytes: 1, Compression: CompressionNone}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 32 {
		if err := s.Put(context.Background(), irec(i, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := segPath(dir, 0)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-1000); err != nil { // the last record torn
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err = Open(dir, opts)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Stats().Depth; got != 31 {
		t.Errorf("depth %d after recovery, want 31", got)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Open of a %d MiB segment with a torn tail allocated %.1f MiB", st.Size()>>20, float64(alloc)/(1<<20))
	if alloc > uint64(st.Size())/2 {
		t.Errorf("Open allocated %d bytes for a %d-byte segment: it read more than the torn tail", alloc, st.Size())
	}
}
