package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// dirSnapshot is every file under dir with its size, mode and content
// hash, to show that something wrote nothing.
func dirSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		snap[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range before {
		if after[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: %q -> %q", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("%s changed the spool directory:\n%s", what, strings.Join(diffs, "\n"))
	}
}

// Inspection beside an open spool writes nothing: not the salvage
// temporary a running relay may be writing, not the torn tail of a
// dead-letter file, nothing.
func TestInspect_WritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openHooks(t, dir, iopts(t), defaultHooks())
	for i := range 5 {
		if err := s.Put(ictx(t), irec(i, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ictx(t)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Peek(ictx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(r, "hec 400: bad"); err != nil {
		t.Fatal(err)
	}
	// What a running relay may have in flight: a salvage temporary, and
	// half a dead-letter entry being appended.
	tmp := segPath(dir, 7) + ".tmp"
	if err := os.WriteFile(tmp, []byte("salvage in progress"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, deadLetterFileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 'S', 'L'})
	f.Close()

	before := dirSnapshot(t, dir)
	st, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Depth != 5 || st.DeadLetters != 1 {
		t.Fatalf("Inspect = %+v, want depth 5 and 1 dead letter", st)
	}
	sameSnapshot(t, "Inspect", before, dirSnapshot(t, dir))
	n := 0
	for _, err := range ReadDeadLetters(dir) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("ReadDeadLetters yielded nothing")
	}
	sameSnapshot(t, "Inspect and ReadDeadLetters", before, dirSnapshot(t, dir))
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("inspection removed the running relay's temporary: %v", err)
	}
}

// undecodable replaces the s2 block table of the record in frame k of
// segment 0 with one that cannot decode, and reseals its CRC: a frame
// whose checksum is right but which will not decompress.
func undecodable(t *testing.T, dir string, k int) {
	t.Helper()
	editSegment(t, dir, 0, func(b []byte) []byte {
		off := frameOffsets(b)[k]
		l := int64(binary.BigEndian.Uint32(b[off:]))
		rec := b[off+4 : off+4+l]
		h, err := verifyRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if rec[5] != codecS2 {
			t.Fatalf("record codec %d, want s2", rec[5])
		}
		rec[h.hdrLen] = 0x7f // block count
		binary.BigEndian.PutUint32(rec[crcOff:], headerCRC(crc32.Checksum(rec[h.hdrLen:], castagnoli), rec[:h.hdrLen]))
		if _, err := verifyRecord(rec); err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRecord(rec); err == nil {
			t.Fatal("record still decodes")
		}
		return b
	})
}

// A frame whose CRC is valid but which will not decompress is quarantined
// into the dead-letter queue with its reason; delivery carries on, now and
// after a restart.
func TestSpool_UndecodableFrameQuarantined(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprint("restart=", restart), func(t *testing.T) {
			dir := t.TempDir()
			o := iopts(t)
			o.Compression = "s2"
			writeRecords(t, dir, o, 4, 2000)
			undecodable(t, dir, 1)
			s := openHooks(t, dir, o, defaultHooks())
			var got []int
			for range 2 {
				r, err := s.Peek(ictx(t))
				if err != nil {
					t.Fatalf("Peek after %v: %v", got, err)
				}
				i, _ := strconv.Atoi(r.Cursor)
				got = append(got, i)
				if err := s.Ack(r.Seq); err != nil {
					t.Fatal(err)
				}
				if restart && len(got) == 2 {
					break
				}
			}
			if restart {
				s.Close()
				s = openHooks(t, dir, o, defaultHooks())
			}
			got = append(got, drainAll(t, s)...)
			if fmt.Sprint(got) != "[0 2 3]" {
				t.Fatalf("delivered %v, want [0 2 3]", got)
			}
			if !restart {
				if st := s.Stats(); st.Corrupt != 1 {
					t.Fatalf("Stats.Corrupt = %d, want 1", st.Corrupt)
				}
			}
			var dl []DeadLetter
			for d, err := range s.DeadLetters() {
				if err != nil {
					t.Fatal(err)
				}
				dl = append(dl, d)
			}
			if len(dl) != 1 || dl[0].Record != nil || !strings.Contains(dl[0].Reason, "s2") ||
				!strings.Contains(dl[0].Reason, "decode") || len(dl[0].Raw) == 0 {
				t.Fatalf("dead letters %+v, want the undecodable frame with its reason", dl)
			}
			if _, err := verifyRecord(dl[0].Raw); err != nil {
				t.Fatalf("quarantined bytes are not the frame: %v", err)
			}
		})
	}
}

// A corrupt (torn) last frame is counted and its bytes kept in the
// dead-letter queue, not cut away with only a warning.
func TestSpool_TornLastFrameCountedAndKept(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(frame []byte) []byte
	}{
		{"half a frame", func(fr []byte) []byte { return fr[:len(fr)/2] }},
		{"length only", func(fr []byte) []byte { return fr[:3] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeRecords(t, dir, iopts(t), 3, 500)
			var tail []byte
			editSegment(t, dir, 0, func(b []byte) []byte {
				tail = tc.tail(append([]byte(nil), b[frameOffsets(b)[1]:frameOffsets(b)[2]]...))
				return append(b, tail...)
			})
			s := openHooks(t, dir, iopts(t), defaultHooks())
			if got := drainAll(t, s); fmt.Sprint(got) != "[0 1 2]" {
				t.Fatalf("delivered %v", got)
			}
			if st := s.Stats(); st.Corrupt != 1 || st.DeadLetters != 1 {
				t.Fatalf("Stats: corrupt %d, dead letters %d; want 1 and 1", st.Corrupt, st.DeadLetters)
			}
			for d, err := range s.DeadLetters() {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(d.Raw, tail) || d.RawBytes != int64(len(tail)) || !strings.Contains(d.Reason, "torn") {
					t.Fatalf("dead letter %+v; want the %d torn bytes", d, len(tail))
				}
			}
		})
	}
}

// If go-diskqueue renames the write segment .bad (after a read error)
// between a Put and the Sync that must cover it, Sync still fsyncs the
// record's file.
func TestSpool_SyncCoversBadRenamedSegment(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var synced []string
	h := defaultHooks()
	h.syncFile = func(f *os.File) error {
		mu.Lock()
		synced = append(synced, filepath.Base(f.Name()))
		mu.Unlock()
		return f.Sync()
	}
	s := openHooks(t, dir, iopts(t), h)
	if err := s.Put(ictx(t), irec(0, 100)); err != nil {
		t.Fatal(err)
	}
	// What diskqueue's handleReadError does to a segment it cannot read.
	if err := os.Rename(segPath(dir, 0), segPath(dir, 0)+badSuffix); err != nil {
		t.Fatal(err)
	}
	s.diverged.Store(true)
	mu.Lock()
	synced = nil
	mu.Unlock()
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range synced {
		if n == segName(0) || n == segName(0)+badSuffix {
			return
		}
	}
	t.Fatalf("Sync fsynced %v, not the segment holding the record", synced)
}

var _ = errors.Is

// A segment other than the last in which no frame survives (cut inside its
// first frame) is dead-lettered and removed at Open, and the spool opens
// with the records of the other segments: a restart is never refused for
// it (chaos scenario 3 once found "scan segment: ... no such file").
func TestSpool_SegmentWithNoValidFrameRemovedAtOpen(t *testing.T) {
	for _, tc := range []struct {
		seg  int64
		lost []int
	}{
		{0, []int{0, 1, 2, 3}}, // the read segment
		{1, []int{4, 5, 6, 7}}, // one in the middle: the later ones are renumbered
	} {
		t.Run(fmt.Sprintf("segment %d", tc.seg), func(t *testing.T) {
			dir := t.TempDir()
			o := fixtureOptions(t)
			writeRecords(t, dir, o, 12, 1300)
			if segs, _, _ := listSegments(dir); len(segs) != 3 {
				t.Fatalf("segments %v, want 3", segs)
			}
			editSegment(t, dir, tc.seg, func(b []byte) []byte { return b[:500] })
			s := openHooks(t, dir, o, defaultHooks())
			var want []int
			for i := range 12 {
				if !slices.Contains(tc.lost, i) {
					want = append(want, i)
				}
			}
			if got := drainAll(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			if st := s.Stats(); st.Corrupt != 1 || st.DeadLetters != 1 {
				t.Fatalf("Stats: corrupt %d, dead letters %d; want 1 and 1", st.Corrupt, st.DeadLetters)
			}
			if err := s.Put(ictx(t), irec(100, 50)); err != nil {
				t.Fatal(err)
			}
			if got := drainAll(t, s); fmt.Sprint(got) != "[100]" {
				t.Fatalf("after recovery got %v", got)
			}
		})
	}
}

// writeRecords puts records 0..n-1 of size bytes (irec) into a spool at dir
// and closes it.
func writeRecords(t testing.TB, dir string, o Options, n, size int) {
	t.Helper()
	s, err := open(dir, o, defaultHooks())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.Put(ictx(t), irec(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
