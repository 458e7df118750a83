package checkpoint

import "errors"

// Sentinel errors, compared with errors.Is.
var (
	// ErrLocked means another process (or another Store in this process)
	// holds the data directory's lock: another relay is using it.
	ErrLocked = errors.New("data directory locked by another relay")

	// ErrClosed is returned by every method of a Store after Close.
	ErrClosed = errors.New("checkpoint store closed")

	// ErrCorrupt means checkpoint.db cannot be read: a truncated or damaged
	// file, or records this version cannot decode. See Options.OnCorrupt.
	ErrCorrupt = errors.New("checkpoint database corrupt")
)
