package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/spool fixtures")

const fixtureDir = "../testdata/spool"

// fixtureOptions are the options fixtures are written and read with: small
// segments so that 12 records span 3 of them.
func fixtureOptions(t testing.TB) Options {
	o := iopts(t)
	o.SegmentBytes = 6000
	o.Compression = "none" // readable fixtures; codecs are covered by FuzzDecodeRecord seeds
	return o
}

// fixtureCases: each starts from 12 records (indexes 0..11, ~1.4 KB each,
// 4 per segment, 3 segments) and damages them as a disk or a crash might.
var fixtureCases = []struct {
	name        string
	damage      func(t testing.TB, dir string)
	wantLost    []int
	wantCorrupt int64
}{
	{"clean", func(testing.TB, string) {}, nil, 0},
	{"crc-flip", func(t testing.TB, dir string) { // payload byte of record 1, segment 0 (read at run time)
		editSegment(t, dir, 0, func(b []byte) []byte {
			fr := frameOffsets(b)
			b[fr[1]+4+fixedHeaderBytes+30] ^= 0x40
			return b
		})
	}, []int{1}, 1},
	{"bad-length", func(t testing.TB, dir string) { // length of record 1 out of range (found at Open)
		editSegment(t, dir, 0, func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[frameOffsets(b)[1]:], 0x7fffffff)
			return b
		})
	}, []int{1}, 1},
	{"garbage-inserted", func(t testing.TB, dir string) { // 37 stray bytes between records 4 and 5 (segment 1)
		editSegment(t, dir, 1, func(b []byte) []byte {
			fr := frameOffsets(b)
			g := []byte("garbage garbage garbage garbage SLSR!")
			return append(b[:fr[1]:fr[1]], append(g, b[fr[1]:]...)...)
		})
	}, nil, 1},
	{"truncated-segment", func(t testing.TB, dir string) { // last write torn by a crash: its bytes are kept, counted
		editSegment(t, dir, 2, func(b []byte) []byte { return b[:len(b)-300] })
	}, []int{11}, 1},
	{"bad-file", func(t testing.TB, dir string) { // segment renamed .bad by diskqueue, crash before salvage
		if err := os.Rename(segPath(dir, 0), segPath(dir, 0)+badSuffix); err != nil {
			t.Fatal(err)
		}
	}, nil, 0},
	{"stale-meta", func(t testing.TB, dir string) { // diskqueue metadata from before the last two segments
		os.WriteFile(metaPath(dir), []byte("4\n0,0\n0,1200\n"), 0o600)
	}, nil, 0},
}

func frameOffsets(b []byte) []int64 {
	var offs []int64
	for off := int64(0); off+4 <= int64(len(b)); {
		offs = append(offs, off)
		off += 4 + int64(binary.BigEndian.Uint32(b[off:]))
	}
	return offs
}

func editSegment(t testing.TB, dir string, n int64, edit func([]byte) []byte) {
	b, err := os.ReadFile(segPath(dir, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segPath(dir, n), edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFixtures(t *testing.T) {
	for _, tc := range fixtureCases {
		dir := filepath.Join(fixtureDir, tc.name)
		os.RemoveAll(dir)
		s, err := open(dir, fixtureOptions(t), defaultHooks())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			r := irec(i, 1300)
			if err := s.Put(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "LOCK"))
		os.Remove(filepath.Join(dir, deadLetterFileName))
		if segs, _, _ := listSegments(dir); len(segs) != 3 {
			t.Fatalf("fixture has segments %v, want 3", segs)
		}
		tc.damage(t, dir)
	}
}

func TestSpool_Fixtures(t *testing.T) {
	if *update {
		writeFixtures(t)
	}
	for _, tc := range fixtureCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, filepath.Join(fixtureDir, tc.name), dir)
			s := openHooks(t, dir, fixtureOptions(t), defaultHooks())
			got := drainAll(t, s)
			var want []int
			for i := range 12 {
				if !containsInt(tc.wantLost, i) {
					want = append(want, i)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			st := s.Stats()
			if st.Corrupt != tc.wantCorrupt || st.DeadLetters != tc.wantCorrupt {
				t.Fatalf("Corrupt = %d, DeadLetters = %d, want %d", st.Corrupt, st.DeadLetters, tc.wantCorrupt)
			}
			for d, err := range s.DeadLetters() {
				var ce *CorruptError
				if err != nil && !errors.As(err, &ce) {
					t.Fatal(err)
				}
				t.Logf("dead letter: %s at %d: %s (%d bytes)", d.Segment, d.Offset, d.Reason, d.RawBytes)
			}
			// The spool keeps working after recovery.
			r := irec(100, 50)
			if err := s.Put(ictx(t), r); err != nil {
				t.Fatal(err)
			}
			if got := drainAll(t, s); fmt.Sprint(got) != "[100]" {
				t.Fatalf("after recovery got %v", got)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(fixtureDir, "*", segPrefix+"*"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f.Add(b)
		offs := frameOffsets(b)
		for i, off := range offs {
			end := int64(len(b))
			if i+1 < len(offs) {
				end = offs[i+1]
			}
			if off+4 <= end {
				f.Add(b[off+4 : end])
			}
		}
	}
	for _, c := range []byte{codecNone, codecLZ4, codecZstd, codecS2} {
		fr, _ := encodeRecord(irec(int(c), 3000), c)
		f.Add(fr.seal(uint64(c) + 7))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil {
			if _, verr := verifyRecord(b); verr != nil {
				t.Fatalf("decode ok but verify failed: %v", verr)
			}
			fr, err := encodeRecord(r, []byte{codecLZ4, codecS2}[len(b)%2])
			if err != nil {
				t.Fatal(err)
			}
			r2, err := decodeRecord(fr.seal(r.Seq))
			if err != nil || r2.Seq != r.Seq || string(r2.Payload) != string(r.Payload) {
				t.Fatalf("re-encode round trip: %v", err)
			}
		}
		nextFrame(b, 0, 1<<20)
		frameAt(b, 0, 1<<20)
		tornAt(b, 0, 1<<20)
	})
}
