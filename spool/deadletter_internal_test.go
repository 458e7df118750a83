package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// appendDeadLetters opens a spool in dir and dead-letters n records.
func appendDeadLetters(t *testing.T, dir string, from, n int) {
	t.Helper()
	s, err := open(dir, iopts(t), defaultHooks())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := from; i < from+n; i++ {
		if err := s.DeadLetter(irec(i, 200), fmt.Sprintf("rejected %d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// dlOffsets returns the offsets of the entries of a dead-letter file
// written without damage.
func dlOffsets(b []byte) []int64 {
	var offs []int64
	for off := int64(0); off+4 <= int64(len(b)); off += 4 + int64(binary.BigEndian.Uint32(b[off:])) {
		offs = append(offs, off)
	}
	return offs
}

type dlSummary struct {
	records []int // cursors of the record entries
	damaged []DeadLetter
	raw     int
}

func summarise(t *testing.T, it func(func(DeadLetter, error) bool)) dlSummary {
	t.Helper()
	var s dlSummary
	for d, err := range it {
		if err != nil {
			t.Fatalf("after %+v: %v", s, err)
		}
		switch {
		case d.Record != nil:
			i, _ := strconv.Atoi(d.Record.Cursor)
			if want := irec(i, 200); !bytes.Equal(d.Record.Payload, want.Payload) {
				t.Fatalf("dead letter %d: payload differs", i)
			}
			s.records = append(s.records, i)
		case d.Segment == deadLetterFileName:
			s.damaged = append(s.damaged, d)
		default:
			s.raw++
		}
	}
	return s
}

// A damaged dead-letter entry costs that entry only: every other entry,
// before and after it, stays and stays readable; the damaged bytes stay in
// the file, shown as a corrupt entry and counted.
func TestDeadLetters_DamagedEntry(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(b []byte, offs []int64) []byte
	}{
		{"flipped byte", func(b []byte, offs []int64) []byte { b[offs[2]+60] ^= 0x40; return b }},
		{"huge length", func(b []byte, offs []int64) []byte {
			binary.BigEndian.PutUint32(b[offs[2]:], 0x7fffff00)
			return b
		}},
		{"short length", func(b []byte, offs []int64) []byte {
			binary.BigEndian.PutUint32(b[offs[2]:], 60)
			return b
		}},
		{"length past the next entry", func(b []byte, offs []int64) []byte {
			binary.BigEndian.PutUint32(b[offs[2]:], uint32(offs[4]-offs[2]))
			return b
		}},
		{"zeroed block", func(b []byte, offs []int64) []byte {
			clear(b[offs[2]+2 : offs[3]+10])
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			appendDeadLetters(t, dir, 0, 5)
			path := filepath.Join(dir, deadLetterFileName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			offs := dlOffsets(b)
			if len(offs) != 5 {
				t.Fatalf("%d entries written", len(offs))
			}
			b = tc.edit(b, offs)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			size := int64(len(b))

			// Read without opening (spool dump).
			got := summarise(t, ReadDeadLetters(dir))
			check := func(what string, got dlSummary, extra ...int) {
				t.Helper()
				want := []int{0, 1}
				for i := 3; i < 5; i++ {
					if tc.name != "zeroed block" || i != 3 {
						want = append(want, i)
					}
				}
				want = append(want, extra...)
				if fmt.Sprint(got.records) != fmt.Sprint(want) {
					t.Fatalf("%s: records %v, want %v", what, got.records, want)
				}
				if len(got.damaged) != 1 || got.damaged[0].Offset != offs[2] || got.damaged[0].RawBytes <= 0 ||
					!strings.Contains(got.damaged[0].Reason, "damaged") {
					t.Fatalf("%s: damaged entries %+v, want one at offset %d", what, got.damaged, offs[2])
				}
			}
			check("ReadDeadLetters", got)
			st, err := Inspect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(got.records)); st.DeadLetters != want || st.DeadLetterDamaged != 1 {
				t.Fatalf("Inspect: %d dead letters, %d damaged; want %d and 1", st.DeadLetters, st.DeadLetterDamaged, want)
			}

			// Open keeps every byte, counts the damage, and appends after it.
			s := openHooks(t, dir, iopts(t), defaultHooks())
			if fi, _ := os.Stat(path); fi.Size() != size {
				t.Fatalf("Open changed the dead-letter file from %d to %d bytes", size, fi.Size())
			}
			if st := s.Stats(); st.DeadLetterDamaged != 1 || st.DeadLetters != int64(len(got.records)) {
				t.Fatalf("Stats after Open: %d dead letters, %d damaged", st.DeadLetters, st.DeadLetterDamaged)
			}
			if err := s.DeadLetter(irec(9, 200), "rejected 9"); err != nil {
				t.Fatal(err)
			}
			check("after an append", summarise(t, s.DeadLetters()), 9)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw[:size], b) {
				t.Fatal("the damaged bytes were not kept")
			}
			// Requeue takes the good records and keeps the damaged bytes.
			n, err := s.Requeue(ictx(t), nil)
			if err != nil || n != len(got.records)+1 {
				t.Fatalf("Requeue = %d, %v", n, err)
			}
			left := summarise(t, s.DeadLetters())
			if len(left.records) != 0 || len(left.damaged) != 1 {
				t.Fatalf("after requeue: %+v", left)
			}
		})
	}
}

// A torn append (a crash in DeadLetter) is kept, counted and skipped;
// entries appended later are found behind it.
func TestDeadLetters_TornTailKept(t *testing.T) {
	dir := t.TempDir()
	appendDeadLetters(t, dir, 0, 3)
	path := filepath.Join(dir, deadLetterFileName)
	b, _ := os.ReadFile(path)
	offs := dlOffsets(b)
	torn := b[:offs[2]+40]
	os.WriteFile(path, torn, 0o600)
	appendDeadLetters(t, dir, 3, 1)
	b2, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b2, torn) {
		t.Fatal("Open cut the torn entry")
	}
	got := summarise(t, ReadDeadLetters(dir))
	if fmt.Sprint(got.records) != "[0 1 3]" || len(got.damaged) != 1 || got.damaged[0].RawBytes != 40 {
		t.Fatalf("got %v, damaged %+v", got.records, got.damaged)
	}
}

// The old format (version 1: the CRC does not cover the length) stays
// readable, beside new entries.
func TestDeadLetters_Version1Readable(t *testing.T) {
	dir := t.TempDir()
	f, _ := encodeRecord(irec(0, 200), codecNone)
	old := encodeDeadLetterV1(dlKindRecord, irec(0, 0).ReceivedAt, "", -1, 10, "rejected 0", f.seal(5))
	if err := os.WriteFile(filepath.Join(dir, deadLetterFileName), old, 0o600); err != nil {
		t.Fatal(err)
	}
	appendDeadLetters(t, dir, 1, 1)
	got := summarise(t, ReadDeadLetters(dir))
	if fmt.Sprint(got.records) != "[0 1]" || len(got.damaged) != 0 {
		t.Fatalf("got %+v", got)
	}
}

// encodeDeadLetterV1 is the entry layout of version 1, as the relay wrote
// it before entries had a checksum over their length.
func encodeDeadLetterV1(kind byte, stored interface{ UnixNano() int64 }, segment string, offset, rawSize int64, reason string, data []byte) []byte {
	n := dlFixed + len(segment) + 4 + len(reason) + 4 + len(data)
	b := make([]byte, 4+n)
	be := binary.BigEndian
	be.PutUint32(b, uint32(n))
	e := b[4:]
	copy(e, dlMagic)
	e[4], e[5] = 1, kind
	be.PutUint64(e[12:], uint64(stored.UnixNano()))
	be.PutUint64(e[20:], uint64(offset))
	be.PutUint64(e[28:], uint64(rawSize))
	be.PutUint16(e[36:], uint16(len(segment)))
	off := dlFixed + copy(e[dlFixed:], segment)
	be.PutUint32(e[off:], uint32(len(reason)))
	off += 4 + copy(e[off+4:], reason)
	be.PutUint32(e[off:], uint32(len(data)))
	copy(e[off+4:], data)
	be.PutUint32(e[8:], crc32.Checksum(e[12:], castagnoli))
	return b
}

// FuzzDeadLetterFile: any file content is read without a panic, with
// every allocation bounded by the file, and a valid entry appended after
// any garbage is always found.
func FuzzDeadLetterFile(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("SLSD"))
	f.Add([]byte{0, 0, 0, 60, 'S', 'L', 'S', 'D', 2, 1})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 'S', 'L', 'S', 'D'})
	good := func(i int) []byte {
		r, _ := encodeRecord(irec(i, 100), codecNone)
		return encodeDeadLetter(dlKindRecord, irec(0, 0).ReceivedAt, "", -1, 0, "r"+strconv.Itoa(i), r.seal(uint64(i)))
	}
	f.Add(good(1))
	f.Add(append(good(1), good(2)[:30]...))
	f.Fuzz(func(t *testing.T, garbage []byte) {
		tail := good(7)
		file := append(append([]byte(nil), garbage...), tail...)
		ra := bytes.NewReader(file)
		var found bool
		var covered int64
		for e, err := range scanDeadLetters(ra, int64(len(file)), true) {
			if err != nil {
				t.Fatalf("read error from memory: %v", err)
			}
			if e.off != covered || e.n <= 0 || e.off+e.n > int64(len(file)) {
				t.Fatalf("entry at %d+%d; expected to start at %d (file %d bytes)", e.off, e.n, covered, len(file))
			}
			covered = e.off + e.n
			if len(e.d.Raw) > int(e.n) {
				t.Fatalf("raw of %d bytes for an entry of %d", len(e.d.Raw), e.n)
			}
			if e.d.Record != nil && e.d.Record.Cursor == "7" && e.off == int64(len(garbage)) {
				found = true
			}
		}
		if covered != int64(len(file)) {
			t.Fatalf("entries cover %d of %d bytes", covered, len(file))
		}
		if !found && !bytes.Contains(garbage, []byte(dlMagic)) {
			t.Fatal("the valid entry after the garbage was not found")
		}
	})
}

// The dead-letter queue has a budget and a free-disk floor: when full,
// DeadLetter stores nothing, says so (ErrDeadLetterFull), counts it, and
// the record stays in the spool; quarantined corrupt bytes are kept even
// then.
func TestDeadLetters_BudgetAndFloor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  func(*Options)
		free  int64
		fills int // DeadLetter calls that fit
	}{
		{"budget", func(o *Options) { o.DeadLetterMaxBytes = 1000 }, 1 << 40, 2},
		{"floor", func(o *Options) { o.DeadLetterMinFreeBytes = 1 << 20 }, 1<<20 + 800, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := iopts(t)
			tc.opts(&o)
			h := defaultHooks()
			var free atomic.Int64
			free.Store(tc.free)
			h.statfs = func(string) (int64, error) { return free.Load(), nil }
			s := openHooks(t, dir, o, h)
			for i := range 6 {
				if err := s.Put(ictx(t), irec(i, 200)); err != nil {
					t.Fatal(err)
				}
			}
			var refused error
			stored := 0
			for refused == nil {
				r, err := s.Peek(ictx(t))
				if err != nil {
					t.Fatalf("Peek after %d stored: %v (%+v)", stored, err, s.Stats())
				}
				if refused = s.DeadLetter(r, "hec 400: invalid data"); refused == nil {
					stored++
					if tc.name == "floor" {
						free.Add(-s.Stats().DeadLetterBytes / int64(stored))
					}
					if err := s.Ack(r.Seq); err != nil {
						t.Fatal(err)
					}
				}
				if stored > 6 {
					t.Fatal("no limit reached")
				}
			}
			if !errors.Is(refused, ErrDeadLetterFull) || stored != tc.fills {
				t.Fatalf("after %d stored: %v; want ErrDeadLetterFull after %d", stored, refused, tc.fills)
			}
			st := s.Stats()
			if st.DeadLetterRefused != 1 || st.DeadLetters != int64(stored) || st.Depth != int64(6-stored) {
				t.Fatalf("stats %+v", st)
			}
			// The refused record is still the head, undelivered.
			r, err := s.Peek(ictx(t))
			if err != nil || r.Cursor != strconv.Itoa(stored) {
				t.Fatalf("head after refusal: %v, %v", r, err)
			}
			// Corrupt bytes are evidence: quarantined past the budget.
			if err := s.quarantine(segName(0), 0, []byte("bad bytes"), "crc mismatch"); err != nil {
				t.Fatal(err)
			}
			if err := s.DeadLetter(r, "again"); !errors.Is(err, ErrDeadLetterFull) {
				t.Fatalf("second DeadLetter: %v", err)
			}
			if got := s.Stats().DeadLetterRefused; got != 2 {
				t.Fatalf("refused %d", got)
			}
		})
	}
}
