package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/internal/failpoint"
	"slsrelay/internal/loggroup"
	"slsrelay/spool"
)

// ShardReader reads one shard of a logstore into the spools, one pull at a
// time. It is the per-shard loop of the consumer group (worker.go) and of
// historical replay: give it a start cursor, and either an end cursor or
// none to follow the shard open-ended.
//
// Every pull is a fixed range [Cursor, Next) of the shard, fetched once. The
// reader keeps that pull's bytes until they are durable in every spool (Put
// into each, then Sync of each), retrying the very same bytes as often as
// needed; which spools already hold the pull is remembered with the pull
// itself and dies with it, so no spool is ever taken to hold a range it does
// not hold. Only then is Progress called, so Progress (and whatever it
// checkpoints) never sees a position that is not durable everywhere. If ctx
// ends first the pull is abandoned: Progress is not called for it, and
// reading again from the same cursor may spool a part of it a second time
// (duplicates bounded by one pull), never lose it.
//
// A ShardReader is used by one goroutine at a time; its fields must not
// change while Read runs.
type ShardReader struct {
	Client   sls.ClientInterface
	Project  string
	Logstore string
	Shard    int
	// Query is an optional server-side filter (SPL).
	Query string
	// Compression on the wire: "lz4" (default) or "zstd".
	Compression string
	// MaxGroups is the most log groups per pull, 1..1000; default 1000.
	MaxGroups int
	// FetchInterval is how long after its last pull began a caught-up
	// shard whose pull returned data is pulled again (default
	// DefaultFetchInterval); IdleFetchInterval the same for a pull that
	// found no data (default DefaultIdleFetchInterval). A shard is caught up
	// when a pull found no data, or returned everything up to the shard's
	// end at that moment (see Pull.CaughtUp); any other pull is followed at
	// once by the next.
	FetchInterval, IdleFetchInterval time.Duration
	// StopAtEnd makes Read return once a pull finds no more data (a
	// read-only shard read to its end, or a range up to now).
	StopAtEnd bool
	// Spools receive every pull that holds logs, in this order.
	Spools []Spool
	// Slots, if not nil, bounds the pulls held in memory by all readers
	// sharing it: a reader takes a slot before its request and gives it
	// back once that pull is durable, empty or dropped.
	Slots chan struct{}
	// GapCodes are the SLS error codes meaning the cursor points into data
	// that has aged out of retention; default DefaultGapCodes.
	GapCodes []string
	// Progress, if set, is called after every successful pull, once it is
	// durable in every spool: with Count 0 for an empty pull, and with
	// Next == Cursor when the shard had no more data. A non-nil error stops
	// Read, which returns it (the pull stays durable).
	Progress func(Pull) error
	// Fetched, if set, is told every pull as soon as SLS answered it,
	// before it is spooled (for statistics: a pull may then wait long on a
	// full spool). Its Count and times are those of the answer.
	Fetched func(Pull)
	// OnError, if set, is told every failed SLS request and spool attempt
	// (for statistics); Read handles the error itself.
	OnError func(error)
	Logger  *slog.Logger
}

// Pull is one fixed range of a shard, durable in every spool.
type Pull struct {
	Shard        int
	Cursor, Next string
	Groups       int   // log groups in the answer
	Count        int   // logs
	Bytes        int   // serialized LogGroupList bytes
	MinTime      int64 // logs' __time__ range (unix seconds); 0 if Count is 0
	MaxTime      int64
	At           time.Time // when SLS answered the pull
}

// AtEnd reports whether the pull found no more data.
func (p Pull) AtEnd() bool { return p.Next == p.Cursor }

// shortPullBytes is the size under which an answer with fewer log groups
// than asked for can only mean that SLS ran out of data: it cuts an answer
// short otherwise only at its size cap (megabytes; 10 MiB in the emulator).
const shortPullBytes = 1 << 20

// CaughtUp reports whether the pull, asking for at most maxGroups groups,
// read everything the shard held when SLS answered: it found no data, or
// fewer groups than asked for in an answer well under SLS's size cap.
// Pulling such a shard again at once only fetches what arrived in the
// round trip (a log group or two), and every such pull becomes one small
// spool record that delivery pays a full round trip and an fsync for: under
// a steady live load the records queue up before the sink. A caught-up
// shard waits FetchInterval instead, so a pull carries what arrived in it.
func (p Pull) CaughtUp(maxGroups int) bool {
	return p.AtEnd() || (p.Groups < maxGroups && p.Bytes < shortPullBytes)
}

// CursorExpiredError is returned by Read when SLS answers that the cursor
// points into data that has aged out of the logstore's retention.
type CursorExpiredError struct {
	Shard  int
	Cursor string
	Code   string // the SLS error code
	Err    error
}

func (e *CursorExpiredError) Error() string {
	return fmt.Sprintf("shard %d: cursor aged out of the logstore's retention (SLS answered %s)", e.Shard, e.Code)
}

func (e *CursorExpiredError) Unwrap() error { return e.Err }

// Read pulls from cursor from until cursor to ("" for no end: follow the
// shard; with StopAtEnd, until it has no more data). It returns the cursor
// up to which everything is durable in every spool, and nil once to (or,
// with StopAtEnd, the end) is reached; ctx's error once ctx ends; a
// *CursorExpiredError if SLS says the cursor has aged out; or Progress's
// error. Failed requests and spool writes are retried with backoff (up to
// 10 s apart) for as long as ctx lasts.
func (r *ShardReader) Read(ctx context.Context, from, to string) (string, error) {
	cursor := from
	delay := time.Duration(0)
	errLog := logEvery{every: 30 * time.Second}
	for {
		if to != "" && cursor == to {
			return cursor, nil
		}
		if delay > 0 {
			if !sleepCtx(ctx, delay) {
				return cursor, ctx.Err()
			}
		}
		if ctx.Err() != nil {
			return cursor, ctx.Err()
		}
		began := time.Now()
		p, err := r.pullOnce(ctx, cursor, to, &errLog)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return cursor, ctx.Err()
		default:
			var ce *CursorExpiredError
			if errors.As(err, &ce) {
				return cursor, err
			}
			if r.OnError != nil {
				r.OnError(err)
			}
			if ok, n := errLog.allow(); ok {
				r.logger().Warn("pulling from SLS failed; retrying", slog.Int("shard", r.Shard),
					slog.Int("suppressed", n), slog.Any("err", err))
			}
			delay = min(max(2*delay, 100*time.Millisecond), 10*time.Second)
			continue
		}
		errLog.reset()
		cursor = p.Next
		if r.Progress != nil {
			if err := r.Progress(p); err != nil {
				return cursor, err
			}
		}
		delay = 0
		if p.AtEnd() && r.StopAtEnd {
			return cursor, nil
		}
		if p.CaughtUp(r.maxGroups()) {
			// Counted from when the pull began, as the SDK's consumer
			// does: the pull and the spool's fsync are part of the
			// interval, not added to each event's wait.
			delay = r.fetchInterval(p.AtEnd()) - time.Since(began)
		}
	}
}

// pullOnce fetches one pull from cursor and makes it durable in every
// spool. Its slot (if any) is held from before the request until the pull
// is durable or dropped, and given back on every path.
func (r *ShardReader) pullOnce(ctx context.Context, cursor, to string, errLog *logEvery) (Pull, error) {
	if r.Slots != nil {
		select {
		case r.Slots <- struct{}{}:
		case <-ctx.Done():
			return Pull{}, ctx.Err()
		}
		defer func() { <-r.Slots }()
	}
	plr := &sls.PullLogRequest{
		Project: r.Project, Logstore: r.Logstore, ShardID: r.Shard,
		Cursor: cursor, EndCursor: to, LogGroupMaxCount: r.maxGroups(), Query: r.Query,
		CompressType: sls.Compress_LZ4,
	}
	if r.Compression == "zstd" {
		plr.CompressType = sls.Compress_ZSTD
	}
	raw, plm, err := r.Client.GetLogsBytesWithQuery(plr)
	if err != nil {
		var se *sls.Error
		if errors.As(err, &se) && slices.Contains(r.gapCodes(), se.Code) {
			return Pull{}, &CursorExpiredError{Shard: r.Shard, Cursor: cursor, Code: se.Code, Err: err}
		}
		return Pull{}, fmt.Errorf("pull shard %d: %w", r.Shard, err)
	}
	p := Pull{Shard: r.Shard, Cursor: cursor, Next: plm.NextCursor, Groups: plm.Count, Bytes: len(raw), At: time.Now()}
	if p.Next == "" {
		return Pull{}, fmt.Errorf("pull shard %d: SLS answered no next cursor", r.Shard)
	}
	sum, err := loggroup.Scan(raw)
	if err != nil {
		return Pull{}, fmt.Errorf("pull shard %d: %w", r.Shard, err)
	}
	p.Count, p.MinTime, p.MaxTime = sum.Logs, sum.MinTime, sum.MaxTime
	if r.Fetched != nil {
		r.Fetched(p)
	}
	if sum.Logs == 0 {
		return p, nil
	}
	rec := rawRecord(r.Project, r.Logstore, r.Shard, cursor, p.Next, raw, sum)
	if err := r.store(ctx, rec, errLog); err != nil {
		return Pull{}, err
	}
	failpoint.Hit(failpoint.IngestAfterSync)
	return p, nil
}

// store makes rec durable in every spool, retrying this same record until
// it is or ctx ends. put records which spools hold this record; it lives
// and dies with the record.
func (r *ShardReader) store(ctx context.Context, rec *spool.Record, errLog *logEvery) error {
	put := make([]bool, len(r.Spools))
	delay := 50 * time.Millisecond
	for {
		err := r.putAll(ctx, rec, put)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.OnError != nil {
			r.OnError(err)
		}
		// A failing disk answers every retry of every shard with the
		// same error: log it at most every 30 s per shard, with a count.
		if ok, n := errLog.allow(); ok {
			r.logger().Error("spooling a pull failed; retrying the same pull, no checkpoint moves",
				slog.Int("shard", r.Shard), slog.Int("suppressed", n), slog.Any("err", err))
		}
		if !sleepCtx(ctx, delay) {
			return ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (r *ShardReader) putAll(ctx context.Context, rec *spool.Record, put []bool) error {
	for i, sp := range r.Spools {
		if put[i] {
			continue
		}
		c := *rec
		if err := sp.Put(ctx, &c); err != nil {
			return &spoolError{fmt.Errorf("spool %d: put: %w", i, err)}
		}
		put[i] = true
	}
	failpoint.Hit(failpoint.IngestAfterPut)
	// Once written everywhere, the record will be delivered: finish the
	// barrier (an fsync, bounded) even if the relay is stopping, so that
	// it is checkpointed instead of pulled and delivered again.
	syncCtx := context.WithoutCancel(ctx)
	for i, sp := range r.Spools {
		if err := sp.Sync(syncCtx); err != nil {
			return &spoolError{fmt.Errorf("spool %d: sync: %w", i, err)}
		}
	}
	return nil
}

func (r *ShardReader) maxGroups() int {
	if r.MaxGroups <= 0 || r.MaxGroups > 1000 {
		return 1000
	}
	return r.MaxGroups
}

// Defaults of ShardReader.FetchInterval and IdleFetchInterval (and of the
// config's fetch_interval and idle_fetch_interval). An event waits in SLS
// up to the interval of its shard; a shard with data costs at most
// 1/FetchInterval pulls a second, an idle one 1/IdleFetchInterval. Both are
// 100 ms, the floor the SDK's consumer library advises for its interval:
// the first events after a quiet spell wait no longer than the others (at
// 200 ms idle, a burst after a pause was half the half-load benchmark's
// p99); an operator can trade that for fewer idle pulls.
const (
	DefaultFetchInterval     = 100 * time.Millisecond
	DefaultIdleFetchInterval = 100 * time.Millisecond
)

// fetchInterval is the interval after a caught-up pull that found no data
// (idle) or some.
func (r *ShardReader) fetchInterval(idle bool) time.Duration {
	if idle {
		if r.IdleFetchInterval <= 0 {
			return DefaultIdleFetchInterval
		}
		return r.IdleFetchInterval
	}
	if r.FetchInterval <= 0 {
		return DefaultFetchInterval
	}
	return r.FetchInterval
}

func (r *ShardReader) gapCodes() []string {
	if len(r.GapCodes) == 0 {
		return DefaultGapCodes
	}
	return r.GapCodes
}

func (r *ShardReader) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// spoolError is a failed Put or Sync (not an SLS error).
type spoolError struct{ err error }

func (e *spoolError) Error() string { return e.err.Error() }
func (e *spoolError) Unwrap() error { return e.err }

// sleepCtx waits d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// logEvery rate-limits a repeated log line: allow reports true at most once
// per every, with the number of calls suppressed since the last true.
type logEvery struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

func (l *logEvery) allow() (bool, int) {
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// reset makes the next allow report true.
func (l *logEvery) reset() { l.last, l.suppressed = time.Time{}, 0 }
