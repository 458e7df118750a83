package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"

	"slsrelay/checkpoint"
	"slsrelay/internal/failpoint"
	"slsrelay/spool"
)

// Worker consumes one source: one SDK consumer worker, restarted when a
// shard's checkpoint has aged out of the logstore's retention.
type Worker struct {
	src    Source
	opts   Options
	log    *slog.Logger
	client sls.ClientInterface
	gaps   *gapDetector

	mu     sync.Mutex
	shards map[int]*pending // pulls Put into some spools but not yet committed

	stats workerStats
}

// pending remembers which spools already hold the pull starting at cursor,
// so that a retried Process (after a failed Sync, say) does not spool it twice.
type pending struct {
	cursor string
	put    []bool
}

type workerStats struct {
	pulls, logs, bytes, gaps atomic.Int64
	lastCommit               atomic.Int64 // unix nanoseconds
}

// WorkerStats is a snapshot of a worker's counters.
type WorkerStats struct {
	Project, Logstore string
	Pulls             int64 // non-empty pulls spooled and committed
	Logs              int64
	Bytes             int64 // serialized LogGroupList bytes
	Gaps              int64 // checkpoints found aged out of retention
	LastCommit        time.Time

	// The fields below feed /readyz, /status and the lag and error metrics.
	// They are filled by the consumer loop; zero values mean "not known yet".

	// Consumer is true while the source's last heartbeat to its consumer
	// group succeeded (the relay holds a place in the group).
	Consumer      bool
	LastHeartbeat time.Time // last successful heartbeat
	// LastPull is the last successful pull on any shard (empty or not).
	LastPull time.Time
	// LastError is the newest error talking to SLS (empty once a later
	// request of the same kind succeeded), with its class and time.
	LastError      string
	LastErrorClass string
	LastErrorAt    time.Time
	// Errors counts SLS errors by class: "unreachable" (dial, DNS, TLS,
	// timeout), "auth" (401/403, bad signature or key), "throttled" (429,
	// quota), "server" (5xx), "cursor_expired", "other". Every class is
	// present, starting at 0.
	Errors map[string]int64
	// Shards held by this relay now, and those it held before (Held false).
	Shards []ShardStats
}

// ErrorClasses are the keys of WorkerStats.Errors, in a stable order.
var ErrorClasses = []string{"unreachable", "auth", "throttled", "server", "cursor_expired", "other"}

// ShardStats is one shard as this relay sees it.
type ShardStats struct {
	Shard    int
	Held     bool // assigned to this relay by the consumer group now
	ReadOnly bool // a split or merged parent, read to its end
	// LastPull is the last successful pull of this shard (empty or not).
	LastPull time.Time
	// LagSeconds is how far behind the shard's newest data the relay is:
	// now minus the SLS receive time of the oldest log group not yet
	// spooled, 0 when the last pull reached the shard's end; -1 unknown.
	LagSeconds float64
	// BehindBytes is the shard's unread data in bytes where SLS tells it
	// (-1 unknown).
	BehindBytes int64
	// Cursor is the last position durable in every spool.
	Cursor string
}

func newWorker(src Source, opts Options) (*Worker, error) {
	switch {
	case src.Project == "" || src.Logstore == "":
		return nil, errors.New("project and logstore are required")
	case src.Endpoint == "":
		return nil, errors.New("endpoint is required")
	case src.Credentials == nil:
		return nil, errors.New("credentials are required")
	case src.ConsumerGroup == "" || src.ConsumerName == "":
		return nil, errors.New("consumer group and consumer name are required")
	}
	switch src.Start.Position {
	case "", "begin", "end", "time":
	default:
		return nil, fmt.Errorf("start position %q is not begin, end or time", src.Start.Position)
	}
	switch src.Compression {
	case "", "lz4", "zstd":
	default:
		return nil, fmt.Errorf("compression %q is not lz4 or zstd", src.Compression)
	}
	if src.CheckpointInterval == 0 {
		src.CheckpointInterval = 5 * time.Second
	}
	w := &Worker{
		src:    src,
		opts:   opts,
		log:    opts.Logger.With(slog.String("project", src.Project), slog.String("logstore", src.Logstore)),
		shards: map[int]*pending{},
	}
	w.gaps = newGapDetector(opts.GapCodes)
	base := src.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: 60 * time.Second}
	}
	hc := *base
	hc.Transport = w.gaps.wrap(base.Transport)
	w.src.HTTPClient = &hc

	c := sls.CreateNormalInterfaceV2(src.Endpoint, src.Credentials)
	c.SetHTTPClient(w.src.HTTPClient)
	if src.AuthVersion != "" {
		c.SetAuthVersion(src.AuthVersion)
	}
	if src.Region != "" {
		c.SetRegion(src.Region)
	}
	w.client = c
	return w, nil
}

// Stats returns the worker's counters; safe for concurrent use.
func (w *Worker) Stats() WorkerStats {
	s := WorkerStats{
		Project: w.src.Project, Logstore: w.src.Logstore,
		Pulls: w.stats.pulls.Load(), Logs: w.stats.logs.Load(), Bytes: w.stats.bytes.Load(),
		Gaps: w.stats.gaps.Load(),
	}
	if n := w.stats.lastCommit.Load(); n != 0 {
		s.LastCommit = time.Unix(0, n)
	}
	return s
}

// Run consumes until ctx ends (nil) or a fatal error. It restarts the SDK
// consumer after handling an aged-out checkpoint.
func (w *Worker) Run(ctx context.Context) error {
	// The consumer library creates the group once, at construction, and
	// never again: if SLS is unreachable then, it heartbeats a missing group
	// for ever. So the group must exist before the library starts.
	if err := w.ensureGroup(ctx); err != nil {
		return nil // ctx ended
	}
	for {
		procCtx, cancelProc := context.WithCancel(ctx)
		gate := newPullGate(procCtx, maxHeldPulls)
		cw := consumer.InitConsumerWorkerWithCheckpointTracker(w.loghubConfig(), w.processFunc(procCtx, gate))
		if err := w.reconcile(); err != nil {
			w.log.Warn("could not align the SLS checkpoints with the local ones; duplicates possible, no loss", slog.Any("err", err))
		}
		if !settleSDKClient(cw, w.src.HTTPClient.Timeout) {
			w.log.Debug("could not pre-set the SDK client's timeouts (SDK layout changed?)")
		}
		if !useRawPulls(cw, gate) {
			w.log.Warn("could not take over the SDK's pull decoding (SDK layout changed?): pulls are decoded and re-encoded, using more memory and CPU")
		}
		cw.Start()
		w.log.Info("consuming", slog.String("group", w.src.ConsumerGroup), slog.String("consumer", w.src.ConsumerName))
		var gap gapEvent
		select {
		case <-ctx.Done():
		case gap = <-w.gaps.events:
		}
		cancelProc()
		w.stopConsumer(cw)
		if ctx.Err() != nil {
			return nil
		}
		if err := w.handleGap(gap); err != nil {
			w.log.Error("handling an aged-out checkpoint failed; retrying", slog.Int("shard", gap.shard), slog.Any("err", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// ensureGroup creates the consumer group, retrying with backoff (up to 30 s
// apart) until SLS answers or ctx ends; an existing group is fine.
func (w *Worker) ensureGroup(ctx context.Context) error {
	cg := sls.ConsumerGroup{ConsumerGroupName: w.src.ConsumerGroup, Timeout: w.heartbeatTimeout()}
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := w.client.CreateConsumerGroup(w.src.Project, w.src.Logstore, cg)
		var se *sls.Error
		if err == nil || errors.As(err, &se) && se.Code == "ConsumerGroupAlreadyExist" {
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			w.log.Warn("cannot create the consumer group yet; retrying", slog.String("group", w.src.ConsumerGroup),
				slog.Int("attempt", attempt), slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// heartbeatTimeout is the group's timeout in seconds, as the SDK computes it.
func (w *Worker) heartbeatTimeout() int {
	c := w.loghubConfig()
	if c.HeartbeatTimeoutInSecond > 0 {
		return c.HeartbeatTimeoutInSecond
	}
	if c.HeartbeatIntervalInSecond > 0 {
		return 3 * c.HeartbeatIntervalInSecond
	}
	return 60
}

// stopConsumer stops the SDK worker, which flushes the SLS checkpoints of
// what Process confirmed. It waits at most ShutdownTimeout: the SDK retries
// requests for up to 90 s during an outage, and abandoning it then is safe
// because nothing unconfirmed was ever checkpointed.
func (w *Worker) stopConsumer(cw *consumer.ConsumerWorker) {
	done := make(chan struct{})
	go func() { cw.StopAndWait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.opts.ShutdownTimeout):
		w.log.Warn("consumer did not stop in time; abandoning it (checkpoints stay at what is durably spooled)",
			slog.Duration("timeout", w.opts.ShutdownTimeout))
	}
}

// maxConcurrentPulls bounds the SDK's pulls in flight per source (its
// default is 50). When pulls were decoded by the SDK (about 35 MB of heap
// for a 10 MiB pull), eight shards pulling at once held ~140 MB; two at a
// time keep ingest ahead of delivery on two cores (make bench, 200k events:
// peak RSS 707-809 → 409-455 MiB, rate within the noise of a shared
// machine). Pulls are raw now (rawpull.go) and maxHeldPulls bounds the
// pulls held from the fetch to the end of Process; this still bounds the
// requests on the wire.
const maxConcurrentPulls = 2

func (w *Worker) loghubConfig() consumer.LogHubConfig {
	s := w.src
	c := consumer.LogHubConfig{
		Endpoint:               s.Endpoint,
		CredentialsProvider:    s.Credentials,
		Project:                s.Project,
		Logstore:               s.Logstore,
		Query:                  s.Query,
		ConsumerGroupName:      s.ConsumerGroup,
		ConsumerName:           s.ConsumerName,
		MaxFetchLogGroupCount:  s.MaxFetchGroups,
		HTTPClient:             s.HTTPClient,
		AuthVersion:            s.AuthVersion,
		Region:                 s.Region,
		Logger:                 newSDKLogger(w.log),
		AutoCommitIntervalInMS: s.CheckpointInterval.Milliseconds(),
		DisableRuntimeMetrics:  true,
		MaxIoWorkers:           maxConcurrentPulls,
	}
	if s.HeartbeatInterval > 0 {
		c.HeartbeatIntervalInSecond = int((s.HeartbeatInterval + time.Second - 1) / time.Second)
	}
	if s.HeartbeatTimeout > 0 {
		c.HeartbeatTimeoutInSecond = int((s.HeartbeatTimeout + time.Second - 1) / time.Second)
	}
	if s.FetchInterval > 0 {
		c.DataFetchIntervalInMs = s.FetchInterval.Milliseconds()
	}
	if s.Compression == "zstd" {
		c.CompressType = sls.Compress_ZSTD
	}
	switch s.Start.Position {
	case "end":
		c.CursorPosition = consumer.END_CURSOR
	case "time":
		c.CursorPosition = consumer.SPECIAL_TIMER_CURSOR
		c.CursorStartTime = s.Start.Time.Unix()
	default:
		c.CursorPosition = consumer.BEGIN_CURSOR
	}
	return c
}

// reconcile moves the consumer group's SLS checkpoints to the local ones
// where they differ: the local cursor is what is durably spooled, and the SLS
// one may lag it by up to CheckpointInterval (so pulling from it would spool
// data twice), or may even point at data that a crash left unspooled (never:
// invariant 1 keeps it behind). Forcing it is safe either way: behind means
// duplicates at worst, and the local cursor is never ahead of the spool.
func (w *Worker) reconcile() error {
	local, err := w.opts.Checkpoints.Cursors(w.src.Project, w.src.Logstore)
	if err != nil || len(local) == 0 {
		return err
	}
	remote, err := w.client.GetCheckpoint(w.src.Project, w.src.Logstore, w.src.ConsumerGroup)
	if err != nil {
		return fmt.Errorf("get consumer group checkpoints: %w", err)
	}
	have := map[int]string{}
	for _, cp := range remote {
		have[cp.ShardID] = cp.CheckPoint
	}
	for shard, c := range local {
		if c.Cursor == "" || have[shard] == c.Cursor {
			continue
		}
		if err := w.client.UpdateCheckpoint(w.src.Project, w.src.Logstore, w.src.ConsumerGroup,
			w.src.ConsumerName, shard, c.Cursor, true); err != nil {
			return fmt.Errorf("update checkpoint of shard %d: %w", shard, err)
		}
		w.log.Info("restored checkpoint from the local store", slog.Int("shard", shard))
	}
	return nil
}

func (w *Worker) processFunc(ctx context.Context, gate *pullGate) func(int, *sls.LogGroupList, consumer.CheckPointTracker) (string, error) {
	return func(shard int, lgl *sls.LogGroupList, t consumer.CheckPointTracker) (string, error) {
		err := w.processPull(ctx, shard, lgl, t, gate)
		if err == nil || ctx.Err() != nil {
			// Spooled, or the consumer is stopping: the pull's memory slot
			// is free. After any other failure the SDK calls Process again
			// with the same pull, which keeps its slot.
			gate.release(shard)
		}
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("spooling a pull failed; the SDK retries it and no checkpoint moves",
					slog.Int("shard", shard), slog.Any("err", err))
			}
			return "", err
		}
		return "", nil
	}
}

// process is the heart of the relay: spool, make durable, then checkpoint.
func (w *Worker) process(ctx context.Context, shard int, lgl *sls.LogGroupList, t consumer.CheckPointTracker) error {
	return w.processPull(ctx, shard, lgl, t, nil)
}

// processPull is process for a pull that gate may hold (see rawpull.go).
func (w *Worker) processPull(ctx context.Context, shard int, lgl *sls.LogGroupList, t consumer.CheckPointTracker, gate *pullGate) error {
	cur, next := t.GetCurrentCursor(), t.GetNextCursor()
	if next == "" || next == cur {
		return nil
	}
	var rec *spool.Record
	if sum, ok := gate.summary(shard, lgl); ok {
		rec = rawRecord(w.src.Project, w.src.Logstore, shard, cur, next, lgl.XXX_unrecognized, sum)
	} else {
		var err error
		if rec, err = newRecord(w.src.Project, w.src.Logstore, shard, cur, next, lgl); err != nil {
			return err
		}
	}
	if rec.Count > 0 {
		if err := w.spoolRecord(ctx, rec); err != nil {
			return err
		}
	}
	failpoint.Hit(failpoint.IngestAfterSync)
	key := checkpoint.ShardKey{Project: w.src.Project, Logstore: w.src.Logstore, Shard: shard}
	if err := w.opts.Checkpoints.Commit(key, checkpoint.Cursor{Cursor: next, MaxTime: rec.MaxTime, Updated: time.Now()}); err != nil {
		return fmt.Errorf("commit local checkpoint: %w", err)
	}
	w.mu.Lock()
	delete(w.shards, shard)
	w.mu.Unlock()
	failpoint.Hit(failpoint.IngestAfterCommit)
	if err := t.SaveCheckPoint(false); err != nil {
		return fmt.Errorf("save SLS checkpoint: %w", err)
	}
	if rec.Count > 0 {
		w.stats.pulls.Add(1)
		w.stats.logs.Add(int64(rec.Count))
		w.stats.bytes.Add(int64(len(rec.Payload)))
	}
	w.stats.lastCommit.Store(time.Now().UnixNano())
	return nil
}

// spoolRecord puts rec into every spool that does not hold it yet, then waits
// for all of them to be durable.
func (w *Worker) spoolRecord(ctx context.Context, rec *spool.Record) error {
	w.mu.Lock()
	p := w.shards[rec.Shard]
	if p == nil || p.cursor != rec.Cursor {
		p = &pending{cursor: rec.Cursor, put: make([]bool, len(w.opts.Spools))}
		w.shards[rec.Shard] = p
	}
	w.mu.Unlock()
	for i, sp := range w.opts.Spools {
		if p.put[i] {
			continue
		}
		r := *rec
		if err := sp.Put(ctx, &r); err != nil {
			return fmt.Errorf("spool %d: put: %w", i, err)
		}
		p.put[i] = true
	}
	failpoint.Hit(failpoint.IngestAfterPut)
	// Once written, the record will be delivered: finish the barrier (an
	// fsync, bounded) even if the relay is stopping, so that it is
	// checkpointed instead of pulled and delivered again after the restart.
	syncCtx := context.WithoutCancel(ctx)
	for i, sp := range w.opts.Spools {
		if err := sp.Sync(syncCtx); err != nil {
			return fmt.Errorf("spool %d: sync: %w", i, err)
		}
	}
	return nil
}
