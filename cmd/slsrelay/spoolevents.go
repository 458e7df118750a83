package main

import (
	"context"
	"sync"

	"slsrelay/spool"
)

// countedSpool is a sink's spool counting the events (logs) in its
// records, for slsrelay_spool_events: the spool itself counts records.
// Records put by this process are counted when put and until acked; records
// recovered from before a start are counted once they reach the head of
// the queue (their count is on disk only, in each record). Every other
// method is the spool's own.
type countedSpool struct {
	*spool.Lanes
	mu        sync.Mutex
	events    int64 // events of records put since start, not yet acked
	recovered int64 // records recovered at start not yet acked
	head      *spool.Record
}

func newCountedSpool(l *spool.Lanes) *countedSpool {
	return &countedSpool{Lanes: l, recovered: l.Stats().Depth}
}

// Put counts r's events once the spool has it.
func (c *countedSpool) Put(ctx context.Context, r *spool.Record) error {
	if err := c.Lanes.Put(ctx, r); err != nil {
		return err
	}
	c.mu.Lock()
	c.events += int64(r.Count)
	c.mu.Unlock()
	return nil
}

// Peek remembers the head, whose count Ack takes off.
func (c *countedSpool) Peek(ctx context.Context) (*spool.Record, error) {
	r, err := c.Lanes.Peek(ctx)
	if err == nil {
		c.mu.Lock()
		c.head = r
		c.mu.Unlock()
	}
	return r, err
}

// Ack takes the head's events off (a recovered record's were never on).
func (c *countedSpool) Ack(seq uint64) error {
	if err := c.Lanes.Ack(seq); err != nil {
		return err
	}
	c.mu.Lock()
	if c.head != nil && c.head.Seq == seq {
		if c.recovered > 0 {
			c.recovered--
		} else {
			c.events = max(0, c.events-int64(c.head.Count))
		}
	}
	c.head = nil
	c.mu.Unlock()
	return nil
}

// count is the events waiting, as far as known (see countedSpool).
func (c *countedSpool) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.events
	if c.recovered > 0 && c.head != nil {
		n += int64(c.head.Count)
	}
	return n
}
