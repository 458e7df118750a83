package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Inspect reads the spool in dir (both lanes, see Lanes) without opening
// it: no lock, no recovery, nothing written, so it also works while a relay
// has the spool open — then it is a snapshot that may lag behind by the
// records in flight. Depth, Bytes and OldestAge count the records above the
// acknowledged Seq; DeadLetters counts the dead-letter entries,
// DeadLetterDamaged the damaged regions of the dead-letter file and
// DeadLetterBytes its size. Put, Acked, Corrupt and DeadLetterRefused are
// counters of an open Spool and stay 0.
func Inspect(dir string) (Stats, error) {
	st, err := inspectLane(dir)
	if err != nil {
		return st, err
	}
	ldir := filepath.Join(dir, LaneDirName)
	if _, err := os.Stat(ldir); err == nil {
		s1, err := inspectLane(ldir)
		if err != nil {
			return st, fmt.Errorf("second lane: %w", err)
		}
		st.Depth += s1.Depth
		st.Bytes += s1.Bytes
		st.OldestAge = max(st.OldestAge, s1.OldestAge)
		st.DeadLetters += s1.DeadLetters
		st.DeadLetterBytes += s1.DeadLetterBytes
		st.DeadLetterDamaged += s1.DeadLetterDamaged
	}
	ast, err := InspectArchive(dir)
	if err != nil {
		return st, err
	}
	st.Archive = ast
	return st, nil
}

func inspectLane(dir string) (Stats, error) {
	var st Stats
	if fi, err := os.Stat(dir); err != nil {
		return st, fmt.Errorf("inspect spool: %w", err)
	} else if !fi.IsDir() {
		return st, fmt.Errorf("inspect spool: %s is not a directory", dir)
	}
	acked, err := readAcked(dir)
	if err != nil {
		return st, err
	}
	segs, _, err := listSegments(dir)
	if err != nil {
		return st, fmt.Errorf("inspect spool: %w", err)
	}
	var oldest time.Time
	for _, n := range segs {
		sc, err := scanSegment(segPath(dir, n), 0, false, acked, DefaultMaxRecordBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed after delivery while we looked
		}
		if err != nil {
			return st, fmt.Errorf("inspect spool: %w", err)
		}
		// A bad or torn frame ends what can be counted in this segment: a
		// running relay may be writing it, or Open will salvage it.
		st.Depth += sc.unacked
		st.Bytes += sc.bytes
		if sc.hasFirst && oldest.IsZero() {
			oldest = sc.oldest
		}
	}
	if !oldest.IsZero() {
		st.OldestAge = max(time.Since(oldest), 0)
	}
	if f, err := os.Open(filepath.Join(dir, deadLetterFileName)); err == nil {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return st, fmt.Errorf("inspect dead letters: %w", err)
		}
		st.DeadLetterBytes = fi.Size()
		for e, err := range scanDeadLetters(f, fi.Size(), false) {
			if err != nil {
				return st, fmt.Errorf("inspect dead letters: %w", err)
			}
			if e.damaged {
				st.DeadLetterDamaged++
			} else {
				st.DeadLetters++
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("inspect dead letters: %w", err)
	}
	return st, nil
}

// readAcked reads the acknowledged Seq from the state file, read-only. A
// missing or unreadable state counts as nothing acknowledged.
func readAcked(dir string) (uint64, error) {
	f, err := os.Open(filepath.Join(dir, stateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("inspect state: %w", err)
	}
	defer f.Close()
	var best, acked uint64
	valid := false
	for i := range 2 {
		var b [stateSlotSize]byte
		if _, err := f.ReadAt(b[:], int64(i*stateSlotGap)); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("inspect state: %w", err)
		}
		if gen, a, _, ok := decodeStateSlot(b[:]); ok && (!valid || gen > best) {
			best, acked, valid = gen, a, true
		}
	}
	return acked, nil
}
