package spool

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults for the zero fields of Options.
const (
	DefaultMaxBytes       int64 = 8 << 30  // 8 GiB of unacknowledged records
	DefaultMinFreeBytes   int64 = 1 << 30  // keep 1 GiB free on the filesystem
	DefaultSegmentBytes   int64 = 64 << 20 // 64 MiB segment files
	DefaultMaxRecordBytes int32 = 64 << 20 // 64 MiB per encoded record
	// DefaultDeadLetterMaxBytes is the budget of the dead-letter file.
	DefaultDeadLetterMaxBytes int64 = 1 << 30 // 1 GiB
	// DefaultCompression was chosen by BenchmarkCodec on ~1 KB JSON audit
	// logs: see codec_test.go and the package report.
	DefaultCompression = CompressionS2
)

// Options tune a Spool. Zero fields take the Default values; Open rejects
// negative or inconsistent values naming the field.
type Options struct {
	// MaxBytes is the budget, in bytes, of unacknowledged records on disk
	// (encoded and compressed, plus 4 bytes of framing each). Put blocks
	// while the next record would exceed it, except that a record larger
	// than the whole budget is accepted once the spool is empty.
	// Default DefaultMaxBytes.
	MaxBytes int64
	// MinFreeBytes is the free-space floor of the spool's filesystem, in
	// bytes: Put blocks while writing the record would leave less free.
	// Default DefaultMinFreeBytes.
	MinFreeBytes int64
	// SegmentBytes is the size, in bytes, at which a segment file is
	// rolled (go-diskqueue's maxBytesPerFile). Default DefaultSegmentBytes.
	SegmentBytes int64
	// MaxRecordBytes is the largest encoded record, in bytes; Put returns
	// ErrTooLarge above it. Default DefaultMaxRecordBytes.
	MaxRecordBytes int32
	// Compression of payloads on disk: "s2", "lz4", "zstd" or "none". Default
	// DefaultCompression. Records written with any codec stay readable.
	Compression string
	// DeadLetterMaxBytes is the budget, in bytes, of the dead-letter file
	// (of both lanes together, see Lanes): DeadLetter refuses an entry
	// that would pass it (ErrDeadLetterFull). Quarantined corrupt bytes
	// (found by recovery or Peek) are stored even past it: they are
	// evidence, small, and dropping them would lose data. Default
	// DefaultDeadLetterMaxBytes.
	DeadLetterMaxBytes int64
	// DeadLetterMinFreeBytes is the free-space floor of the filesystem, in
	// bytes, below which DeadLetter refuses an entry (ErrDeadLetterFull).
	// Default: MinFreeBytes.
	DeadLetterMinFreeBytes int64
	// Retain, when positive, keeps delivered segments in an archive beside
	// the spool (see archive.go) until their newest record was received
	// this long ago; RetainBytes, when positive, bounds the archive's size
	// (oldest evicted first). Either one turns the archive on; with both 0
	// delivered segments are deleted. The archive counts against neither
	// MaxBytes nor MinFreeBytes: at the free-disk floor it is evicted,
	// oldest first, before Put waits.
	Retain      time.Duration
	RetainBytes int64
	// archive is set by OpenLanes for the second lane: one archive per sink.
	archive *archive
	// Logger receives the spool's and go-diskqueue's messages; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.DeadLetterMaxBytes == 0 {
		o.DeadLetterMaxBytes = DefaultDeadLetterMaxBytes
	}
	if o.DeadLetterMinFreeBytes == 0 {
		o.DeadLetterMinFreeBytes = o.MinFreeBytes
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.MaxBytes < 0:
		return o, fmt.Errorf("spool options: MaxBytes %d must not be negative", o.MaxBytes)
	case o.MinFreeBytes < 0:
		return o, fmt.Errorf("spool options: MinFreeBytes %d must not be negative", o.MinFreeBytes)
	case o.DeadLetterMaxBytes < 0:
		return o, fmt.Errorf("spool options: DeadLetterMaxBytes %d must not be negative", o.DeadLetterMaxBytes)
	case o.DeadLetterMinFreeBytes < 0:
		return o, fmt.Errorf("spool options: DeadLetterMinFreeBytes %d must not be negative", o.DeadLetterMinFreeBytes)
	case o.SegmentBytes < 4096:
		return o, fmt.Errorf("spool options: SegmentBytes %d is below the minimum of 4096", o.SegmentBytes)
	case o.Retain < 0:
		return o, fmt.Errorf("spool options: Retain %s must not be negative", o.Retain)
	case o.RetainBytes < 0:
		return o, fmt.Errorf("spool options: RetainBytes %d must not be negative", o.RetainBytes)
	case o.MaxRecordBytes < fixedHeaderBytes:
		return o, fmt.Errorf("spool options: MaxRecordBytes %d is below the minimum of %d", o.MaxRecordBytes, fixedHeaderBytes)
	}
	if _, err := codecID(o.Compression); err != nil {
		return o, fmt.Errorf("spool options: Compression: %w", err)
	}
	return o, nil
}
