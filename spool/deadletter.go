package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
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
//	len(4) | "SLSD" | version(1) | kind(1) | pad(2) | CRC32C of what follows(4)
//	| stored unix nanos(8) | offset(8) | raw size(8) | len(segment)(2) | segment
//	| len(reason)(4) | reason | len(data)(4) | data
//
// where data is an encoded record (kind 1) or raw corrupt bytes (kind 2).
// Each append is fsynced before DeadLetter returns; a torn tail left by a
// crash is cut off at Open.
const (
	deadLetterFileName = "deadletter.log"
	dlMagic            = "SLSD"
	dlKindRecord       = 1
	dlKindRaw          = 2
	dlFixed            = 4 + 1 + 1 + 2 + 4 + 8 + 8 + 8 + 2
	dlMaxEntry         = math.MaxInt32
)

type deadLetterQueue struct {
	mu    sync.Mutex
	f     *os.File
	path  string
	sync  func(*os.File) error
	count int64
	size  int64
}

func openDeadLetters(dir string, syncFile func(*os.File) error) (*deadLetterQueue, error) {
	path := filepath.Join(dir, deadLetterFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	q := &deadLetterQueue{f: f, path: path, sync: syncFile}
	end, count := validDeadLetterEnd(f)
	q.count = count
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat dead letters: %w", err)
	}
	if st.Size() > end {
		// Torn tail of an append interrupted by a crash: DeadLetter never
		// returned for it.
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate dead letters: %w", err)
		}
		if err := syncFile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync dead letters: %w", err)
		}
	}
	q.size = end
	return q, nil
}

// validDeadLetterEnd returns the end of the last valid entry and the
// number of valid entries.
func validDeadLetterEnd(f *os.File) (end, count int64) {
	r := bufio.NewReader(io.NewSectionReader(f, 0, math.MaxInt64))
	for {
		n, _, err := readDeadLetterEntry(r)
		if err != nil {
			return end, count
		}
		end += n
		count++
	}
}

func (q *deadLetterQueue) add(kind byte, stored time.Time, segment string, offset, rawSize int64, reason string, data []byte) error {
	if len(segment) > math.MaxUint16 {
		segment = segment[:math.MaxUint16]
	}
	n := dlFixed + len(segment) + 4 + len(reason) + 4 + len(data)
	if n > dlMaxEntry {
		return fmt.Errorf("dead letter: entry of %d bytes: %w", n, ErrTooLarge)
	}
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
		r := bufio.NewReader(io.NewSectionReader(f, 0, math.MaxInt64))
		for {
			_, d, err := readDeadLetterEntry(r)
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// readDeadLetterEntry reads one entry; io.EOF at a clean end.
func readDeadLetterEntry(r *bufio.Reader) (int64, DeadLetter, error) {
	var d DeadLetter
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = &CorruptError{Segment: deadLetterFileName, Offset: -1, Reason: "torn entry length"}
		}
		return 0, d, err
	}
	be := binary.BigEndian
	n := int(be.Uint32(lb[:]))
	if n < dlFixed+8 || n > dlMaxEntry {
		return 0, d, &CorruptError{Segment: deadLetterFileName, Offset: -1, Reason: fmt.Sprintf("entry length %d", n)}
	}
	e := make([]byte, n)
	if _, err := io.ReadFull(r, e); err != nil {
		return 0, d, &CorruptError{Segment: deadLetterFileName, Offset: -1, Reason: "torn entry"}
	}
	corrupt := func(reason string) (int64, DeadLetter, error) {
		return 0, d, &CorruptError{Segment: deadLetterFileName, Offset: -1, Reason: reason}
	}
	if string(e[:4]) != dlMagic || e[4] != 1 {
		return corrupt("bad entry magic or version")
	}
	if crc32.Checksum(e[12:], castagnoli) != be.Uint32(e[8:]) {
		return corrupt("entry crc mismatch")
	}
	d.Stored = time.Unix(0, int64(be.Uint64(e[12:])))
	d.Offset = int64(be.Uint64(e[20:]))
	d.RawBytes = int64(be.Uint64(e[28:]))
	off := dlFixed
	sl := int(be.Uint16(e[36:]))
	if off+sl+4 > n {
		return corrupt("entry segment length")
	}
	d.Segment = string(e[off : off+sl])
	off += sl
	rl := int(be.Uint32(e[off:]))
	if rl > n-off-8 {
		return corrupt("entry reason length")
	}
	d.Reason = string(e[off+4 : off+4+rl])
	off += 4 + rl
	dl := int(be.Uint32(e[off:]))
	if dl != n-off-4 {
		return corrupt("entry data length")
	}
	data := e[off+4:]
	switch e[5] {
	case dlKindRecord:
		r, err := decodeRecord(data)
		if err != nil {
			return 0, d, err
		}
		d.Record = r
	case dlKindRaw:
		d.Raw = data
	default:
		return corrupt("entry kind")
	}
	return int64(4 + n), d, nil
}
