package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"slsrelay/internal/failpoint"
)

// stateFile persists what go-diskqueue does not: the highest acknowledged
// Seq (so that records diskqueue re-delivers after a crash are skipped) and
// a Seq floor (so that Seqs are never reused across restarts, even those of
// records lost before they were synced).
//
// Two 32-byte slots, 4 KiB apart, are written alternately with pwrite and
// fdatasync; each carries a generation and a CRC, so a torn write leaves the
// other slot valid. One fsync per update, no rename, no directory sync.
type stateFile struct {
	mu       sync.Mutex
	f        *os.File
	sync     func(*os.File) error
	gen      uint64
	acked    uint64
	seqFloor uint64
}

const (
	stateFileName = "spool.state"
	stateMagic    = "SLSS"
	stateSlotSize = 32
	stateSlotGap  = 4096
)

func openState(dir string, syncFile func(*os.File) error) (*stateFile, bool, error) {
	path := filepath.Join(dir, stateFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open state: %w", err)
	}
	s := &stateFile{f: f, sync: syncFile}
	valid := false
	for i := range 2 {
		var b [stateSlotSize]byte
		if _, err := f.ReadAt(b[:], int64(i*stateSlotGap)); err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return nil, false, fmt.Errorf("read state: %w", err)
		}
		gen, acked, floor, ok := decodeStateSlot(b[:])
		if ok && (!valid || gen > s.gen) {
			s.gen, s.acked, s.seqFloor, valid = gen, acked, floor, true
		}
	}
	return s, valid, nil
}

func decodeStateSlot(b []byte) (gen, acked, floor uint64, ok bool) {
	be := binary.BigEndian
	if string(b[:4]) != stateMagic || crc32.Checksum(b[:28], castagnoli) != be.Uint32(b[28:]) {
		return 0, 0, 0, false
	}
	return be.Uint64(b[4:]), be.Uint64(b[12:]), be.Uint64(b[20:]), true
}

// store persists (acked, floor) durably; on error the in-memory values are
// unchanged.
func (s *stateFile) store(acked, floor uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.gen + 1
	var b [stateSlotSize]byte
	be := binary.BigEndian
	copy(b[:], stateMagic)
	be.PutUint64(b[4:], gen)
	be.PutUint64(b[12:], acked)
	be.PutUint64(b[20:], floor)
	be.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	if _, err := s.f.WriteAt(b[:], int64(gen%2)*stateSlotGap); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	failpoint.Hit(failpoint.SpoolState)
	if err := s.sync(s.f); err != nil {
		return fmt.Errorf("sync state: %w", err)
	}
	s.gen, s.acked, s.seqFloor = gen, acked, floor
	return nil
}

func (s *stateFile) setAcked(seq uint64) error {
	s.mu.Lock()
	floor := s.seqFloor
	s.mu.Unlock()
	return s.store(seq, floor)
}

func (s *stateFile) setFloor(floor uint64) error {
	s.mu.Lock()
	acked := s.acked
	s.mu.Unlock()
	return s.store(acked, floor)
}

func (s *stateFile) values() (acked, floor uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked, s.seqFloor
}

func (s *stateFile) close() error {
	if s == nil || s.f == nil {
		return nil
	}
	return s.f.Close()
}
