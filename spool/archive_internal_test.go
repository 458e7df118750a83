package spool

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// arec is irec with a shard, log time and receive time of its own.
func arec(i int) *Record {
	r := irec(i, 1300)
	r.Shard = i % 3
	r.MinTime, r.MaxTime = int64(1000+i), int64(1000+i)
	r.ReceivedAt = time.Unix(1700000000+int64(i), 0)
	return r
}

// archived reads every record of the archive (indexes of arec).
func archived(t *testing.T, dir string) (got []int, damage []ArchiveDamage) {
	t.Helper()
	segs, err := ReadArchive(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range segs {
		err := ReadArchiveSegment(dir, seg, 0, 0, 1<<62, func(r ArchivedRecord) error {
			if r.Record == nil {
				t.Fatalf("record at %d of archived segment %d skipped although the window is everything", r.Offset, seg.ID)
			}
			i, _ := strconv.Atoi(r.Cursor)
			got = append(got, i)
			return nil
		}, func(d ArchiveDamage) { damage = append(damage, d) })
		if err != nil {
			t.Fatal(err)
		}
	}
	return got, damage
}

// Delivered segments go to the archive with an index of what they hold;
// the write segment and pending records stay in the spool; a reopen
// (recovery) keeps the archive.
func TestArchive_KeepsDeliveredSegmentsWithIndex(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	o.Retain = 24 * time.Hour * 365 * 100
	s := openHooks(t, dir, o, defaultHooks())
	for i := range 60 {
		if err := s.Put(ictx(t), arec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	if got := drainAll(t, s); !slices.Equal(got, seqInts(0, 60)) {
		t.Fatalf("delivered %v", got)
	}
	st := s.Stats().Archive
	if st.Segments < 3 {
		t.Fatalf("archive has %d segments, want the complete ones (60 records of 1.3 KB in 16 KB segments)", st.Segments)
	}
	got, damage := archived(t, dir)
	if len(damage) > 0 {
		t.Fatalf("damage in a clean archive: %v", damage)
	}
	if len(got) < 60-12 || !slices.Equal(got, seqInts(0, len(got))) {
		t.Fatalf("archive holds %v, want a prefix of 0..59 missing at most the write segment", got)
	}
	segs, _ := ReadArchive(dir)
	var events int64
	for k, seg := range segs {
		events += seg.Events
		if seg.Records == 0 || seg.Bytes == 0 || len(seg.Sources) != 1 || seg.Sources[0].Project != "p" || seg.Sources[0].Logstore != "l" {
			t.Fatalf("index %d: %+v", k, seg)
		}
		if !slices.Equal(seg.Sources[0].Shards, []int{0, 1, 2}) {
			t.Fatalf("index %d shards %v", k, seg.Sources[0].Shards)
		}
		first, last := int(seg.LogMin-1000), int(seg.LogMax-1000)
		if seg.ReceivedMin.Unix() != 1700000000+int64(first) || seg.ReceivedMax.Unix() != 1700000000+int64(last) ||
			int64(last-first+1) != seg.Records {
			t.Fatalf("index %d: log times [%d, %d] receive [%v, %v] for %d records", k, seg.LogMin, seg.LogMax,
				seg.ReceivedMin, seg.ReceivedMax, seg.Records)
		}
	}
	if events != int64(len(got)) || st.Events != events {
		t.Fatalf("indexes count %d events (stats %d), archive holds %d", events, st.Events, len(got))
	}
	// A window reads only the records it overlaps.
	var inWindow []int
	if err := ReadArchiveSegment(dir, segs[1], 0, segs[1].LogMin+1, segs[1].LogMin+3, func(r ArchivedRecord) error {
		if r.Record != nil {
			i, _ := strconv.Atoi(r.Cursor)
			inWindow = append(inWindow, i)
		}
		return nil
	}, func(d ArchiveDamage) { t.Fatalf("damage %v", d) }); err != nil {
		t.Fatal(err)
	}
	if f := int(segs[1].LogMin - 1000); !slices.Equal(inWindow, []int{f + 1, f + 2}) {
		t.Fatalf("window read %v", inWindow)
	}
	s.Close()
	s2 := openHooks(t, dir, o, defaultHooks())
	if st2 := s2.Stats(); st2.Archive.Segments < st.Segments || st2.Depth != 0 {
		t.Fatalf("after reopen: %+v, archive before %+v", st2, st)
	}
	got2, _ := archived(t, dir)
	if !slices.Equal(got2, seqInts(0, len(got2))) || len(got2) < len(got) {
		t.Fatalf("after reopen archive holds %v", got2)
	}
}

// A small RetainBytes under steady load: the archive stays under its bound,
// the oldest segments go first (what is left is the newest), every
// eviction is counted, and pending records are never touched.
func TestArchive_RetainBytesEvictsOldestNeverPending(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	o.RetainBytes = 40 << 10 // about two and a half 16 KB segments
	s := openHooks(t, dir, o, defaultHooks())
	var delivered []int
	next := 0
	for round := range 40 {
		for range 10 {
			if err := s.Put(ictx(t), arec(next)); err != nil {
				t.Fatal(err)
			}
			next++
		}
		if err := s.Sync(ictx(t)); err != nil {
			t.Fatal(err)
		}
		// Deliver only 6 of each 10: the backlog grows while the archive
		// evicts.
		for range 6 {
			r, err := s.Peek(ictx(t))
			if err != nil {
				t.Fatal(err)
			}
			i, _ := strconv.Atoi(r.Cursor)
			delivered = append(delivered, i)
			if err := s.Ack(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		st := s.Stats()
		if st.Archive.Bytes > o.RetainBytes {
			t.Fatalf("round %d: archive %d bytes over retain_bytes %d", round, st.Archive.Bytes, o.RetainBytes)
		}
		if st.Depth != int64(next-len(delivered)) {
			t.Fatalf("round %d: %d pending, want %d", round, st.Depth, next-len(delivered))
		}
	}
	st := s.Stats().Archive
	if st.Evictions == 0 {
		t.Fatalf("no eviction counted: %+v", st)
	}
	segs, _ := ReadArchive(dir)
	for k := 1; k < len(segs); k++ {
		if segs[k].ID != segs[k-1].ID+1 {
			t.Fatalf("archive kept ids %v: not the newest run", segs)
		}
	}
	got, _ := archived(t, dir)
	if len(got) == 0 || got[0] == 0 || !slices.Equal(got, seqInts(got[0], got[0]+len(got))) {
		t.Fatalf("archive holds %v: want the newest delivered records, oldest evicted", got)
	}
	delivered = append(delivered, drainAll(t, s)...)
	if !slices.Equal(delivered, seqInts(0, next)) {
		t.Fatalf("delivered %d of %d in order: pending records were touched", len(delivered), next)
	}
}

// dirSize is the bytes of the files under dir, each inode once (the
// archive's staging links share their segment's blocks).
func dirSize(dir string) int64 {
	var n int64
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					if seen[st.Ino] {
						return nil
					}
					seen[st.Ino] = true
				}
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// At the free-disk floor the archive is evicted, oldest first, before Put
// waits; with the SIEM down (nothing acknowledged) the pending records are
// never evicted and all arrive once it is back: lost 0.
func TestArchive_DiskFloorEvictsArchiveBeforePausingIngest(t *testing.T) {
	dir := t.TempDir()
	const capacity = 400 << 10
	h := defaultHooks()
	h.statfs = func(string) (int64, error) { return capacity - dirSize(dir), nil }
	h.diskPoll = 10 * time.Millisecond
	o := iopts(t)
	o.MinFreeBytes = 100 << 10
	o.Retain = time.Hour * 24 * 365 * 100
	s := openHooks(t, dir, o, h)
	// Deliver ~200 KB: the archive takes most of it.
	for i := range 150 {
		if err := s.Put(ictx(t), arec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	drainAll(t, s)
	before := s.Stats().Archive
	if before.Bytes < 150<<10 {
		t.Fatalf("archive holds %d bytes, want most of 200 KB", before.Bytes)
	}
	// The SIEM is down: records pile up. Without the archive's eviction
	// Put would wait at the floor after about 100 KB.
	next := 150
	for range 150 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := s.Put(ctx, arec(next))
		cancel()
		if err != nil {
			t.Fatalf("put %d: %v (archive %+v)", next, err, s.Stats().Archive)
		}
		next++
		if s.Stats().Archive.Segments == 0 {
			break
		}
	}
	after := s.Stats().Archive
	if after.Evictions == 0 || after.Bytes >= before.Bytes {
		t.Fatalf("the floor evicted nothing: before %+v after %+v", before, after)
	}
	if segs, _ := ReadArchive(dir); len(segs) > 0 && segs[0].ID == 0 {
		t.Fatalf("oldest archived segment still there after evictions: %+v", segs[0])
	}
	// Archive empty: now the floor pauses Put instead of touching pending
	// records.
	for s.Stats().Archive.Segments > 0 {
		if err := s.Put(ictx(t), arec(next)); err != nil {
			t.Fatal(err)
		}
		next++
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := s.Put(ctx, arec(next))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break // paused at the floor
		}
		if err != nil {
			t.Fatal(err)
		}
		next++
		if next > 2000 {
			t.Fatal("put never paused at the floor")
		}
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	// The SIEM is back: every pending record arrives.
	if got := drainAll(t, s); !slices.Equal(got, seqInts(150, next)) {
		t.Fatalf("after the outage delivered %d records, want %d..%d: lost %d", len(got), 150, next-1, next-150-len(got))
	}
}

// A damaged archived segment: the reader names the damaged byte range and
// the receive times around it, and returns every other record.
func TestArchive_CorruptSegmentNamedRestRead(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	o.Retain = time.Hour
	o.Retain = 24 * time.Hour * 365 * 100
	s := openHooks(t, dir, o, defaultHooks())
	for i := range 40 {
		if err := s.Put(ictx(t), arec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	drainAll(t, s)
	s.Close()
	clean, _ := archived(t, dir)
	segs, _ := ReadArchive(dir)
	path := archSegPath(archiveDir(dir), segs[0].ID)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fr := frameOffsets(b)
	b[fr[2]+4+fixedHeaderBytes+40] ^= 0x10 // record 2's payload
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, damage := archived(t, dir)
	if want := slices.DeleteFunc(slices.Clone(clean), func(i int) bool { return i == 2 }); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	if len(damage) != 1 || damage[0].Offset != fr[2] || damage[0].Length != fr[3]-fr[2] ||
		damage[0].After.Unix() != 1700000001 || damage[0].Before.Unix() != 1700000003 {
		t.Fatalf("damage %+v, want bytes [%d, %d) between receive times of records 1 and 3", damage, fr[2], fr[3])
	}
	t.Logf("named: %s", damage[0])
}

// The two lanes of a sink share one archive: segments of both arrive in
// it, numbered apart, and turning the archive off removes the staging
// links a previous run left.
func TestArchive_LanesShareOneArchive(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	o.Retain = 24 * time.Hour * 365 * 100
	l, err := OpenLanes(dir, o, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if l.lanes[1] == nil || l.lanes[1].arch != l.lanes[0].arch {
		t.Fatal("the second lane has an archive of its own")
	}
	next := 0
	for _, sp := range l.lanes {
		for range 30 {
			if err := sp.Put(ictx(t), arec(next)); err != nil {
				t.Fatal(err)
			}
			next++
		}
		if err := sp.Sync(ictx(t)); err != nil {
			t.Fatal(err)
		}
		drainAll(t, sp)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := archived(t, dir)
	slices.Sort(got)
	var lane0, lane1 int
	for _, i := range got {
		if i < 30 {
			lane0++
		} else {
			lane1++
		}
	}
	if lane0 == 0 || lane1 == 0 || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("archive holds %v: want records of both lanes, once each", got)
	}
	if _, err := os.Stat(filepath.Join(dir, LaneDirName, ArchiveDirName)); err == nil {
		t.Fatal("the second lane made an archive directory of its own")
	}
	// Off: the staging links of both lanes go, the archive stays.
	o.Retain = 0
	l2, err := OpenLanes(dir, o, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, d := range []string{dir, filepath.Join(dir, LaneDirName)} {
		if _, err := os.Stat(filepath.Join(d, archiveStagingDir)); err == nil {
			t.Errorf("%s: staging links left with the archive off", d)
		}
	}
	if again, _ := archived(t, dir); len(again) != len(got) {
		t.Errorf("archive changed when turned off: %d records, had %d", len(again), len(got))
	}
}

// An archived segment whose record headers do not chain up (a damaged
// frame length) and whose index a crash lost is indexed at Open by a full
// scan, the damaged region in the index; the reader returns the rest.
func TestArchive_IndexNamesBrokenHeaders(t *testing.T) {
	dir := t.TempDir()
	o := iopts(t)
	o.Retain = 24 * time.Hour * 365 * 100
	s := openHooks(t, dir, o, defaultHooks())
	for i := range 40 {
		if err := s.Put(ictx(t), arec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	drainAll(t, s)
	s.Close()
	segs, _ := ReadArchive(dir)
	seg := segs[0]
	path := archSegPath(archiveDir(dir), seg.ID)
	b, _ := os.ReadFile(path)
	fr := frameOffsets(b)
	b[fr[1]] = 0x7f // frame 1's length far out of range
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(archIdxPath(archiveDir(dir), seg.ID)); err != nil {
		t.Fatal(err)
	}
	s2 := openHooks(t, dir, o, defaultHooks())
	defer s2.Close()
	segs2, _ := ReadArchive(dir)
	if len(segs2) != len(segs) || segs2[0].ID != seg.ID {
		t.Fatalf("after reopen the archive lists %d segments, had %d", len(segs2), len(segs))
	}
	ix := segs2[0]
	if len(ix.Damaged) != 1 || ix.Damaged[0].Offset != fr[1] || ix.Damaged[0].Length != fr[2]-fr[1] || ix.Records != seg.Records-1 {
		t.Fatalf("index %+v, want the damaged frame [%d, %d) named and %d records", ix, fr[1], fr[2], seg.Records-1)
	}
	got, damage := archived(t, dir)
	if len(damage) != 1 || slices.Contains(got, 1) || !slices.Contains(got, 0) || !slices.Contains(got, 2) {
		t.Fatalf("read %v with damage %v", got, damage)
	}
}
