package spool

import (
	"errors"
	"fmt"
)

// Sentinel errors, compared with errors.Is.
var (
	// ErrClosed is returned by every method called on, or blocked in, a
	// closed Spool.
	ErrClosed = errors.New("spool: closed")
	// ErrCorrupt marks bytes that are not a valid record (bad magic, CRC,
	// length or encoding). *CorruptError wraps it.
	ErrCorrupt = errors.New("spool: corrupt record")
	// ErrTooLarge is returned by Put for a record whose encoding exceeds
	// Options.MaxRecordBytes.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrNotHead is returned by Ack for a seq other than the record Peek
	// returned last.
	ErrNotHead = errors.New("spool: ack of a record that is not the peeked head")
	// ErrDeadLetterFull is returned by DeadLetter when the dead-letter
	// queue is at its budget (Options.DeadLetterMaxBytes) or the
	// filesystem at its floor (Options.DeadLetterMinFreeBytes). Nothing was
	// stored: keep the record in the spool.
	ErrDeadLetterFull = errors.New("spool: dead-letter queue full")
	// ErrSyncFailed marks a failed durability barrier. Once an fsync has
	// failed the spool cannot know which written pages reached the disk, so
	// the failure is sticky: every later Sync and Put returns it until the
	// spool is closed and reopened (which rescans the segments).
	ErrSyncFailed = errors.New("spool: fsync failed")
)

// CorruptError describes corrupt bytes found in a segment file or in a
// record handed to Decode. It wraps ErrCorrupt.
type CorruptError struct {
	Segment string // segment file name ("" when not from a file)
	Offset  int64  // byte offset of the frame in Segment (-1 if unknown)
	Reason  string // what was wrong, e.g. "crc mismatch"
}

func (e *CorruptError) Error() string {
	if e.Segment == "" {
		return fmt.Sprintf("spool: corrupt record: %s", e.Reason)
	}
	return fmt.Sprintf("spool: corrupt record in %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Unwrap lets errors.Is(err, ErrCorrupt) match.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
