package spool

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Requeue puts the dead-lettered records for which match returns true
// (all of them when match is nil) back into the spool, to be delivered
// again once the cause of their rejection is fixed, and removes them from
// the dead-letter queue. Entries of corrupt bytes (Record nil) are never
// requeued: they stay, whatever match says. It returns how many records
// were requeued.
//
// Records are Put and Synced before their entries leave the dead-letter
// queue (which is rewritten to a temporary file, fsynced and renamed), so a
// crash in between requeues them twice at worst, never loses them. If a
// Put fails (ctx ends while the spool is full, say), what was put is kept
// and only its entries are removed; the error says how far it got.
func (s *Spool) Requeue(ctx context.Context, match func(DeadLetter) bool) (int, error) {
	return s.requeue(ctx, match, s.Put, s.Sync)
}

// Requeue requeues the dead letters of both lanes (see Spool.Requeue) into
// the live lane.
func (l *Lanes) Requeue(ctx context.Context, match func(DeadLetter) bool) (int, error) {
	total := 0
	for _, sp := range l.lanes {
		if sp == nil {
			continue
		}
		n, err := sp.requeue(ctx, match, l.Put, l.Sync)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

type dlSpan struct{ off, n int64 }

func (s *Spool) requeue(ctx context.Context, match func(DeadLetter) bool,
	put func(context.Context, *Record) error, sync func(context.Context) error) (int, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	q := s.dlq
	q.mu.Lock()
	size := q.size
	q.mu.Unlock()

	var take []dlSpan
	var putErr error
	f, err := os.Open(q.path)
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	for e, err := range scanDeadLetters(f, size, true) {
		if err != nil {
			f.Close()
			return 0, fmt.Errorf("requeue: %w", err)
		}
		// Damaged regions and entries of corrupt bytes stay.
		if d := e.d; d.Record != nil && (match == nil || match(d)) && putErr == nil {
			rec := *d.Record
			rec.Seq = 0
			if err := put(ctx, &rec); err != nil {
				putErr = fmt.Errorf("requeue: put record %d of the dead-letter queue: %w", len(take)+1, err)
			} else {
				take = append(take, dlSpan{e.off, e.n})
			}
		}
	}
	f.Close()
	if len(take) == 0 {
		return 0, putErr
	}
	if err := sync(ctx); err != nil {
		return 0, fmt.Errorf("requeue: sync the spool (nothing removed from the dead-letter queue): %w", err)
	}
	if err := q.remove(take); err != nil {
		return len(take), fmt.Errorf("requeue: %d records requeued but still in the dead-letter queue (a second requeue would send them twice): %w", len(take), err)
	}
	s.log.Info("requeued dead letters", "records", len(take))
	return len(take), putErr
}

// remove rewrites the dead-letter file without the entries at spans (in
// order), keeping everything else, entries added meanwhile included.
func (q *deadLetterQueue) remove(spans []dlSpan) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.f == nil {
		return ErrClosed
	}
	tmp := q.path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		out.Close()
		os.Remove(tmp)
		return err
	}
	var at, written int64
	copyRange := func(from, to int64) error {
		if to <= from {
			return nil
		}
		n, err := io.Copy(out, io.NewSectionReader(q.f, from, to-from))
		written += n
		return err
	}
	for _, sp := range spans {
		if err := copyRange(at, sp.off); err != nil {
			return fail(err)
		}
		at = sp.off + sp.n
	}
	if err := copyRange(at, q.size); err != nil {
		return fail(err)
	}
	if err := q.sync(out); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, q.path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(q.path), q.sync); err != nil {
		out.Close()
		return err
	}
	q.f.Close()
	q.f, q.size = out, written
	q.count -= int64(len(spans))
	return nil
}
