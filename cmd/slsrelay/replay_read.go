package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"golang.org/x/sync/errgroup"

	"slsrelay/checkpoint"
	"slsrelay/deliver"
	"slsrelay/ingest"
	"slsrelay/spool"
)

// replaySource is the SLS side of a job.
type replaySource struct {
	client            sls.ClientInterface
	project, logstore string
	compression       string
	maxGroups         int
	ttl               time.Duration // the logstore's retention; 0: for ever
}

func newReplaySource(cfg *Config, a *replayArgs) (*replaySource, error) {
	endpoint, compression, maxGroups := cfg.SLS.Endpoint, "lz4", 0
	for _, s := range cfg.Sources { // the live relay's settings for it, if any
		if s.Project == a.project && s.Logstore == a.logstore {
			if s.Endpoint != "" {
				endpoint = s.Endpoint
			}
			compression, maxGroups = s.Compression, s.MaxFetchGroups
		}
	}
	if endpoint == "" {
		return nil, fmt.Errorf("no SLS endpoint for %s/%s: set sls.endpoint in %s", a.project, a.logstore, a.config)
	}
	return &replaySource{client: newSLSClient(cfg, endpoint), project: a.project, logstore: a.logstore,
		compression: compression, maxGroups: maxGroups}, nil
}

// check asks SLS for the logstore (a bad --source or bad credentials fail
// here, before anything is written) and reads its retention.
func (s *replaySource) check() error {
	ls, err := s.client.GetLogStore(s.project, s.logstore)
	if err != nil {
		return fmt.Errorf("--source %s/%s: %w", s.project, s.logstore, err)
	}
	if ls.TTL > 0 && ls.TTL < 3650 { // 3650 days is SLS's "for ever"
		s.ttl = time.Duration(ls.TTL) * 24 * time.Hour
	}
	return nil
}

// replayRun is one run of a job: plan the shards, read them into the
// spools, let the delivery loops drain the spools.
type replayRun struct {
	job  checkpoint.ReplayJob
	args *replayArgs
	src  *replaySource
	arch *archiveSource // set instead of src by --from-spool (replay_spool.go)
	r    *relay
	log  *slog.Logger
	out  io.Writer

	mu      sync.Mutex
	shards  map[int]*replayShard
	started time.Time
	pct0    float64 // progress when this run started
	kept    keptCounts

	archSegs map[int]spool.ArchiveSegment // with arch: the archive's index
}

type replayShard struct {
	p          checkpoint.ReplayShard
	pos        time.Time // SLS receive time reached (estimate)
	lastLookup time.Time
}

func (rr *replayRun) run(ctx context.Context) error {
	rr.started = time.Now()
	plan, read := rr.plan, rr.read
	if rr.arch != nil {
		plan, read = rr.planArchive, rr.readArchive
	}
	if err := plan(); err != nil {
		return err
	}
	rr.pct0 = rr.percent()
	rr.r.statusEvery = 24 * time.Hour // replay reports its own progress

	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	loopDone := make(chan error, 1)
	go func() { loopDone <- rr.r.Run(loopCtx) }()
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var loopErr error
	loopEnded := make(chan struct{})
	go func() {
		loopErr = <-loopDone
		close(loopEnded)
		stopReading()
	}()
	progressDone := make(chan struct{})
	progressCtx, stopProgress := context.WithCancel(ctx)
	go func() { defer close(progressDone); rr.reportProgress(progressCtx) }()

	err := read(readCtx)
	if err == nil {
		err = rr.drain(readCtx)
	}
	stopProgress()
	<-progressDone
	stopLoops()
	<-loopEnded
	if loopErr != nil {
		return loopErr
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// plan finds every shard's cursors at the range's ends (once per job; a
// resumed job keeps its plan) and the part of the range that has aged out.
func (rr *replayRun) plan() error {
	done, err := rr.r.cps.ReplayShards(rr.job.ID)
	if err != nil {
		return err
	}
	shards, err := rr.src.client.ListShards(rr.src.project, rr.src.logstore)
	if err != nil {
		return fmt.Errorf("list shards of %s/%s: %w", rr.src.project, rr.src.logstore, err)
	}
	rr.shards = map[int]*replayShard{}
	for id, p := range done {
		rr.shards[id] = &replayShard{p: p}
	}
	for _, sh := range shards {
		if _, ok := rr.shards[sh.ShardID]; ok {
			continue
		}
		p, err := rr.planShard(sh.ShardID)
		if err != nil {
			return err
		}
		if err := rr.r.cps.CommitReplayShard(rr.job.ID, p); err != nil {
			return err
		}
		if !p.MissingFrom.IsZero() {
			rr.recordMissing(p.Shard, p.MissingFrom, p.MissingTo, "before the logstore's oldest data")
		}
		rr.shards[sh.ShardID] = &replayShard{p: p}
	}
	return nil
}

func (rr *replayRun) planShard(shard int) (checkpoint.ReplayShard, error) {
	s, j := rr.src, rr.job
	cursorAt := func(from string) (string, error) {
		c, err := s.client.GetCursor(s.project, s.logstore, shard, from)
		if err != nil {
			return "", fmt.Errorf("shard %d: get cursor at %s: %w", shard, from, err)
		}
		return c, nil
	}
	start, err := cursorAt(strconv.FormatInt(j.From.Unix(), 10))
	if err != nil {
		return checkpoint.ReplayShard{}, err
	}
	end, err := cursorAt(strconv.FormatInt(j.To.Unix(), 10))
	if err != nil {
		return checkpoint.ReplayShard{}, err
	}
	p := checkpoint.ReplayShard{Shard: shard, Start: start, Cursor: start, End: end, Done: start == end}
	// The range reaches back past the retention, and the shard's cursor
	// at From is its oldest data: what was before it has aged out, from
	// From to the oldest data held (or to the retention's horizon for a
	// shard that holds nothing).
	horizon := time.Now().Add(-s.ttl)
	if s.ttl == 0 || !j.From.Before(horizon) {
		return p, nil
	}
	begin, err := cursorAt("begin")
	if err != nil || begin != start {
		return p, err
	}
	last, err := cursorAt("end")
	if err != nil {
		return p, err
	}
	oldest := horizon
	if begin != last {
		if oldest, err = s.client.GetCursorTime(s.project, s.logstore, shard, begin); err != nil {
			return p, fmt.Errorf("shard %d: time of the oldest data: %w", shard, err)
		}
	}
	if to := minTime(oldest, j.To).Truncate(time.Second).UTC(); to.After(j.From) {
		p.MissingFrom, p.MissingTo = j.From, to
	}
	return p, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// recordMissing names a lost part of the range, loudly and durably.
func (rr *replayRun) recordMissing(shard int, from, to time.Time, why string) {
	rr.log.Error("DATA MISSING: part of the range has aged out of the logstore's retention",
		slog.Int("shard", shard), slog.Time("missing_from", from), slog.Time("missing_to", to), slog.String("detail", why))
	g := checkpoint.Gap{Key: checkpoint.ShardKey{Project: rr.job.Project, Logstore: rr.job.Logstore, Shard: shard},
		From: from, To: to, Reason: "replay: aged out of the logstore's retention (" + why + ")"}
	if err := rr.r.cps.RecordGap(g); err != nil {
		rr.log.Warn("could not record the gap", slog.Any("err", err))
	}
}

// read reads every unfinished shard, parallel at a time.
func (rr *replayRun) read(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rr.args.parallel)
	slots := make(chan struct{}, 3) // pulls held in memory, as ingest's
	spools := make([]ingest.Spool, len(rr.r.spools))
	for i, sp := range rr.r.spools {
		spools[i] = sp
		if rr.job.LogTime {
			spools[i] = &timeFilterSpool{Spool: sp, from: rr.job.From.Unix(), to: rr.job.To.Unix(), kept: &rr.kept}
		}
	}
	for _, id := range sortedShards(rr.shards) {
		st := rr.shards[id]
		if st.p.Done {
			continue
		}
		g.Go(func() error { return rr.readShard(gctx, st, spools, slots) })
	}
	return g.Wait()
}

func (rr *replayRun) readShard(ctx context.Context, st *replayShard, spools []ingest.Spool, slots chan struct{}) error {
	s := rr.src
	sr := &ingest.ShardReader{
		Client: s.client, Project: s.project, Logstore: s.logstore, Shard: st.p.Shard,
		Query: rr.job.Query, Compression: s.compression, MaxGroups: s.maxGroups, StopAtEnd: true,
		Spools: spools, Slots: slots, Logger: rr.log,
		Progress: func(p ingest.Pull) error { return rr.progress(st, p) },
	}
	for {
		rr.mu.Lock()
		from, to := st.p.Cursor, st.p.End
		rr.mu.Unlock()
		_, err := sr.Read(ctx, from, to)
		var ce *ingest.CursorExpiredError
		if errors.As(err, &ce) {
			if err := rr.agedOut(st); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		rr.mu.Lock()
		st.p.Done = true
		p := st.p
		rr.mu.Unlock()
		return rr.r.cps.CommitReplayShard(rr.job.ID, p)
	}
}

// progress commits a shard's position once a pull is durable in every
// spool (the reader calls it only then).
func (rr *replayRun) progress(st *replayShard, pull ingest.Pull) error {
	kept := pull.Count
	if rr.job.LogTime && pull.Count > 0 {
		kept = rr.kept.take(pull.Shard, pull.Cursor, pull.Count)
	}
	rr.mu.Lock()
	st.p.Cursor = pull.Next
	st.p.Events += int64(kept)
	st.p.Skipped += int64(pull.Count - kept)
	st.p.Bytes += int64(pull.Bytes)
	st.p.Done = pull.Next == st.p.End
	p := st.p
	lookup := !p.Done && time.Since(st.lastLookup) > 2*time.Second
	if lookup {
		st.lastLookup = time.Now()
	}
	rr.mu.Unlock()
	if err := rr.r.cps.CommitReplayShard(rr.job.ID, p); err != nil {
		return err
	}
	if lookup { // where in the range the shard is, for the percentage
		if t, err := rr.src.client.GetCursorTime(rr.src.project, rr.src.logstore, p.Shard, p.Cursor); err == nil {
			rr.mu.Lock()
			st.pos = t
			rr.mu.Unlock()
		}
	}
	return nil
}

// agedOut handles a cursor that aged out while the job ran (or was
// interrupted): the lost part is named, and the shard continues at the
// oldest data held, or is done if that is past the range.
func (rr *replayRun) agedOut(st *replayShard) error {
	s := rr.src
	begin, err := s.client.GetCursor(s.project, s.logstore, st.p.Shard, "begin")
	if err != nil {
		return fmt.Errorf("shard %d: get begin cursor: %w", st.p.Shard, err)
	}
	oldest, err := s.client.GetCursorTime(s.project, s.logstore, st.p.Shard, begin)
	if err != nil {
		return fmt.Errorf("shard %d: time of the oldest data: %w", st.p.Shard, err)
	}
	rr.mu.Lock()
	from := st.pos
	if from.IsZero() || from.Before(rr.job.From) {
		from = rr.job.From
	}
	to := minTime(oldest, rr.job.To).Truncate(time.Second).UTC()
	if st.p.MissingFrom.IsZero() || from.Before(st.p.MissingFrom) {
		st.p.MissingFrom = from
	}
	if to.After(st.p.MissingTo) {
		st.p.MissingTo = to
	}
	if !oldest.Before(rr.job.To) {
		st.p.Cursor, st.p.Done = st.p.End, true
	} else {
		st.p.Cursor = begin
	}
	p := st.p
	rr.mu.Unlock()
	rr.recordMissing(p.Shard, from, to, "cursor aged out during the replay")
	return rr.r.cps.CommitReplayShard(rr.job.ID, p)
}

// drain waits until every spool is empty: each record delivered or
// dead-lettered.
func (rr *replayRun) drain(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !spoolsEmpty(rr.r) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// timeFilterSpool keeps only logs whose own time is inside [from, to)
// (replay --log-time): each record is filtered before it is spooled.
type timeFilterSpool struct {
	ingest.Spool
	from, to int64 // unix seconds
	kept     *keptCounts
}

func (f *timeFilterSpool) Put(ctx context.Context, r *spool.Record) error {
	out, n, err := deliver.FilterRecord(r, func(e *deliver.Event) bool {
		t := e.Time.Unix()
		return t >= f.from && t < f.to
	})
	if err != nil {
		return err
	}
	f.kept.set(r.Shard, r.Cursor, n)
	if out.Count == 0 {
		return nil
	}
	return f.Spool.Put(ctx, out)
}

// keptCounts remembers, per shard, how many logs of its last pull the
// filter kept, for the progress of that pull.
type keptCounts struct {
	mu sync.Mutex
	m  map[int]keptPull
}

type keptPull struct {
	cursor string
	n      int
}

func (k *keptCounts) set(shard int, cursor string, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[int]keptPull{}
	}
	k.m[shard] = keptPull{cursor, n}
}

// take returns the count for the pull at cursor (count if unknown).
func (k *keptCounts) take(shard int, cursor string, count int) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.m[shard]; ok && p.cursor == cursor {
		return p.n
	}
	return count
}
