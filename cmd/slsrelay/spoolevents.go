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
	events    int64           // events of records put since start, not yet acked
	recovered int64           // records recovered at start not yet acked
	batch     []*spool.Record // the last Peek or PeekBatch, head first
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
		c.batch = append(c.batch[:0], r)
		c.mu.Unlock()
	}
	return r, err
}

// PeekBatch remembers the batch, whose counts AckThrough takes off.
func (c *countedSpool) PeekBatch(ctx context.Context, maxRecords, maxBytes int) ([]*spool.Record, error) {
	b, err := c.Lanes.PeekBatch(ctx, maxRecords, maxBytes)
	if err == nil {
		c.mu.Lock()
		c.batch = append(c.batch[:0], b...)
		c.mu.Unlock()
	}
	return b, err
}

// Ack takes the head's events off (a recovered record's were never on).
func (c *countedSpool) Ack(seq uint64) error {
	if err := c.Lanes.Ack(seq); err != nil {
		return err
	}
	c.acked(seq)
	return nil
}

// AckThrough takes the events of the batch's records up to seq off.
func (c *countedSpool) AckThrough(seq uint64) error {
	if err := c.Lanes.AckThrough(seq); err != nil {
		return err
	}
	c.acked(seq)
	return nil
}

func (c *countedSpool) acked(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.batch {
		if r.Seq > seq {
			break
		}
		if c.recovered > 0 {
			c.recovered--
		} else {
			c.events = max(0, c.events-int64(r.Count))
		}
	}
	c.batch = c.batch[:0]
}

// count is the events waiting, as far as known (see countedSpool).
func (c *countedSpool) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.events
	if c.recovered > 0 && len(c.batch) > 0 {
		n += int64(c.batch[0].Count)
	}
	return n
}
