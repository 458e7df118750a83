package deliver

import (
	"context"

	"slsrelay/spool"
)

// Sink delivers batches of events to one SIEM. Implementations keep their
// connections, retries of transient failures and acknowledgement polling
// inside; the delivery loop (loop.go) owns pause/resume, dead letters, rate
// limiting, metrics and failure logs.
type Sink interface {
	// Name identifies the sink in logs and metrics (e.g. "hec").
	Name() string
	// Send blocks until the SIEM confirmed every event of b (with HEC indexer
	// acknowledgement: until acked), or fails with an *Error, or returns
	// ctx.Err() when ctx ends (then some events may have been delivered:
	// delivery is at least once). Implementations retry transient failures
	// themselves for as long as ctx lasts. Send must not modify b and must be
	// safe to call again with the same or a shorter batch. It must keep no
	// reference to b's events once it returned: the loop reuses their
	// memory for the next record.
	Send(ctx context.Context, b *Batch) error
	// Close releases connections; Send must not be called after it.
	Close() error
}

// Batch is the unit handed to a Sink: events of one spool record, in order.
type Batch struct {
	// Seq is the spool record the events (first) come from: a batch may
	// hold the events of several consecutive records (for logs, and to tell
	// a retry of the same batch from a new one).
	Seq uint64
	// Events to deliver, in order. Error.EventIndex indexes this slice.
	Events []Event
}

// Queue is what the delivery loop consumes; *spool.Spool satisfies it.
type Queue interface {
	// Peek blocks until a record is available or ctx ends; it returns the
	// oldest unacknowledged record without removing it.
	Peek(ctx context.Context) (*spool.Record, error)
	// Ack marks record seq delivered; the queue may then drop it.
	Ack(seq uint64) error
	// DeadLetter stores r durably with reason in the dead-letter queue; it
	// does not ack.
	DeadLetter(r *spool.Record, reason string) error
}
