package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/checkpoint"
	"slsrelay/internal/failpoint"
)

// Worker consumes one source: it keeps this relay's place in the consumer
// group by heartbeats and runs one ShardReader per shard the group assigns
// it (see the package documentation for the protocol).
type Worker struct {
	src    Source
	opts   Options
	log    *slog.Logger
	client sls.ClientInterface
	slots  chan struct{} // pulls held in memory, shared by the shards

	stats workerStats

	mu     sync.Mutex
	status workerStatus
	kinds  map[int]string    // shard → status ("readwrite"/"readonly") from ListShards
	ranges map[int][2]string // shard → [inclusive begin, exclusive end) hash keys from ListShards
	// first holds the shards of the first successful ListShards, made
	// before any shard loop starts (nil until then): the shards that
	// existed when this worker started. One missing from it was created
	// while the worker ran.
	first map[int]bool
}

type workerStats struct {
	pulls, logs, bytes, gaps atomic.Int64
	lastCommit               atomic.Int64 // unix nanoseconds
}

// workerStatus is the part of WorkerStats guarded by Worker.mu.
type workerStatus struct {
	consumer                 bool
	lastHeartbeat, lastPull  time.Time
	lastError, lastErrorKind string
	lastErrorAt              time.Time
	errors                   map[string]int64
	shards                   map[int]*ShardStats
	lag                      map[int]shardLag
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
	case src.MaxFetchGroups < 0 || src.MaxFetchGroups > 1000:
		return nil, fmt.Errorf("max fetch groups %d is not within 1..1000", src.MaxFetchGroups)
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
	if src.HeartbeatInterval <= 0 {
		src.HeartbeatInterval = 20 * time.Second
	}
	if src.HeartbeatTimeout <= 0 {
		src.HeartbeatTimeout = 3 * src.HeartbeatInterval
	}
	hc := src.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	c := sls.CreateNormalInterfaceV2(src.Endpoint, src.Credentials)
	c.SetHTTPClient(hc)
	if src.AuthVersion != "" {
		c.SetAuthVersion(src.AuthVersion)
	}
	if src.Region != "" {
		c.SetRegion(src.Region)
	}
	c.SetUserAgent(src.ConsumerGroup + "_" + src.ConsumerName)
	if sc, ok := c.(*sls.Client); ok {
		// Set here, before any request: the SDK fills these lazily and
		// unsynchronised on a client's first request. The SDK retries a
		// failed request for up to RetryTimeOut; ingest retries too, so
		// keep the SDK's part short enough for shutdown and error counts.
		sc.RequestTimeOut = hc.Timeout
		if sc.RequestTimeOut == 0 {
			sc.RequestTimeOut = 60 * time.Second
		}
		sc.RetryTimeOut = sdkRetryTimeout
	}
	w := &Worker{
		src:    src,
		opts:   opts,
		log:    opts.Logger.With(slog.String("project", src.Project), slog.String("logstore", src.Logstore)),
		client: c,
		slots:  make(chan struct{}, maxHeldPulls),
		kinds:  map[int]string{},
		ranges: map[int][2]string{},
	}
	w.status.errors = map[string]int64{}
	for _, k := range ErrorClasses {
		w.status.errors[k] = 0
	}
	w.status.shards = map[int]*ShardStats{}
	w.status.lag = map[int]shardLag{}
	return w, nil
}

// sdkRetryTimeout bounds the SDK's own retries of one request.
const sdkRetryTimeout = 15 * time.Second

// maxHeldPulls is how many pulls a source may hold in memory at once (each
// up to the 10 MiB raw SLS answers at most, plus its spool encoding while it
// is Put), whatever the number of shards: a shard takes a slot before its
// request and gives it back once the pull is durable, empty or dropped.
// make bench e2e (8 shards, loopback) ran as fast with 2, 3 or 4; peak RSS
// was about 150, 170 and 180 MiB.
const maxHeldPulls = 3

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
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &w.status
	s.Consumer, s.LastHeartbeat, s.LastPull = st.consumer, st.lastHeartbeat, st.lastPull
	s.LastError, s.LastErrorClass, s.LastErrorAt = st.lastError, st.lastErrorKind, st.lastErrorAt
	s.Errors = make(map[string]int64, len(st.errors))
	for k, v := range st.errors {
		s.Errors[k] = v
	}
	now := time.Now()
	for id, sh := range st.shards {
		c := *sh
		if lg, ok := st.lag[id]; ok && c.Held {
			c.LagSeconds = lg.seconds(now)
		}
		s.Shards = append(s.Shards, c)
	}
	slices.SortFunc(s.Shards, func(a, b ShardStats) int { return a.Shard - b.Shard })
	return s
}

// noteError counts an SLS error and makes it the last one.
func (w *Worker) noteError(err error) {
	class := classify(err, w.gapCodes())
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.errors[class]++
	w.status.lastError, w.status.lastErrorKind, w.status.lastErrorAt = err.Error(), class, time.Now()
}

func (w *Worker) gapCodes() []string {
	if len(w.opts.GapCodes) == 0 {
		return DefaultGapCodes
	}
	return w.opts.GapCodes
}

// classify sorts an SLS error into one of ErrorClasses.
//
// The SDK hands a request that got no SLS answer back as a client error:
// an *sls.Error with httpCode -1 and code "ClientError" whose message is
// the only trace of the cause (the transport's error text: dial, DNS, TLS,
// reset, timeout). When the SDK retried (reads on a transport error or a
// 5xx, writes on 500/502/503) until its retry time ran out, the message is
// "stopped retrying err: <last error>: context deadline exceeded", the
// last error being either the transport's text or the last SLS answer as
// JSON; an answer found there is classified as that answer.
func classify(err error, gapCodes []string) string {
	var se *sls.Error
	if errors.As(err, &se) && se.HTTPCode > 0 {
		return classifyAnswer(int(se.HTTPCode), se.Code, gapCodes)
	}
	var be *sls.BadResponseError
	if errors.As(err, &be) && be.HTTPCode > 0 {
		return classifyAnswer(be.HTTPCode, "", gapCodes)
	}
	msg := err.Error()
	if se != nil {
		msg = se.Message
	}
	if code, ecode, ok := embeddedAnswer(msg); ok {
		return classifyAnswer(code, ecode, gapCodes)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return "unreachable"
	}
	for _, s := range unreachableText {
		if strings.Contains(msg, s) {
			return "unreachable"
		}
	}
	return "other"
}

// unreachableText are parts of the transport errors (net, net/http,
// crypto/tls, crypto/x509) of a request that got no SLS answer.
var unreachableText = []string{
	"dial ", "lookup ", "no such host", "connection refused", "connection reset", "broken pipe",
	"network is unreachable", "no route to host", "timeout", "deadline exceeded", "tls:", "x509:",
	"certificate", "EOF", "server closed", "connection",
}

// classifyAnswer classifies an SLS answer by its HTTP status and error code.
// Quota and throttling come before auth: SLS answers an exceeded quota
// with 403 (ReadQuotaExceed, WriteQuotaExceed, ProjectQuotaExceed).
func classifyAnswer(httpCode int, code string, gapCodes []string) string {
	switch {
	case code != "" && slices.Contains(gapCodes, code):
		return "cursor_expired"
	case httpCode == 429 || strings.Contains(code, "Quota") || strings.Contains(code, "Throttl"):
		return "throttled"
	case httpCode == 401 || httpCode == 403 || strings.Contains(code, "Unauthorized") ||
		strings.Contains(code, "Signature") || strings.Contains(code, "AccessKey"):
		return "auth"
	case httpCode >= 500:
		return "server"
	}
	return "other"
}

// embeddedAnswer finds an SLS answer the SDK printed into a client error's
// text (an *sls.Error's or *sls.BadResponseError's JSON): its HTTP status
// and error code.
func embeddedAnswer(msg string) (httpCode int, code string, ok bool) {
	m := answerCodeRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, "", false
	}
	httpCode, err := strconv.Atoi(m[1])
	if err != nil || httpCode <= 0 {
		return 0, "", false
	}
	if c := errorCodeRE.FindStringSubmatch(msg); c != nil {
		code = c[1]
	}
	return httpCode, code, true
}

var (
	answerCodeRE = regexp.MustCompile(`"(?:httpCode|HTTPCode)":\s*(-?\d+)`)
	errorCodeRE  = regexp.MustCompile(`"errorCode":\s*"([^"]*)"`)
)

// Run consumes until ctx ends (nil). It heartbeats the consumer group
// every HeartbeatInterval, reporting the shards it still works on, starts a
// shard's loop when the group assigns it, and stops one (committing its
// durable position first) when the group takes it away. After ctx ends it
// waits at most ShutdownTimeout for the shards' loops to stop.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.ensureGroup(ctx); err != nil {
		return nil // ctx ended
	}
	w.log.Info("consuming", slog.String("group", w.src.ConsumerGroup), slog.String("consumer", w.src.ConsumerName))
	runs := map[int]*shardRun{}
	done := make(chan *shardRun, 16)
	quit := make(chan struct{}) // closed when Run returns: loops still running then are abandoned
	defer close(quit)
	finished := map[int]bool{} // read-only shards read to their end
	var lastOK time.Time
	hbLog := logEvery{every: 30 * time.Second}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			w.shutdown(runs, done)
			return nil
		case r := <-done:
			w.ended(runs, r, finished)
			// Tell the group at once (a finished parent frees its
			// children, a released shard its next consumer).
			for len(done) > 0 {
				w.ended(runs, <-done, finished)
			}
		case <-timer.C:
		}
		held := make([]int, 0, len(runs))
		for id := range runs {
			held = append(held, id)
		}
		slices.Sort(held)
		// The heartbeat and the shard list are SDK requests, which take
		// no context: a stop must not wait for their answers (see await).
		hb, ok := await(ctx, func() heartbeatAnswer {
			assigned, err := w.client.HeartBeat(w.src.Project, w.src.Logstore, w.src.ConsumerGroup, w.src.ConsumerName, held)
			if err == nil {
				w.refreshShards()
			}
			return heartbeatAnswer{assigned, err}
		})
		if !ok {
			w.shutdown(runs, done)
			return nil
		}
		assigned, err := hb.assigned, hb.err
		timer.Reset(w.src.HeartbeatInterval)
		if err != nil {
			w.noteError(err)
			if ok, n := hbLog.allow(); ok {
				w.log.Warn("heartbeat to the consumer group failed; retrying", slog.Int("suppressed", n), slog.Any("err", err))
			}
			if time.Since(lastOK) > w.src.HeartbeatTimeout+w.src.HeartbeatInterval {
				// The group has dropped this relay by now and may have
				// handed its shards to others: stop them, and commit
				// nothing more for them.
				w.setConsumer(false)
				for _, r := range runs {
					r.lose()
				}
			}
			continue
		}
		hbLog.reset()
		lastOK = time.Now()
		w.heartbeatOK(lastOK)
		want := map[int]bool{}
		started := false
		for _, id := range assigned {
			want[id] = true
			if _, ok := runs[id]; ok || finished[id] {
				continue
			}
			runs[id] = w.startShard(ctx, id, done, quit)
			started = true
		}
		if started {
			// The group hands shards over in steps (the emulator gives a
			// new consumer one shard until it has seen it read); ask again
			// soon rather than a whole interval later.
			timer.Reset(min(w.src.HeartbeatInterval, time.Second))
		}
		for id, r := range runs {
			if !want[id] {
				r.release()
			}
		}
		w.markHeld(want)
	}
}

// heartbeatAnswer is what a heartbeat request returned.
type heartbeatAnswer struct {
	assigned []int
	err      error
}

// await runs f, which makes SDK requests, and returns its result; or, as
// soon as ctx ends, false without waiting for it. The SDK takes no context:
// a request it sends ends only with an answer or the HTTP client's timeout
// (sls.timeout, a minute by default, longer than any shutdown_timeout), so
// the consumer-group requests of Run go through await, and f goes on in
// the background after a stop, its result dropped. f must be safe to run
// concurrently with the rest of the worker.
func await[T any](ctx context.Context, f func() T) (T, bool) {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v, true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}

// ended forgets a stopped shard loop.
func (w *Worker) ended(runs map[int]*shardRun, r *shardRun, finished map[int]bool) {
	if runs[r.shard] == r {
		delete(runs, r.shard)
	}
	if r.finished {
		finished[r.shard] = true
	}
}

// shutdown stops every shard loop and waits for them, at most
// ShutdownTimeout; a pull still in flight then is abandoned (nothing was
// checkpointed for it).
func (w *Worker) shutdown(runs map[int]*shardRun, done chan *shardRun) {
	defer w.setConsumer(false)
	for _, r := range runs {
		r.release()
	}
	timeout := time.NewTimer(w.opts.ShutdownTimeout)
	defer timeout.Stop()
	for len(runs) > 0 {
		select {
		case r := <-done:
			delete(runs, r.shard)
		case <-timeout.C:
			w.log.Warn("shards did not stop in time; abandoning their pulls (checkpoints stay at what is durably spooled)",
				slog.Int("shards", len(runs)), slog.Duration("timeout", w.opts.ShutdownTimeout))
			return
		}
	}
}

// ensureGroup creates the consumer group, retrying with backoff (up to 30 s
// apart) until SLS answers or ctx ends; an existing group is fine.
func (w *Worker) ensureGroup(ctx context.Context) error {
	cg := sls.ConsumerGroup{ConsumerGroupName: w.src.ConsumerGroup, Timeout: w.heartbeatTimeout()}
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err, ok := await(ctx, func() error { return w.client.CreateConsumerGroup(w.src.Project, w.src.Logstore, cg) })
		if !ok {
			return ctx.Err()
		}
		var se *sls.Error
		if err == nil || errors.As(err, &se) && se.Code == "ConsumerGroupAlreadyExist" {
			return nil
		}
		w.noteError(err)
		if attempt == 1 || attempt%10 == 0 {
			w.log.Warn("cannot create the consumer group yet; retrying", slog.String("group", w.src.ConsumerGroup),
				slog.Int("attempt", attempt), slog.Any("err", err))
		}
		if !sleepCtx(ctx, delay) {
			return ctx.Err()
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// heartbeatTimeout is the group's timeout in whole seconds.
func (w *Worker) heartbeatTimeout() int {
	return int((w.src.HeartbeatTimeout + time.Second - 1) / time.Second)
}

func (w *Worker) setConsumer(ok bool) {
	w.mu.Lock()
	w.status.consumer = ok
	w.mu.Unlock()
}

func (w *Worker) heartbeatOK(at time.Time) {
	w.mu.Lock()
	w.status.consumer, w.status.lastHeartbeat = true, at
	w.mu.Unlock()
}

// markHeld records which shards the group assigns this relay now.
func (w *Worker) markHeld(want map[int]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, sh := range w.status.shards {
		sh.Held = want[id]
	}
}

// refreshShards learns which shards are read-only, and when each was
// created; a failure keeps what was known.
func (w *Worker) refreshShards() {
	shards, err := w.client.ListShards(w.src.Project, w.src.Logstore)
	if err != nil {
		w.noteError(err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first == nil {
		w.first = make(map[int]bool, len(shards))
		for _, sh := range shards {
			w.first[sh.ShardID] = true
		}
	}
	for _, sh := range shards {
		w.kinds[sh.ShardID] = strings.ToLower(sh.Status)
		w.ranges[sh.ShardID] = [2]string{sh.InclusiveBeginKey, sh.ExclusiveBeginKey}
		if st := w.status.shards[sh.ShardID]; st != nil {
			st.ReadOnly = w.kinds[sh.ShardID] == "readonly"
		}
	}
}

func (w *Worker) readOnly(shard int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kinds[shard] == "readonly"
}

// createdWhileRunning reports whether shard appeared after this worker's
// first shard listing (a split or merge child): such a shard is read from
// its beginning whatever the start position, or its first logs would be
// skipped. Shards are told apart by that listing, not by their creation
// time: SLS's clock is not this host's, and a logstore created in the
// second the relay starts would count as new.
func (w *Worker) createdWhileRunning(shard int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first != nil && !w.first[shard]
}

// parentConsumed reports whether a read-only shard whose key range overlaps
// shard's (its split or merge parent) has a checkpoint, in the group or
// locally: the group has read the parent, so the child continues that
// stream and is read from its beginning (a split or merge while no relay
// ran). On a logstore the group never read, no parent has one.
func (w *Worker) parentConsumed(shard int, remote []*sls.ConsumerGroupCheckPoint, local map[int]checkpoint.Cursor) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.ranges[shard]
	if !ok {
		return false
	}
	consumed := map[int]bool{}
	for _, cp := range remote {
		if cp.CheckPoint != "" {
			consumed[cp.ShardID] = true
		}
	}
	for id, c := range local {
		if c.Cursor != "" {
			consumed[id] = true
		}
	}
	for id, pr := range w.ranges {
		if id != shard && w.kinds[id] == "readonly" && consumed[id] && pr[0] < r[1] && r[0] < pr[1] {
			return true
		}
	}
	return false
}

// shardRun is one held shard's loop.
type shardRun struct {
	shard    int
	cancel   context.CancelFunc
	lost     atomic.Bool // the group may have moved the shard: commit nothing more
	finished bool        // read-only shard read to its end (set before done)
}

// release stops the loop; it commits its durable position, then ends.
func (r *shardRun) release() { r.cancel() }

// lose stops the loop without any further SLS checkpoint.
func (r *shardRun) lose() { r.lost.Store(true); r.cancel() }

func (w *Worker) startShard(ctx context.Context, shard int, done chan<- *shardRun, quit <-chan struct{}) *shardRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &shardRun{shard: shard, cancel: cancel}
	w.mu.Lock()
	st := w.status.shards[shard]
	if st == nil {
		st = &ShardStats{Shard: shard, LagSeconds: -1, BehindBytes: -1}
		w.status.shards[shard] = st
	}
	st.Held = true
	st.ReadOnly = w.kinds[shard] == "readonly"
	w.mu.Unlock()
	go func() {
		defer func() {
			cancel()
			select {
			case done <- r:
			case <-quit:
			}
		}()
		w.runShard(ctx, r)
	}()
	return r
}

// errShardLost stops a shard's loop whose checkpoint the group refused
// (the shard was assigned elsewhere).
var errShardLost = errors.New("shard no longer held by this consumer")

// errShardFinished stops the loop of a read-only shard read to its end.
var errShardFinished = errors.New("read-only shard read to its end")

// shardLoop is the state of one shard's loop.
type shardLoop struct {
	w       *Worker
	run     *shardRun
	key     checkpoint.ShardKey
	durable string // last cursor durable in every spool
	maxTime int64  // newest __time__ spooled (for naming gaps)
	sls     string // last cursor committed to SLS by this loop
	// uncommitted counts the log groups durable since the last SLS commit.
	uncommitted int
	slsAt       time.Time
	lagAt       time.Time
	log         *slog.Logger
	cpLog       logEvery
}

func (w *Worker) runShard(ctx context.Context, r *shardRun) {
	l := &shardLoop{w: w, run: r, key: checkpoint.ShardKey{Project: w.src.Project, Logstore: w.src.Logstore, Shard: r.shard},
		log: w.log.With(slog.Int("shard", r.shard)), cpLog: logEvery{every: 30 * time.Second}}
	start, err := l.startCursor(ctx)
	if err != nil {
		return // ctx ended
	}
	l.durable, l.sls = start.cursor, start.sls
	l.maxTime = start.maxTime
	l.setCursor(start.cursor)
	l.log.Info("shard held", slog.String("from", start.from))
	reader := &ShardReader{
		Client: w.client, Project: w.src.Project, Logstore: w.src.Logstore, Shard: r.shard,
		Query: w.src.Query, Compression: w.src.Compression, MaxGroups: w.src.MaxFetchGroups,
		FetchInterval: w.src.FetchInterval, IdleFetchInterval: w.src.IdleFetchInterval, Spools: w.opts.Spools, Slots: w.slots, GapCodes: w.opts.GapCodes,
		Progress: l.progress, Fetched: l.fetched, Logger: l.log,
		OnError: func(err error) {
			var se *spoolError
			if !errors.As(err, &se) {
				w.noteError(err)
			}
		},
	}
	defer l.final()
	cursor := l.durable
	for {
		cursor, err = reader.Read(ctx, cursor, "")
		var ce *CursorExpiredError
		switch {
		case errors.Is(err, errShardFinished):
			r.finished = true
			l.log.Info("read-only shard read to its end")
			return
		case errors.As(err, &ce):
			w.noteError(err)
			next, ok := l.handleGap(ctx, ce)
			if !ok {
				return // ctx ended
			}
			cursor = next
		default: // ctx ended (released or stopping), or the shard was lost
			return
		}
	}
}

// progress is the reader's callback: the pull p is durable in every spool.
func (l *shardLoop) progress(p Pull) error {
	w := l.w
	now := time.Now()
	if p.Next != p.Cursor {
		if p.Count > 0 {
			l.maxTime = max(l.maxTime, p.MaxTime)
		}
		if err := w.opts.Checkpoints.Commit(l.key, checkpoint.Cursor{Cursor: p.Next, MaxTime: l.maxTime, Updated: now}); err != nil {
			// The pull is durable; the next commit carries a later cursor.
			// A crash before then pulls this range again (duplicates).
			if ok, n := l.cpLog.allow(); ok {
				l.log.Error("committing the local checkpoint failed", slog.Int("suppressed", n), slog.Any("err", err))
			}
		}
		failpoint.Hit(failpoint.IngestAfterCommit)
		l.durable = p.Next
		if p.Count > 0 {
			w.stats.pulls.Add(1)
			w.stats.logs.Add(int64(p.Count))
			w.stats.bytes.Add(int64(p.Bytes))
		}
		w.stats.lastCommit.Store(now.UnixNano())
	}
	l.noteLag(p, now)
	// The group's checkpoint trails the durable position by less than one
	// full pull (MaxFetchGroups groups) and by at most CheckpointInterval:
	// a shard moving to another relay after a crash is read again from
	// there, so that is what it can duplicate.
	l.uncommitted += p.Groups
	if l.uncommitted >= l.fullPull() || now.Sub(l.slsAt) >= w.src.CheckpointInterval {
		if err := l.commitSLS(false); err != nil {
			return err
		}
	}
	if p.AtEnd() && w.readOnly(l.run.shard) {
		if err := l.commitSLS(true); err != nil {
			return err
		}
		if l.sls == l.durable { // else the next pull at the end tries again
			return errShardFinished
		}
	}
	return nil
}

// noteLag updates the shard's statistics after pull p. The lag is kept as
// the receive time of the oldest data not yet spooled, so that it keeps
// growing while the shard waits (on a full spool, say) without new pulls.
func (l *shardLoop) noteLag(p Pull, now time.Time) {
	w := l.w
	var from time.Time // zero: keep
	caughtUp := p.AtEnd()
	if !caughtUp && now.Sub(l.lagAt) >= 10*time.Second {
		// Costs a request: at most every 10 s per busy shard. Between
		// two, the older time stands (the lag is overstated by at most
		// what was read since).
		l.lagAt = now
		if t, err := w.client.GetCursorTime(w.src.Project, w.src.Logstore, l.run.shard, p.Next); err == nil {
			from = t
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.lastPull = now
	w.status.lastError, w.status.lastErrorKind = "", "" // SLS answers again
	if st := w.status.shards[l.run.shard]; st != nil {
		st.LastPull, st.Cursor = now, l.durable
	}
	lg := w.status.lag[l.run.shard]
	switch {
	case caughtUp:
		lg = shardLag{caughtUp: true}
	case !from.IsZero():
		lg = shardLag{from: from}
	case lg.caughtUp:
		// Data again since the shard was caught up: it is at most as old
		// as that moment.
		lg = shardLag{from: lg.at}
	}
	lg.at = now
	w.status.lag[l.run.shard] = lg
}

// fetched notes a pull with data before it is spooled: from then on the
// shard's lag counts from that data at the latest, however long the spool
// makes it wait.
func (l *shardLoop) fetched(p Pull) {
	if p.AtEnd() || p.Count == 0 {
		return
	}
	w := l.w
	w.mu.Lock()
	lg, ok := w.status.lag[l.run.shard]
	w.mu.Unlock()
	if ok && !lg.caughtUp && !lg.from.IsZero() {
		return // already counting from older data
	}
	var from time.Time
	if ok && lg.caughtUp {
		from = lg.at // the data arrived after the shard was last caught up
	} else if t, err := w.client.GetCursorTime(w.src.Project, w.src.Logstore, l.run.shard, p.Cursor); err == nil {
		from = t
	} else {
		return
	}
	w.mu.Lock()
	w.status.lag[l.run.shard] = shardLag{from: from, at: time.Now()}
	w.mu.Unlock()
}

// shardLag is what a shard's LagSeconds is computed from.
type shardLag struct {
	caughtUp bool      // the last pull found no more data
	from     time.Time // else: SLS receive time of the oldest data not spooled
	at       time.Time // when this was learnt
}

// seconds is the lag now; -1 unknown.
func (s shardLag) seconds(now time.Time) float64 {
	switch {
	case s.caughtUp:
		return 0
	case s.from.IsZero():
		return -1
	}
	return max(now.Sub(s.from).Seconds(), 0)
}

func (l *shardLoop) setCursor(c string) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if st := l.w.status.shards[l.run.shard]; st != nil {
		st.Cursor = c
	}
}

// commitSLS writes the durable cursor as the shard's group checkpoint, if
// it moved. It never writes for a shard the loop may have lost, nor a
// cursor before the one it started from. final is the last write before
// the shard is released: if SLS has already assigned the shard to another
// consumer (which gets it only once this relay stops reporting it in its
// heartbeats), the write is forced, as the SDK's consumer library does,
// unless another consumer moved the checkpoint meanwhile.
func (l *shardLoop) commitSLS(final bool) error {
	w := l.w
	if l.durable == "" || l.durable == l.sls || l.run.lost.Load() {
		return nil
	}
	if before(l.durable, l.sls) {
		return nil // never backwards
	}
	l.slsAt = time.Now()
	err := w.client.UpdateCheckpoint(w.src.Project, w.src.Logstore, w.src.ConsumerGroup, w.src.ConsumerName,
		l.run.shard, l.durable, false)
	var se *sls.Error
	if err != nil && errors.As(err, &se) && (se.Code == "ConsumerNotMatch" || se.Code == "ConsumerNotExist") {
		if !final || !l.stillOurs() {
			l.log.Info("the group moved the shard to another consumer; stopping it", slog.String("code", se.Code))
			return errShardLost
		}
		err = w.client.UpdateCheckpoint(w.src.Project, w.src.Logstore, w.src.ConsumerGroup, w.src.ConsumerName,
			l.run.shard, l.durable, true)
	}
	if err != nil {
		w.noteError(err)
		if ok, n := l.cpLog.allow(); ok {
			l.log.Warn("committing the SLS checkpoint failed; the next one carries it", slog.Int("suppressed", n), slog.Any("err", err))
		}
		return nil
	}
	l.sls, l.uncommitted = l.durable, 0
	return nil
}

// fullPull is the most log groups one pull returns.
func (l *shardLoop) fullPull() int {
	if n := l.w.src.MaxFetchGroups; n > 0 {
		return n
	}
	return 1000
}

// stillOurs reports whether the shard's SLS checkpoint is still the one
// this loop wrote last (or none): nobody else has moved it.
func (l *shardLoop) stillOurs() bool {
	w := l.w
	cps, err := w.client.GetCheckpoint(w.src.Project, w.src.Logstore, w.src.ConsumerGroup)
	if err != nil {
		w.noteError(err)
		return false
	}
	for _, cp := range cps {
		if cp.ShardID == l.run.shard {
			return cp.CheckPoint == "" || cp.CheckPoint == l.sls || cp.Consumer == w.src.ConsumerName && !before(l.durable, cp.CheckPoint)
		}
	}
	return true
}

// final commits the durable position once the loop ends (released, stopping
// or finished), unless the shard may be lost.
func (l *shardLoop) final() {
	if err := l.commitSLS(true); err != nil {
		return
	}
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if st := l.w.status.shards[l.run.shard]; st != nil {
		st.Held = false
		st.Cursor = l.durable
	}
}

// startPoint is where a shard's loop begins.
type startPoint struct {
	cursor  string
	sls     string // the shard's SLS checkpoint, if any
	maxTime int64
	from    string // which one won, for the log
}

// startCursor decides where the shard is read from. The local checkpoint
// is what this relay durably spooled; the SLS checkpoint is the group's
// progress, written by whichever consumer held the shard last. Both are
// durable somewhere, so the later of the two wins: nothing before it is
// lost, and the SLS checkpoint never moves back. Where the cursors cannot be
// compared (not the service's sequence-number format), the SLS one wins
// unless this relay wrote it (then the local one is the same or later,
// because SLS is written after the local store).
func (l *shardLoop) startCursor(ctx context.Context) (startPoint, error) {
	w := l.w
	delay := 200 * time.Millisecond
	for {
		sp, err := l.tryStart()
		if err == nil {
			return sp, nil
		}
		w.noteError(err)
		if ok, n := l.cpLog.allow(); ok {
			l.log.Warn("cannot learn where to read the shard from yet; retrying", slog.Int("suppressed", n), slog.Any("err", err))
		}
		if !sleepCtx(ctx, delay) {
			return startPoint{}, ctx.Err()
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func (l *shardLoop) tryStart() (startPoint, error) {
	w := l.w
	shard := l.run.shard
	local, err := w.opts.Checkpoints.Cursors(w.src.Project, w.src.Logstore)
	if err != nil {
		return startPoint{}, fmt.Errorf("read local checkpoints: %w", err)
	}
	loc := local[shard]
	cps, err := w.client.GetCheckpoint(w.src.Project, w.src.Logstore, w.src.ConsumerGroup)
	if err != nil {
		return startPoint{}, fmt.Errorf("get consumer group checkpoints: %w", err)
	}
	var remote *sls.ConsumerGroupCheckPoint
	for _, cp := range cps {
		if cp.ShardID == shard && cp.CheckPoint != "" {
			remote = cp
		}
	}
	sp := startPoint{maxTime: loc.MaxTime}
	switch {
	case remote == nil && loc.Cursor == "":
		c, err := w.initialCursor(shard, cps, local)
		if err != nil {
			return startPoint{}, err
		}
		sp.cursor, sp.from = c, "start position"
	case remote == nil:
		sp.cursor, sp.from = loc.Cursor, "local checkpoint"
	case loc.Cursor == "":
		sp.cursor, sp.sls, sp.from = remote.CheckPoint, remote.CheckPoint, "group checkpoint"
	default:
		sp.sls = remote.CheckPoint
		cmp, ok := compareCursors(loc.Cursor, remote.CheckPoint)
		switch {
		case ok && cmp > 0, !ok && remote.Consumer == w.src.ConsumerName:
			sp.cursor, sp.from = loc.Cursor, "local checkpoint"
		default:
			sp.cursor, sp.from = remote.CheckPoint, "group checkpoint"
			if remote.Consumer != w.src.ConsumerName {
				sp.maxTime = 0 // not ours: our __time__ says nothing about it
			}
		}
	}
	return sp, nil
}

// initialCursor is where a shard no one has consumed begins: the start
// position for the shards the group has not read yet (every shard of a
// logstore on the group's first start), its beginning for a shard created
// from ones the group reads (a split or merge child).
func (w *Worker) initialCursor(shard int, remote []*sls.ConsumerGroupCheckPoint, local map[int]checkpoint.Cursor) (string, error) {
	from := "begin"
	switch w.src.Start.Position {
	case "end":
		from = "end"
	case "time":
		from = strconv.FormatInt(w.src.Start.Time.Unix(), 10)
	}
	if from != "begin" && (w.createdWhileRunning(shard) || w.parentConsumed(shard, remote, local)) {
		from = "begin"
	}
	c, err := w.client.GetCursor(w.src.Project, w.src.Logstore, shard, from)
	if err != nil {
		return "", fmt.Errorf("get %s cursor: %w", from, err)
	}
	return c, nil
}

// compareCursors orders two cursors of one shard where both are in the
// service's format (base64 of a decimal sequence number).
func compareCursors(a, b string) (int, bool) {
	x, okA := cursorSeq(a)
	y, okB := cursorSeq(b)
	if !okA || !okB {
		return 0, false
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// before reports whether a is known to be an earlier position than b.
func before(a, b string) bool {
	c, ok := compareCursors(a, b)
	return ok && c < 0
}

func cursorSeq(c string) (int64, bool) {
	if c == "" {
		return 0, false
	}
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil
}
