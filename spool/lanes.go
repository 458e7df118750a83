package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// LaneDirName is the subdirectory of a sink's spool directory that holds
// its second lane.
const LaneDirName = "lane1"

// lanePoll bounds how long Lanes.Peek waits on one lane before looking at
// the other again.
const lanePoll = 250 * time.Millisecond

// Lanes is a sink's spool in two FIFO lanes, so that new records need not
// wait behind a backlog while it drains at a limited rate.
//
// Records go to the live lane. When delivery is flowing again (an Ack
// within SealAfter) while the live lane's oldest record is older than
// SealAfter and the other lane is empty, the live lane is sealed as the
// backlog and new records take the other one. Peek then serves the two
// lanes in turn, weighted by events delivered, so new events share the
// delivery rate with the backlog instead of queueing behind all of it:
// their wait is about one backlog record (one pull) at the sink's pace.
// Within a lane the order is FIFO; across lanes it is not.
//
// Both lanes are Spools with every guarantee of one (the barrier, removal
// only on Ack, recovery); they share one byte budget (Options.MaxBytes is
// for the two together). A batch (PeekBatch) comes from one lane, so the
// duplicates a crash can cause are those of one Spool. With SealAfter 0 and
// no lane directory on disk, Lanes is a plain Spool behind the same methods.
//
// Put and Sync are safe for concurrent use; Peek, PeekBatch, Ack, AckThrough
// and DeadLetter are for one delivery loop, as for a Spool.
type Lanes struct {
	lanes     [2]*Spool // lanes[1] is nil when there is no second lane
	sealAfter time.Duration
	log       *slog.Logger

	mu    sync.Mutex
	live  int
	putCh chan struct{} // closed and replaced after every Put

	lastAck atomic.Int64 // unix nanoseconds of the last Ack

	// delivery side
	head     *Record
	headLane int
	batch    []*Record // the last PeekBatch, head first
	served   [2]int64  // events acked per lane since a lane was last empty
}

// OpenLanes opens the spool in dir as lane 0 and, when sealAfter > 0 or
// dir/LaneDirName already holds files (a relay that interleaved before),
// the second lane in dir/LaneDirName, with the same options. sealAfter 0
// never writes to the second lane; what it holds is still delivered.
func OpenLanes(dir string, opts Options, sealAfter time.Duration) (*Lanes, error) {
	if sealAfter < 0 {
		return nil, fmt.Errorf("spool lanes: negative seal age %s", sealAfter)
	}
	l0, err := Open(dir, opts)
	if err != nil {
		return nil, err
	}
	l := &Lanes{sealAfter: sealAfter, log: l0.log, putCh: make(chan struct{})}
	l.lanes[0] = l0
	ldir := filepath.Join(dir, LaneDirName)
	if sealAfter > 0 || dirHasFiles(ldir) {
		o1 := opts
		o1.archive = l0.arch // one archive per sink
		l1, err := Open(ldir, o1)
		if err != nil {
			l0.Close()
			return nil, fmt.Errorf("second lane: %w", err)
		}
		l.lanes[1] = l1
		l0.peer, l1.peer = l1, l0
		// The lane with fewer records is most likely the one that was
		// live; either choice keeps every guarantee.
		if sealAfter > 0 && l1.Stats().Depth < l0.Stats().Depth {
			l.live = 1
		}
	}
	return l, nil
}

func dirHasFiles(dir string) bool {
	ents, err := os.ReadDir(dir)
	return err == nil && len(ents) > 0
}

// Put appends r to the live lane (see Lanes); it blocks while the two
// lanes together are over the budget, as Spool.Put does.
func (l *Lanes) Put(ctx context.Context, r *Record) error {
	l.mu.Lock()
	i := l.pickLane()
	l.mu.Unlock()
	if err := l.lanes[i].Put(ctx, r); err != nil {
		return err
	}
	l.mu.Lock()
	close(l.putCh)
	l.putCh = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// pickLane returns the lane for the next Put, sealing the live one if it
// is due. Called with l.mu held.
func (l *Lanes) pickLane() int {
	if l.sealAfter <= 0 || l.lanes[1] == nil {
		return l.live
	}
	cur, other := l.lanes[l.live].Stats(), l.lanes[1-l.live].Stats()
	flowing := time.Since(time.Unix(0, l.lastAck.Load())) < l.sealAfter
	if other.Depth == 0 && cur.Depth > 0 && cur.OldestAge >= l.sealAfter && flowing {
		l.log.Info("spool backlog sealed: new records take the other lane and interleave with it",
			"backlog_records", cur.Depth, "backlog_bytes", cur.Bytes, "oldest", cur.OldestAge.Round(time.Millisecond),
			"lane", 1-l.live)
		l.live = 1 - l.live
	}
	return l.live
}

// Sync returns once every record whose Put returned before Sync was called
// is durable, in whichever lane (see Spool.Sync).
func (l *Lanes) Sync(ctx context.Context) error {
	for _, sp := range l.lanes {
		if sp == nil {
			continue
		}
		if err := sp.Sync(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Peek returns the next record to deliver without removing it: the head
// of one lane, the lanes taken in turn by events delivered. Repeated calls
// return the same record until Ack. Blocks while both lanes are empty.
func (l *Lanes) Peek(ctx context.Context) (*Record, error) {
	if l.head != nil {
		return l.head, nil
	}
	if l.lanes[1] == nil {
		r, err := l.lanes[0].Peek(ctx)
		if err == nil {
			l.head, l.headLane = r, 0
		}
		return r, err
	}
	for polls := 0; ; polls++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l.mu.Lock()
		ch := l.putCh
		l.mu.Unlock()
		for _, i := range l.order() {
			// A lane's depth counts its records (recovered ones too), so
			// an empty lane is skipped without waiting; every few polls
			// both are tried anyway.
			if l.lanes[i].Stats().Depth == 0 && polls%8 != 7 {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, lanePoll)
			r, err := l.lanes[i].Peek(pctx)
			cancel()
			if err == nil {
				l.head, l.headLane = r, i
				return r, nil
			}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		t := time.NewTimer(lanePoll)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// order is the lanes in the order Peek tries them: the one that delivered
// fewer events since a lane was last empty first, the live lane on a tie.
func (l *Lanes) order() [2]int {
	l.mu.Lock()
	live := l.live
	l.mu.Unlock()
	first := live
	if l.served[live] > l.served[1-live] {
		first = 1 - live
	}
	return [2]int{first, 1 - first}
}

// Ack removes the record Peek returned last (ErrNotHead for any other
// seq), from its lane.
func (l *Lanes) Ack(seq uint64) error {
	if l.head == nil || l.head.Seq != seq {
		var want uint64
		if l.head != nil {
			want = l.head.Seq
		}
		return fmt.Errorf("ack seq %d (head %d): %w", seq, want, ErrNotHead)
	}
	if err := l.lanes[l.headLane].Ack(seq); err != nil {
		return err
	}
	l.acked(l.head.Count)
	return nil
}

// PeekBatch returns the next record to deliver, as Peek does, followed by
// the records behind it in its lane (see Spool.PeekBatch). A batch never
// mixes lanes.
func (l *Lanes) PeekBatch(ctx context.Context, maxRecords, maxBytes int) ([]*Record, error) {
	if _, err := l.Peek(ctx); err != nil {
		return nil, err
	}
	b, err := l.lanes[l.headLane].PeekBatch(ctx, maxRecords, maxBytes)
	if err != nil {
		return nil, err
	}
	l.batch = b
	return b, nil
}

// AckThrough acknowledges the records of the last PeekBatch up to seq, in
// their lane (see Spool.AckThrough).
func (l *Lanes) AckThrough(seq uint64) error {
	if l.head == nil {
		return fmt.Errorf("ack through seq %d (no head): %w", seq, ErrNotHead)
	}
	if err := l.lanes[l.headLane].AckThrough(seq); err != nil {
		return err
	}
	events := 0
	for _, r := range l.batch {
		if r.Seq <= seq {
			events += r.Count
		}
	}
	l.acked(events)
	return nil
}

// acked notes the acknowledgement of the head (and the records of its batch
// behind it), of events events.
func (l *Lanes) acked(events int) {
	l.lastAck.Store(time.Now().UnixNano())
	if l.lanes[1] != nil {
		l.served[l.headLane] += int64(events)
		if l.lanes[0].Stats().Depth == 0 || l.lanes[1].Stats().Depth == 0 {
			l.served = [2]int64{}
		}
	}
	l.head, l.batch = nil, nil
}

// DeadLetter stores r with reason in the dead-letter queue of the lane
// the peeked record came from (see Spool.DeadLetter); ReadDeadLetters on
// the spool directory reads both.
func (l *Lanes) DeadLetter(r *Record, reason string) error {
	i := 0
	if l.head != nil {
		i = l.headLane
	}
	return l.lanes[i].DeadLetter(r, reason)
}

// Stats adds up the lanes' counters; OldestAge is the older of the two.
func (l *Lanes) Stats() Stats {
	st := l.lanes[0].Stats()
	if l.lanes[1] == nil {
		return st
	}
	s1 := l.lanes[1].Stats()
	st.Depth += s1.Depth
	st.Bytes += s1.Bytes
	st.OldestAge = max(st.OldestAge, s1.OldestAge)
	st.DeadLetters += s1.DeadLetters
	st.DeadLetterBytes += s1.DeadLetterBytes
	st.DeadLetterDamaged += s1.DeadLetterDamaged
	st.DeadLetterRefused += s1.DeadLetterRefused
	st.Corrupt += s1.Corrupt
	st.Put += s1.Put
	st.Acked += s1.Acked
	if st.SyncError == nil {
		st.SyncError = s1.SyncError
	}
	return st
}

// Close closes both lanes (see Spool.Close). Safe on a nil Lanes.
func (l *Lanes) Close() error {
	if l == nil {
		return nil
	}
	var errs []error
	for _, sp := range l.lanes {
		if sp != nil {
			errs = append(errs, sp.Close())
		}
	}
	return errors.Join(errs...)
}
