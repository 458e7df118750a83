package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// countStateSyncs returns hooks that count the fsyncs of the state file
// (the acknowledged Seq) and fail them while fail is set.
func countStateSyncs(n *atomic.Int64, fail *atomic.Bool) hooks {
	h := defaultHooks()
	h.syncFile = func(f *os.File) error {
		if strings.HasSuffix(f.Name(), stateFileName) {
			n.Add(1)
			if fail != nil && fail.Load() {
				return syscall.EIO
			}
		}
		return f.Sync()
	}
	return h
}

// drainBatches delivers everything with PeekBatch/AckThrough and returns
// the record indexes in delivery order and the batch sizes.
func drainBatches(t testing.TB, s *Spool, maxRecords, maxBytes int) (got, sizes []int) {
	t.Helper()
	for s.Stats().Depth > 0 {
		b, err := s.PeekBatch(ictx(t), maxRecords, maxBytes)
		if err != nil {
			t.Fatalf("PeekBatch after %v: %v", got, err)
		}
		for _, r := range b {
			i, _ := strconv.Atoi(r.Cursor)
			if want := irec(i, len(r.Payload)); !bytes.Equal(r.Payload, want.Payload) {
				t.Fatalf("record %d: payload differs", i)
			}
			got = append(got, i)
		}
		sizes = append(sizes, len(b))
		if err := s.AckThrough(b[len(b)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
	return got, sizes
}

// TestPeekBatch_ReadsAheadAcrossSegmentsAcksWithOneFsync: records written
// since Open come in batches, in order, across segment files, each batch
// acknowledged with one fsync of the state file; the budget and the
// counters see every record.
func TestPeekBatch_ReadsAheadAcrossSegmentsAcksWithOneFsync(t *testing.T) {
	var syncs atomic.Int64
	o := iopts(t)
	o.SegmentBytes = 4 << 10 // ~7 records a segment
	s := openHooks(t, t.TempDir(), o, countStateSyncs(&syncs, nil))
	for i := range 40 {
		if err := s.Put(ictx(t), irec(i, 500)); err != nil {
			t.Fatal(err)
		}
	}
	before := syncs.Load()
	got, sizes := drainBatches(t, s, 8, 1<<20)
	if fmt.Sprint(got) != fmt.Sprint(seqInts(0, 40)) {
		t.Fatalf("delivered %v", got)
	}
	if fmt.Sprint(sizes) != "[8 8 8 8 8]" {
		t.Fatalf("batch sizes %v, want 5 of 8", sizes)
	}
	if n := syncs.Load() - before; n != 5 {
		t.Fatalf("%d fsyncs of the state file for 5 batches", n)
	}
	st := s.Stats()
	if st.Depth != 0 || st.Bytes != 0 || st.Acked != 40 {
		t.Fatalf("after draining: %+v", st)
	}
	// The frames behind each head were skipped, not left: diskqueue is
	// empty and takes new records.
	s.Put(ictx(t), irec(40, 100))
	if got := drainAll(t, s); fmt.Sprint(got) != "[40]" {
		t.Fatalf("after batches: %v", got)
	}
}

// TestPeekBatch_Limits: maxRecords and maxBytes end a batch; a batch is
// at least the head however large it is; repeated PeekBatch returns the
// same head until it is acknowledged.
func TestPeekBatch_Limits(t *testing.T) {
	s := openHooks(t, t.TempDir(), iopts(t), defaultHooks())
	for i := range 6 {
		s.Put(ictx(t), irec(i, 1000))
	}
	b, err := s.PeekBatch(ictx(t), 10, 2500)
	if err != nil || len(b) != 2 {
		t.Fatalf("PeekBatch(10, 2500) = %d records, %v; want 2 (2000 payload bytes)", len(b), err)
	}
	b2, _ := s.PeekBatch(ictx(t), 3, 1<<20)
	if len(b2) != 3 || b2[0] != b[0] {
		t.Fatalf("again with 3: %d records, same head %v", len(b2), b2[0] == b[0])
	}
	if b, _ := s.PeekBatch(ictx(t), 10, 10); len(b) != 1 {
		t.Fatalf("maxBytes under the head: %d records, want the head alone", len(b))
	}
	if b, _ := s.PeekBatch(ictx(t), 1, 1<<20); len(b) != 1 {
		t.Fatalf("maxRecords 1: %d records", len(b))
	}
	if got, _ := drainBatches(t, s, 4, 1<<20); fmt.Sprint(got) != fmt.Sprint(seqInts(0, 6)) {
		t.Fatalf("delivered %v", got)
	}
}

// TestAckThrough_PartialAndReopen: acknowledging part of a batch leaves the
// rest; after a restart exactly the unacknowledged records come back; a
// seq that is not in the batch is refused and acknowledges nothing.
func TestAckThrough_PartialAndReopen(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	s := openHooks(t, dir, o, defaultHooks())
	for i := range 10 {
		s.Put(ictx(t), irec(i, 300))
	}
	b, err := s.PeekBatch(ictx(t), 6, 1<<20)
	if err != nil || len(b) != 6 {
		t.Fatalf("PeekBatch: %d, %v", len(b), err)
	}
	if err := s.AckThrough(b[5].Seq + 100); !errors.Is(err, ErrNotHead) {
		t.Fatalf("AckThrough(seq past the batch) = %v, want ErrNotHead", err)
	}
	if d := s.Stats().Depth; d != 10 {
		t.Fatalf("a refused AckThrough changed Depth to %d", d)
	}
	if err := s.AckThrough(b[2].Seq); err != nil { // records 0, 1, 2
		t.Fatal(err)
	}
	if d := s.Stats().Depth; d != 7 {
		t.Fatalf("Depth %d after acknowledging 3 of 10", d)
	}
	b, _ = s.PeekBatch(ictx(t), 2, 1<<20)
	if i, _ := strconv.Atoi(b[0].Cursor); i != 3 || len(b) != 2 {
		t.Fatalf("next batch starts at record %d (%d records), want 3 (2)", i, len(b))
	}
	if err := s.AckThrough(b[1].Seq); err != nil { // 3, 4
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openHooks(t, dir, o, defaultHooks())
	if d := s.Stats().Depth; d != 5 {
		t.Fatalf("Depth %d after reopen, want 5", d)
	}
	// Recovered records were written before this Open: not indexed, so
	// they come one at a time, then new ones in batches again.
	for i := 10; i < 14; i++ {
		s.Put(ictx(t), irec(i, 300))
	}
	got, sizes := drainBatches(t, s, 8, 1<<20)
	if fmt.Sprint(got) != fmt.Sprint(seqInts(5, 14)) {
		t.Fatalf("after reopen delivered %v", got)
	}
	if fmt.Sprint(sizes) != "[1 1 1 1 1 4]" {
		t.Fatalf("batch sizes %v: recovered records one at a time, the 4 new ones together", sizes)
	}
}

// TestAckThrough_StateFsyncErrorAcksNothing: when the fsync of the
// acknowledged Seq fails, no record of the batch leaves; the retry works.
func TestAckThrough_StateFsyncErrorAcksNothing(t *testing.T) {
	var syncs atomic.Int64
	var fail atomic.Bool
	s := openHooks(t, t.TempDir(), iopts(t), countStateSyncs(&syncs, &fail))
	for i := range 4 {
		s.Put(ictx(t), irec(i, 100))
	}
	b, _ := s.PeekBatch(ictx(t), 4, 1<<20)
	fail.Store(true)
	if err := s.AckThrough(b[3].Seq); !errors.Is(err, syscall.EIO) {
		t.Fatalf("AckThrough = %v, want EIO", err)
	}
	if d := s.Stats().Depth; d != 4 {
		t.Fatalf("Depth after failed AckThrough = %d, want 4", d)
	}
	fail.Store(false)
	b2, _ := s.PeekBatch(ictx(t), 4, 1<<20)
	if len(b2) != 4 || b2[0].Seq != b[0].Seq {
		t.Fatalf("after the failure: %d records from seq %d", len(b2), b2[0].Seq)
	}
	if err := s.AckThrough(b2[3].Seq); err != nil {
		t.Fatal(err)
	}
	if d := s.Stats().Depth; d != 0 {
		t.Fatalf("Depth %d", d)
	}
}

// TestPeekBatch_CorruptFrameBehindHead: a frame damaged on disk behind the
// head ends the batch before it; once it is the head, Peek dead-letters it
// as always, and every other record is delivered once.
func TestPeekBatch_CorruptFrameBehindHead(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	o.SegmentBytes = 1 << 20
	s := openHooks(t, dir, o, defaultHooks())
	var frames []int64
	for i := range 8 {
		frames = append(frames, s.mirrorPos())
		s.Put(ictx(t), irec(i, 500))
	}
	path := segPath(dir, 0)
	b, _ := os.ReadFile(path)
	b[frames[3]+4+fixedHeaderBytes+20] ^= 0xff
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt(b, 0)
	f.Close()
	got, sizes := drainBatches(t, s, 8, 1<<20)
	if fmt.Sprint(got) != "[0 1 2 4 5 6 7]" {
		t.Fatalf("delivered %v", got)
	}
	if sizes[0] != 3 {
		t.Fatalf("first batch %d records, want 3 (ends before the damaged frame)", sizes[0])
	}
	if st := s.Stats(); st.Corrupt != 1 || st.DeadLetters != 1 {
		t.Fatalf("Corrupt %d, DeadLetters %d; want 1, 1", st.Corrupt, st.DeadLetters)
	}
}

// TestLanes_PeekBatchOneLane: with two lanes a batch comes from one lane
// and AckThrough counts its events for the lane it came from; both lanes
// drain completely.
func TestLanes_PeekBatchOneLane(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	l, err := OpenLanes(dir, o, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 5 {
		l.lanes[0].Put(ictx(t), irec(i, 200))
	}
	for i := 5; i < 10; i++ {
		l.lanes[1].Put(ictx(t), irec(i, 200))
	}
	seen := map[int]int{}
	for l.Stats().Depth > 0 {
		b, err := l.PeekBatch(ictx(t), 8, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		lane := -1
		for _, r := range b {
			i, _ := strconv.Atoi(r.Cursor)
			seen[i]++
			if ln := i / 5; lane >= 0 && ln != lane {
				t.Fatalf("batch mixes lanes: %d after lane %d", i, lane)
			} else {
				lane = ln
			}
		}
		if err := l.AckThrough(b[len(b)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if seen[i] != 1 {
			t.Fatalf("record %d delivered %d times", i, seen[i])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, LaneDirName)); err != nil {
		t.Fatal(err)
	}
}
