package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DeadLetter is one entry of the dead-letter queue.
type DeadLetter struct {
	// Stored is when the entry was written.
	Stored time.Time
	// Reason says why the record was dead-lettered (the sink's rejection,
	// or the corruption found).
	Reason string
	// Record is the dead-lettered record; nil when the entry holds bytes
	// that were not a valid record (corruption), then Raw holds them.
	Record *Record
	// Raw holds the corrupt bytes (capped at Options.MaxRecordBytes) of a
	// corrupt-record entry, and Segment and Offset where they were found.
	Raw     []byte
	Segment string
	Offset  int64
	// RawBytes is the size of the corrupt region before capping.
	RawBytes int64
}

// Dead-letter file: an append-only sequence of entries, each
//
//	len(4) | "SLSD" | version(1) | kind(1) | pad(2) | CRC32C(4)
//	| stored unix nanos(8) | offset(8) | raw size(8) | len(segment)(2) | segment
//	| len(reason)(4) | reason | len(data)(4) | data
//
// where data is an encoded record (kind 1) or raw corrupt bytes (kind 2).
// Version 2 entries (written now) have a CRC over everything but itself,
// length included; version 1 entries (written by earlier relays, still
// read) over what follows the CRC only. Each append is fsynced before
// DeadLetter returns.
//
// Damage costs only the entries it touches: a reader that meets an entry
// that is not valid (bad length, magic, version, kind or CRC, or cut short
// by the end of the file) skips to the next valid entry, found by its magic
// and checked by its CRC, and reports the bytes in between as one damaged
// region (a DeadLetter with Segment deadLetterFileName, its Offset and
// RawBytes, and up to dlMaxDamagedRaw of its bytes in Raw). Nothing is ever
// truncated or rewritten at Open: the damaged bytes stay where they are
// for an operator, counted in Stats.DeadLetterDamaged, and new entries
// are appended after them. Every allocation is bounded by the bytes the
// file still holds.
const (
	deadLetterFileName = "deadletter.log"
	dlMagic            = "SLSD"
	dlVersion1         = 1
	dlVersion2         = 2
	dlKindRecord       = 1
	dlKindRaw          = 2
	dlFixed            = 4 + 1 + 1 + 2 + 4 + 8 + 8 + 8 + 2
	dlMaxEntry         = math.MaxInt32
	// dlMaxDamagedRaw is how many bytes of a damaged region a reader
	// returns in DeadLetter.Raw; the file keeps them all.
	dlMaxDamagedRaw = 1 << 20
	// dlScanChunk is the read size of the search for the next entry.
	dlScanChunk = 64 << 10
)

type deadLetterQueue struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	sync    func(*os.File) error
	count   int64 // valid entries
	damaged int64 // damaged regions found at open
	size    int64 // bytes of the file, damaged regions included
}

func openDeadLetters(dir string, syncFile func(*os.File) error, log *slog.Logger) (*deadLetterQueue, error) {
	path := filepath.Join(dir, deadLetterFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	q := &deadLetterQueue{f: f, path: path, sync: syncFile}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat dead letters: %w", err)
	}
	q.size = st.Size()
	for e, err := range scanDeadLetters(f, q.size, false) {
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		if !e.damaged {
			q.count++
			continue
		}
		q.damaged++
		log.Error("damaged dead-letter entry: kept in place and skipped; the entries around it are intact",
			"file", path, logKeyOffset, e.off, "bytes", e.n, logKeyReason, e.d.Reason)
	}
	return q, nil
}

// encodeDeadLetter lays out one entry (version 2).
func encodeDeadLetter(kind byte, stored time.Time, segment string, offset, rawSize int64, reason string, data []byte) []byte {
	if len(segment) > math.MaxUint16 {
		segment = segment[:math.MaxUint16]
	}
	n := dlFixed + len(segment) + 4 + len(reason) + 4 + len(data)
	b := make([]byte, 4+n)
	be := binary.BigEndian
	be.PutUint32(b, uint32(n))
	e := b[4:]
	copy(e, dlMagic)
	e[4], e[5] = dlVersion2, kind
	be.PutUint64(e[12:], uint64(stored.UnixNano()))
	be.PutUint64(e[20:], uint64(offset))
	be.PutUint64(e[28:], uint64(rawSize))
	be.PutUint16(e[36:], uint16(len(segment)))
	off := dlFixed + copy(e[dlFixed:], segment)
	be.PutUint32(e[off:], uint32(len(reason)))
	off += 4 + copy(e[off+4:], reason)
	be.PutUint32(e[off:], uint32(len(data)))
	copy(e[off+4:], data)
	be.PutUint32(e[8:], dlCRC(b[:4], e))
	return b
}

// dlCRC is the checksum of a version 2 entry e with length prefix lb.
func dlCRC(lb, e []byte) uint32 {
	c := crc32.Update(0, castagnoli, lb)
	c = crc32.Update(c, castagnoli, e[:8])
	return crc32.Update(c, castagnoli, e[12:])
}

// add appends one entry (see encodeDeadLetter) and fsyncs it.
func (q *deadLetterQueue) add(kind byte, stored time.Time, segment string, offset, rawSize int64, reason string, data []byte) error {
	return q.append(encodeDeadLetter(kind, stored, segment, offset, rawSize, reason, data))
}

func (q *deadLetterQueue) append(b []byte) error {
	if len(b)-4 > dlMaxEntry {
		return fmt.Errorf("dead letter: entry of %d bytes: %w", len(b), ErrTooLarge)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.f == nil {
		return ErrClosed
	}
	if _, err := q.f.WriteAt(b, q.size); err != nil {
		return fmt.Errorf("write dead letter: %w", err)
	}
	if err := q.sync(q.f); err != nil {
		return fmt.Errorf("sync dead letter: %w", err)
	}
	q.size += int64(len(b))
	q.count++
	return nil
}

// bytes is the size of the dead-letter file.
func (q *deadLetterQueue) bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

func (q *deadLetterQueue) close() error {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.f == nil {
		return nil
	}
	err := q.f.Close()
	q.f = nil
	return err
}

// ReadDeadLetters iterates over the dead letters stored in the spool
// directory dir, oldest first (those of a second lane, see Lanes, after
// the first lane's), without opening the spool (for tools such as
// `slsrelay spool dump`). Iteration stops after the first error.
func ReadDeadLetters(dir string) iter.Seq2[DeadLetter, error] {
	return func(yield func(DeadLetter, error) bool) {
		if !readDeadLetters(filepath.Join(dir, deadLetterFileName), yield) {
			return
		}
		// The second lane of Lanes, if there is one.
		readDeadLetters(filepath.Join(dir, LaneDirName, deadLetterFileName), yield)
	}
}

// readDeadLetters yields the entries of one dead-letter file; false when
// the caller stopped or an error was yielded.
func readDeadLetters(path string, yield func(DeadLetter, error) bool) bool {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		yield(DeadLetter{}, fmt.Errorf("open dead letters: %w", err))
		return false
	}
	defer f.Close()
	for d, err := range readDeadLetterFile(f) {
		if !yield(d, err) || err != nil {
			return false
		}
	}
	return true
}

func readDeadLetterFile(f *os.File) iter.Seq2[DeadLetter, error] {
	return func(yield func(DeadLetter, error) bool) {
		st, err := f.Stat()
		if err != nil {
			yield(DeadLetter{}, fmt.Errorf("stat dead letters: %w", err))
			return
		}
		for e, err := range scanDeadLetters(f, st.Size(), true) {
			if !yield(e.d, err) || err != nil {
				return
			}
		}
	}
}

// dlEntry is one entry of a dead-letter file, or one damaged region.
type dlEntry struct {
	off, n  int64 // where in the file, and its bytes (length prefix included)
	d       DeadLetter
	damaged bool
}

// scanDeadLetters reads the entries of a dead-letter file of size bytes,
// oldest first, yielding each damaged region as one entry (see the file
// format above). With decode, record entries are decoded (an entry whose
// record does not decode is yielded with Raw and the reason); without,
// only checked. Only a read error is yielded as an error, and ends it.
func scanDeadLetters(ra io.ReaderAt, size int64, decode bool) iter.Seq2[dlEntry, error] {
	return func(yield func(dlEntry, error) bool) {
		for off := int64(0); off < size; {
			d, n, reason, err := readDeadLetterAt(ra, size, off, decode)
			if err != nil {
				yield(dlEntry{off: off}, fmt.Errorf("read dead letter at offset %d: %w", off, err))
				return
			}
			if reason == "" {
				if !yield(dlEntry{off: off, n: n, d: d}, nil) {
					return
				}
				off += n
				continue
			}
			end, err := findDeadLetter(ra, size, off+1)
			if err != nil {
				yield(dlEntry{off: off}, fmt.Errorf("read dead letters after offset %d: %w", off, err))
				return
			}
			if end < 0 {
				end = size
			}
			raw := make([]byte, min(end-off, dlMaxDamagedRaw))
			if _, err := ra.ReadAt(raw, off); err != nil && !errors.Is(err, io.EOF) {
				yield(dlEntry{off: off}, fmt.Errorf("read damaged dead letter at offset %d: %w", off, err))
				return
			}
			d = DeadLetter{Reason: "damaged dead-letter entry: " + reason, Raw: raw,
				Segment: deadLetterFileName, Offset: off, RawBytes: end - off}
			if !yield(dlEntry{off: off, n: end - off, d: d, damaged: true}, nil) {
				return
			}
			off = end
		}
	}
}

// findDeadLetter returns the offset of the first valid entry at or after
// from, or -1.
func findDeadLetter(ra io.ReaderAt, size, from int64) (int64, error) {
	buf := make([]byte, dlScanChunk+len(dlMagic)-1)
	// The magic follows the 4-byte length.
	for p := from + 4; p+int64(len(dlMagic)) <= size; p += dlScanChunk {
		b := buf[:min(int64(len(buf)), size-p)]
		if _, err := ra.ReadAt(b, p); err != nil && !errors.Is(err, io.EOF) {
			return -1, err
		}
		for i := 0; ; {
			k := bytes.Index(b[i:], []byte(dlMagic))
			if k < 0 {
				break
			}
			q := p + int64(i+k) - 4
			if _, _, reason, err := readDeadLetterAt(ra, size, q, false); err != nil {
				return -1, err
			} else if reason == "" {
				return q, nil
			}
			i += k + 1
		}
	}
	return -1, nil
}

// readDeadLetterAt reads the entry at off: its length n (prefix included),
// or why it is not a valid entry (reason), or a read error.
func readDeadLetterAt(ra io.ReaderAt, size, off int64, decode bool) (d DeadLetter, n int64, reason string, err error) {
	if size-off < 4 {
		return d, 0, fmt.Sprintf("%d bytes at the end of the file, too few for an entry (torn write?)", size-off), nil
	}
	var lb [4]byte
	if _, err := ra.ReadAt(lb[:], off); err != nil {
		return d, 0, "", err
	}
	l := int64(binary.BigEndian.Uint32(lb[:]))
	if l < dlFixed+8 || l > dlMaxEntry {
		return d, 0, fmt.Sprintf("entry length %d out of range", l), nil
	}
	if l > size-off-4 {
		return d, 0, fmt.Sprintf("entry of %d bytes runs past the end of the file (%d bytes left; torn write?)", l, size-off-4), nil
	}
	e := make([]byte, l) // bounded by the file
	if _, err := ra.ReadAt(e, off+4); err != nil {
		if errors.Is(err, io.EOF) { // the file shrank meanwhile
			return d, 0, "entry cut short by the end of the file", nil
		}
		return d, 0, "", err
	}
	d, reason = parseDeadLetter(lb[:], e, decode)
	return d, 4 + l, reason, nil
}

// parseDeadLetter checks and decodes entry e (length prefix lb); reason
// says why it is not valid.
func parseDeadLetter(lb, e []byte, decode bool) (DeadLetter, string) {
	var d DeadLetter
	be := binary.BigEndian
	n := len(e)
	if string(e[:4]) != dlMagic {
		return d, "bad entry magic"
	}
	switch e[4] {
	case dlVersion1:
		if crc32.Checksum(e[12:], castagnoli) != be.Uint32(e[8:]) {
			return d, "entry crc mismatch"
		}
	case dlVersion2:
		if dlCRC(lb, e) != be.Uint32(e[8:]) {
			return d, "entry crc mismatch"
		}
	default:
		return d, fmt.Sprintf("unknown entry version %d", e[4])
	}
	d.Stored = time.Unix(0, int64(be.Uint64(e[12:])))
	d.Offset = int64(be.Uint64(e[20:]))
	d.RawBytes = int64(be.Uint64(e[28:]))
	off := dlFixed
	sl := int(be.Uint16(e[36:]))
	if off+sl+4 > n {
		return d, "entry segment length"
	}
	d.Segment = string(e[off : off+sl])
	off += sl
	rl := int(be.Uint32(e[off:]))
	if rl > n-off-8 {
		return d, "entry reason length"
	}
	d.Reason = string(e[off+4 : off+4+rl])
	off += 4 + rl
	dl := int(be.Uint32(e[off:]))
	if dl != n-off-4 {
		return d, "entry data length"
	}
	data := e[off+4:]
	switch e[5] {
	case dlKindRecord:
		if !decode {
			break
		}
		r, err := decodeRecord(data)
		if err != nil {
			// The entry is intact; its record is not: keep the bytes.
			d.Raw = data
			d.Reason += "; the dead-lettered record does not decode: " + err.Error()
			break
		}
		d.Record = r
	case dlKindRaw:
		d.Raw = data
	default:
		return DeadLetter{}, fmt.Sprintf("entry kind %d", e[5])
	}
	return d, ""
}
