package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"slsrelay/internal/failpoint"
	"slsrelay/spool"
)

// Defaults of LoopOptions.
const (
	DefaultPauseLogEvery = time.Minute
	DefaultLoopRetryMin  = time.Second
	DefaultLoopRetryMax  = 30 * time.Second
	// DefaultBatchRecords and DefaultBatchBytes bound a delivery batch: the
	// record at the head of the queue and those already queued behind it,
	// sent as one Batch (see LoopOptions.BatchRecords).
	DefaultBatchRecords = 32
	DefaultBatchBytes   = 8 << 20
)

// Dead-letter reason categories, the keys of LoopStats.DeadLettered.
const (
	ReasonDecode   = "decode"   // the record's payload could not be decoded
	ReasonRejected = "rejected" // the SIEM rejected an event permanently
)

// LoopOptions configure a delivery loop. Zero values mean the defaults.
type LoopOptions struct {
	// Logger (default slog.Default()); every line carries the sink's name.
	Logger *slog.Logger
	// RateLimit caps delivery in events per second, with a burst of one
	// second's worth, so that a SIEM back from maintenance is not flooded
	// (0: unlimited). Re-sent events count again.
	RateLimit float64
	// PauseLogEvery is the interval between error logs while the sink is
	// paused or failing (default 1 min).
	PauseLogEvery time.Duration
	// Retry paces the loop's own retries of a paused (Config) or failing
	// (Transient) sink (default 1 s doubling to 30 s, jittered).
	Retry RetryPolicy
	// Metrics hooks, each optional.
	Metrics LoopMetrics
	// BatchRecords caps the records delivered together: the head of the
	// queue and the records already queued behind it (never waiting for
	// more) are decoded, sent as one Batch, which the sink cuts into
	// requests and pipelines, and acknowledged with one fsync (default 32;
	// 1 delivers one record at a time). BatchBytes caps their payload
	// (default 8 MiB; the head alone may be larger). A crash between a send
	// and its acknowledgement re-sends at most one batch.
	BatchRecords int
	BatchBytes   int
	// StopGrace is how long a send in flight when Run's context ends may
	// still take to be confirmed, so that a graceful stop does not re-send
	// it after the restart (default 0: abandon it at once). Retries and
	// backoff stop with the context regardless.
	StopGrace time.Duration
}

// LoopMetrics are optional hooks called by the loop's goroutine (never
// concurrently with each other) as things happen.
type LoopMetrics struct {
	// Delivered: events confirmed by the sink, records acked.
	Delivered func(events, records int)
	// DeadLettered: events sent to the dead-letter queue and why (Reason*).
	DeadLettered func(reason string, events int)
	// Retried: the loop re-sends after an error of this kind.
	Retried func(kind ErrorKind)
	// Paused: the sink was paused (true) or resumed (false).
	Paused func(paused bool)
}

// Sink states, LoopStats.State.
const (
	// StateDelivering: the last send went through, or none failed yet.
	StateDelivering = "delivering"
	// StateRetrying: sends fail transiently (refused, timeouts, 5xx, 429)
	// and are retried, by the loop or inside the sink.
	StateRetrying = "retrying"
	// StatePaused: the SIEM refuses the configuration (401/403, unknown
	// index, TLS trust); the loop keeps the data and retries slowly.
	StatePaused = "paused"
)

// ErrorClasses are the keys of LoopStats.Errors: the ErrorKind names of
// docs/CONFIG.md's table, in a stable order.
var ErrorClasses = []string{Transient.String(), Permanent.String(), Config.String()}

// LoopStats is a snapshot of a loop's counters.
type LoopStats struct {
	Sink             string
	DeliveredEvents  uint64
	DeliveredRecords uint64
	// DeadLettered counts dead-lettered events by reason (Reason*); every
	// reason is present, starting at 0.
	DeadLettered map[string]uint64
	// Retries counts the loop's re-sends of a record after a failed send
	// (counted when the send is made again); TransportRetries the sink's
	// own retried attempts (when the sink reports them, as HEC and syslog
	// do).
	Retries          uint64
	TransportRetries uint64
	Paused           bool
	PausedSince      time.Time
	LastError        string
	LastErrorAt      time.Time

	// State is StateDelivering, StateRetrying or StatePaused, since
	// StateSince, because of StateReason (the latest error; empty while
	// delivering).
	State       string
	StateSince  time.Time
	StateReason string
	// LastSuccess is when the sink last confirmed a send (zero: never since
	// start).
	LastSuccess time.Time
	// Sending is true while a Send is in progress, since SendingSince.
	Sending      bool
	SendingSince time.Time
	// Errors counts failed sends by class (ErrorClasses, all present):
	// failures the loop saw plus, under "transient", the sink's retried
	// attempts.
	Errors map[string]uint64
}

// Loop moves records from a Queue to a Sink: peek → decode → send → ack.
type Loop struct {
	q    Queue
	bq   batchQueue // q, when it batches and BatchRecords > 1; else nil
	sink Sink
	opts LoopOptions
	log  *slog.Logger
	lim  *limiter

	pauseLog logEvery
	failLog  logEvery

	mu    sync.Mutex
	stats LoopStats

	// decoded is the memory of the batch being delivered, reused for the
	// next: a Sink keeps no event once Send returned.
	decoded decodeBuffers
	one     []*spool.Record // PeekBatch of a Queue without batches
	spans   []span
}

// batchQueue is a Queue that hands out the records behind the head too
// (spool.Spool and spool.Lanes).
type batchQueue interface {
	PeekBatch(ctx context.Context, maxRecords, maxBytes int) ([]*spool.Record, error)
	AckThrough(seq uint64) error
}

// span is the events of one record of a batch: events[from:to].
type span struct {
	rec      *spool.Record
	from, to int
}

// NewLoop builds a loop; it starts nothing until Run.
func NewLoop(q Queue, s Sink, opts LoopOptions) *Loop {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PauseLogEvery <= 0 {
		opts.PauseLogEvery = DefaultPauseLogEvery
	}
	if opts.Retry.Min <= 0 {
		opts.Retry.Min = DefaultLoopRetryMin
	}
	if opts.Retry.Max <= 0 {
		opts.Retry.Max = DefaultLoopRetryMax
	}
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = DefaultBatchRecords
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	l := &Loop{
		q: q, sink: s, opts: opts,
		log:      opts.Logger.With(slog.String(attrSink, s.Name())),
		lim:      newLimiter(opts.RateLimit),
		pauseLog: logEvery{every: opts.PauseLogEvery},
		failLog:  logEvery{every: opts.PauseLogEvery},
	}
	if bq, ok := q.(batchQueue); ok && opts.BatchRecords > 1 {
		l.bq = bq
	}
	l.stats.Sink = s.Name()
	l.stats.DeadLettered = map[string]uint64{ReasonDecode: 0, ReasonRejected: 0}
	l.stats.Errors = map[string]uint64{}
	for _, c := range ErrorClasses {
		l.stats.Errors[c] = 0
	}
	l.stats.State, l.stats.StateSince = StateDelivering, time.Now()
	return l
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (l *Loop) Stats() LoopStats {
	l.mu.Lock()
	st := l.stats
	st.DeadLettered = maps.Clone(l.stats.DeadLettered)
	st.Errors = maps.Clone(l.stats.Errors)
	l.mu.Unlock()
	if r, ok := l.sink.(interface{ Retries() uint64 }); ok {
		st.TransportRetries = r.Retries()
		st.Errors[Transient.String()] += st.TransportRetries
	}
	// A send retried inside the sink has not come back to the loop yet:
	// the sink is retrying all the same.
	if st.State == StateDelivering && st.Sending {
		if since, why := l.sinkRetrying(); !since.IsZero() {
			st.State, st.StateSince, st.StateReason = StateRetrying, since, why
		}
	}
	return st
}

// sinkRetrying reports since when the sink retries its current send
// internally (zero if it does not, or cannot tell).
func (l *Loop) sinkRetrying() (time.Time, string) {
	if r, ok := l.sink.(retryReporter); ok {
		return r.RetryingSince()
	}
	return time.Time{}, ""
}

// setState moves to state (a no-op when already there, except that the
// reason is refreshed).
func (l *Loop) setState(state, reason string) {
	l.mu.Lock()
	if l.stats.State != state {
		l.stats.State, l.stats.StateSince = state, time.Now()
	}
	l.stats.StateReason = reason
	l.mu.Unlock()
}

// Run delivers until ctx ends (then it returns nil once the send in
// flight is confirmed, within StopGrace, or else leaving its records unacked
// in the queue: delivery is at least once) or until the queue fails (Peek,
// Ack or DeadLetter errors other than a full dead-letter queue, which
// pauses the sink until it takes the entry, are returned: continuing could
// lose data). Run must not be called twice at once.
func (l *Loop) Run(ctx context.Context) error {
	sendCtx, cancel := l.afterGrace(ctx, l.opts.StopGrace)
	defer cancel()
	for {
		recs, err := l.peek(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("peek: %w", err)
		}
		if err := l.deliver(ctx, sendCtx, recs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// peek returns the next batch: the head of the queue and, from a
// batchQueue, the records queued behind it.
func (l *Loop) peek(ctx context.Context) ([]*spool.Record, error) {
	if l.bq != nil {
		return l.bq.PeekBatch(ctx, l.opts.BatchRecords, l.opts.BatchBytes)
	}
	r, err := l.q.Peek(ctx)
	if err != nil {
		return nil, err
	}
	l.one = append(l.one[:0], r)
	return l.one, nil
}

// afterGrace returns a context that ends grace after ctx ends, or as soon
// as the send in flight is seen retrying failures after ctx ended: the grace
// is for a send about to be confirmed, and a SIEM that refuses or answers
// 503 will not confirm it in time, so a stop does not sit out the grace.
func (l *Loop) afterGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	if grace <= 0 {
		return ctx, func() {}
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(grace, cancel)
		go func() {
			t := time.NewTicker(stopPoll)
			defer t.Stop()
			for {
				if since, _ := l.sinkRetrying(); !since.IsZero() {
					l.log.Info("stopping: the send in flight is being retried, abandoning it (it stays in the spool)")
					cancel()
					return
				}
				select {
				case <-gctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	})
	return gctx, func() { stop(); cancel() }
}

// stopPoll is how often a stopping loop checks whether its send retries.
const stopPoll = 50 * time.Millisecond

// deliver sends a batch of records until every event is confirmed or
// dead-lettered, then acks them all. Sends run under sendCtx, which may
// outlive ctx by the stop grace; waits and retries end with ctx.
func (l *Loop) deliver(ctx, sendCtx context.Context, recs []*spool.Record) error {
	evs, err := l.decode(ctx, recs)
	if err != nil {
		return err
	}
	// evs[:pos] are confirmed or dead-lettered. After a rejection that
	// names no event, the rest goes record by record (split), so that
	// only the record holding the bad data is dead-lettered.
	pos, delivered, attempt, split := 0, 0, 0, false
	for pos < len(evs) {
		end, seq := len(evs), recs[0].Seq
		if split {
			sp := l.spanAt(pos)
			end, seq = sp.to, sp.rec.Seq
		}
		part := evs[pos:end]
		if err := l.lim.wait(ctx, len(part)); err != nil {
			return err
		}
		if attempt > 0 {
			l.retried()
		}
		l.sending(true)
		err := l.sink.Send(sendCtx, &Batch{Seq: seq, Events: part})
		l.sending(false)
		if err == nil {
			failpoint.Hit(failpoint.DeliverAfterSend)
			delivered += len(part)
			pos, attempt = end, 0
			l.success()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.noteError(err)
		var de *Error
		errors.As(err, &de)
		switch KindOf(err) {
		case Permanent:
			l.success() // the SIEM answered: it is up and trusts us
			i := -1
			if de.EventIndex >= 0 && de.EventIndex < len(part) {
				i = de.EventIndex
			}
			if i < 0 && l.spanAt(pos).to < end {
				split, attempt = true, 0
				continue
			}
			from, to := pos, end
			if i >= 0 {
				from, to = pos+i, pos+i+1
			}
			if err := l.rejected(ctx, evs, from, to, err); err != nil {
				return err
			}
			delivered += from - pos
			pos, attempt = to, 0
			continue
		case Config:
			l.pause(err)
		default:
			l.setState(StateRetrying, err.Error())
			if ok, n := l.failLog.allow(); ok {
				l.log.Warn("send failed, retrying", slog.Uint64(attrSeq, seq),
					slog.Int("records", len(recs)), slog.String(attrErr, err.Error()), slog.Int("suppressed", n))
			}
		}
		if f := l.opts.Metrics.Retried; f != nil {
			f(KindOf(err))
		}
		if err := sleepCtx(ctx, l.opts.Retry.Backoff(attempt)); err != nil {
			return err
		}
		attempt++
	}
	return l.ack(recs[len(recs)-1].Seq, len(recs), delivered)
}

// spanAt returns the span of the record holding event pos of the batch.
func (l *Loop) spanAt(pos int) span {
	for _, sp := range l.spans {
		if pos < sp.to {
			return sp
		}
	}
	return span{}
}

// decode decodes the batch's records into one slice of events, noting in
// l.spans which record each came from. A record that does not decode is
// dead-lettered whole (its events are not sent); the others go on.
func (l *Loop) decode(ctx context.Context, recs []*spool.Record) ([]Event, error) {
	l.spans = l.spans[:0]
	var evs []Event
	for i, rec := range recs {
		var err error
		var all []Event
		if i == 0 {
			all, err = decodeInto(rec, &l.decoded)
		} else {
			all, err = decodeAppend(rec, &l.decoded)
		}
		if err != nil {
			if err := l.storeDeadLetter(ctx, rec, ReasonDecode+": "+err.Error()); err != nil {
				return nil, err
			}
			l.deadLettered(rec, ReasonDecode, rec.Count, err)
			continue
		}
		l.spans = append(l.spans, span{rec: rec, from: len(evs), to: len(all)})
		evs = all
	}
	return evs, nil
}

// rejected dead-letters evs[from:to], which the SIEM refused for good,
// each event with the record it came from.
func (l *Loop) rejected(ctx context.Context, evs []Event, from, to int, cause error) error {
	for _, sp := range l.spans {
		lo, hi := max(from, sp.from), min(to, sp.to)
		if lo >= hi {
			continue
		}
		if err := l.deadLetter(ctx, sp.rec, evs[sp.from:sp.to], evs[lo:hi], cause); err != nil {
			return err
		}
	}
	return nil
}

func (l *Loop) ack(seq uint64, records, events int) error {
	var err error
	if l.bq != nil {
		err = l.bq.AckThrough(seq)
	} else {
		err = l.q.Ack(seq)
	}
	if err != nil {
		return fmt.Errorf("ack through record %d: %w", seq, err)
	}
	l.mu.Lock()
	l.stats.DeliveredEvents += uint64(events)
	l.stats.DeliveredRecords += uint64(records)
	l.mu.Unlock()
	if f := l.opts.Metrics.Delivered; f != nil {
		f(events, records)
	}
	return nil
}

// deadLetter stores bad (a sub-slice of all, the record's events) with the
// reason; the whole original record when bad is all of it.
func (l *Loop) deadLetter(ctx context.Context, rec *spool.Record, all, bad []Event, cause error) error {
	dl := rec
	if len(bad) != len(all) {
		var err error
		if dl, err = deadLetterRecord(rec, bad); err != nil {
			return err
		}
	}
	reason := ReasonRejected + " by " + l.sink.Name() + ": " + cause.Error()
	if err := l.storeDeadLetter(ctx, dl, reason); err != nil {
		return err
	}
	l.deadLettered(rec, ReasonRejected, len(bad), cause)
	return nil
}

// storeDeadLetter stores r in the dead-letter queue. While the queue is at
// its budget or its filesystem at the floor (spool.ErrDeadLetterFull) the
// sink is paused and the store retried with backoff until it succeeds or
// ctx ends: the record stays in the spool, unacknowledged, and the records
// behind it wait (order is kept, nothing is dropped). Any other error is
// returned: the queue is failing and continuing could lose data.
func (l *Loop) storeDeadLetter(ctx context.Context, r *spool.Record, reason string) error {
	for attempt := 0; ; attempt++ {
		err := l.q.DeadLetter(r, reason)
		if err == nil {
			if attempt > 0 {
				l.resume()
				l.setState(StateDelivering, "")
			}
			return nil
		}
		if !errors.Is(err, spool.ErrDeadLetterFull) {
			return fmt.Errorf("dead-letter record %d: %w", r.Seq, err)
		}
		l.pauseWith(err, "sink paused: the dead-letter queue is full (dead_letter_max_bytes or the disk floor); "+
			"the rejected record stays in the spool and the records behind it wait; free dead-letter space "+
			"(spool dump, then requeue or remove the entries) or raise the budget")
		if err := sleepCtx(ctx, l.opts.Retry.Backoff(attempt)); err != nil {
			return err
		}
	}
}

func (l *Loop) deadLettered(rec *spool.Record, reason string, events int, cause error) {
	l.mu.Lock()
	l.stats.DeadLettered[reason] += uint64(events)
	l.mu.Unlock()
	l.log.Error("events dead-lettered", slog.String("reason", reason), slog.Int("events", events),
		slog.Uint64(attrSeq, rec.Seq), slog.String(attrProject, rec.Project),
		slog.String(attrLogstore, rec.Logstore), slog.Int(attrShard, rec.Shard),
		slog.String(attrErr, cause.Error()))
	if f := l.opts.Metrics.DeadLettered; f != nil {
		f(reason, events)
	}
}

func (l *Loop) noteError(err error) {
	l.mu.Lock()
	l.stats.LastError, l.stats.LastErrorAt = err.Error(), time.Now()
	l.stats.Errors[KindOf(err).String()]++
	l.mu.Unlock()
}

// retried counts a re-send, made now.
func (l *Loop) retried() {
	l.mu.Lock()
	l.stats.Retries++
	l.mu.Unlock()
}

// sending marks a Send as begun or returned; either way the sink's own
// retry streak belongs to the send before.
func (l *Loop) sending(on bool) {
	if r, ok := l.sink.(retryReporter); ok {
		r.ClearRetrying()
	}
	l.mu.Lock()
	l.stats.Sending = on
	if on {
		l.stats.SendingSince = time.Now()
	}
	l.mu.Unlock()
}

// success records that the SIEM answered a send (accepted it, or rejected
// an event for good): the sink delivers again.
func (l *Loop) success() {
	l.mu.Lock()
	l.stats.LastSuccess = time.Now()
	l.mu.Unlock()
	l.resume()
	l.setState(StateDelivering, "")
}

func (l *Loop) pause(err error) {
	l.pauseWith(err, "sink paused: the SIEM (or a proxy before it) refuses the request as configured; keeping data and retrying")
}

// pauseWith marks the sink paused because of err and logs msg, at most once
// per PauseLogEvery.
func (l *Loop) pauseWith(err error, msg string) {
	l.mu.Lock()
	was, since := l.stats.Paused, l.stats.PausedSince
	if !was {
		l.stats.Paused, l.stats.PausedSince = true, time.Now()
		since = l.stats.PausedSince
		l.stats.State, l.stats.StateSince = StatePaused, since
	}
	l.stats.StateReason = err.Error()
	l.mu.Unlock()
	if !was {
		l.pauseLog.reset()
		if f := l.opts.Metrics.Paused; f != nil {
			f(true)
		}
	}
	if ok, _ := l.pauseLog.allow(); ok {
		l.log.Error(msg,
			slog.Duration("paused_for", time.Since(since).Round(time.Second)), slog.String(attrErr, err.Error()))
	}
}

func (l *Loop) resume() {
	l.mu.Lock()
	was, since := l.stats.Paused, l.stats.PausedSince
	l.stats.Paused, l.stats.PausedSince = false, time.Time{}
	l.mu.Unlock()
	l.failLog.reset()
	if was {
		l.log.Info("sink resumed", slog.Duration("paused_for", time.Since(since).Round(time.Millisecond)))
		if f := l.opts.Metrics.Paused; f != nil {
			f(false)
		}
	}
}

// limiter is a token bucket that lets a request go into debt: wait(n) takes
// n tokens and sleeps until the balance is back to zero, so the average rate
// holds whatever the batch sizes. Not safe for concurrent use.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
	now                 func() time.Time
	sleep               func(context.Context, time.Duration) error
}

func newLimiter(rate float64) *limiter {
	b := max(rate, 1)
	return &limiter{rate: rate, burst: b, tokens: b, now: time.Now, sleep: sleepCtx}
}

func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return nil
	}
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return nil
	}
	return l.sleep(ctx, time.Duration(-l.tokens/l.rate*float64(time.Second)))
}
