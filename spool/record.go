package spool

import "time"

// Record is the unit the spool stores: the logs of one pull from one SLS
// shard, as handed over by ingest, plus the cursors that bracket it.
//
// The record type is shared by ingest (which builds records) and deliver
// (which reads them); neither imports the other. The on-disk encoding
// (versioned header, CRC32C, compressed payload) is private to this package.
type Record struct {
	// Seq is assigned by Spool.Put, strictly increasing per spool and never
	// reused, also across restarts. Zero before Put.
	Seq uint64

	// Source of the logs.
	Project  string
	Logstore string
	Shard    int

	// Cursor is the SLS cursor the pull started at; NextCursor the one after
	// it (what the consumer group checkpoint moves to once this record is
	// durable).
	Cursor     string
	NextCursor string

	// Count is the number of logs in Payload.
	Count int
	// MinTime and MaxTime bound the logs' __time__ (unix seconds).
	MinTime int64
	MaxTime int64
	// ReceivedAt is when ingest pulled the logs (set by the caller).
	ReceivedAt time.Time

	// Payload is the serialized sls.LogGroupList protobuf, uncompressed. The
	// spool compresses it on disk and hands it back uncompressed.
	Payload []byte
}
