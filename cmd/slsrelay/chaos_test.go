package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
	"slsrelay/internal/failpoint"
	"slsrelay/spool"
)

// The fault campaign (docs/RELIABILITY.md). Each TestChaos_* scenario runs the built
// binary (compiled with -tags failpoints) as a subprocess against the
// in-process SLS emulator and HEC receiver, breaks something on purpose and
// reconciles by event id: ids written to SLS against ids the SIEM received
// and ids in the spools' dead-letter queues.
//
// By default (make test) every scenario runs a short version in seconds.
// CHAOS=full runs the full campaign (make chaos); CHAOS_REPORT=path then
// writes the report (docs/RELIABILITY.md) after the run.

var chaosFull = os.Getenv("CHAOS") == "full"

// pick returns short or full by mode.
func pick[T any](short, full T) T {
	if chaosFull {
		return full
	}
	return short
}

func TestMain(m *testing.M) {
	code := m.Run()
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		line, err := writeChaosReport(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos report:", err)
			code = 1
		} else if line != "" {
			fmt.Println(line)
		}
	}
	os.Exit(code)
}

// chaosParallel lets the short scenarios run side by side (go test
// -parallel, GOMAXPROCS by default), after the package's other tests: they
// wait on conditions with generous deadlines, never on the clock, so a
// shared machine only makes them slower. Full runs stay sequential, since
// their figures include timings and rates.
func chaosParallel(t *testing.T) {
	if !chaosFull {
		t.Parallel()
	}
}

// chaosBinary is slsrelay built with -tags failpoints: $SLSRELAY_FAILPOINT_BIN
// (make chaos), else built once per test run.
func chaosBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLSRELAY_FAILPOINT_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	fpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slsrelay-fp-")
		if err != nil {
			fpErr = err
			return
		}
		fpBin = filepath.Join(dir, "slsrelay")
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", fpBin, ".").CombinedOutput()
		if err != nil {
			fpErr = &buildError{err, out}
		}
	})
	if fpErr != nil {
		t.Fatalf("build slsrelay -tags failpoints: %v", fpErr)
	}
	return fpBin
}

var (
	fpOnce sync.Once
	fpBin  string
	fpErr  error
)

// chaosWorld is one scenario's emulator, receivers and the oracle: every
// event id written to SLS, and what arrived.
type chaosWorld struct {
	t      *testing.T
	sls    *slstest.Server
	hecs   []*hectest.Server
	dir    string
	shards int

	mu       sync.Mutex
	gen      *slstest.Generator
	next     int
	written  map[string]struct{}
	wroteAt  map[string]int64 // event id → when its Append returned, unix nanos
	wroteBy  map[string]int64 // event id → when its Append began
	shardOf  map[string]int   // event id → the shard it was written to
	shardIDs []int            // writable shards, round-robin
	recv     map[string]int   // event id → times received (all HECs)
	recvBy   []map[string]int // per HEC: event id → times received
	recvAt   map[string]int64 // event id → first arrival, unix nanos
	pending  int              // written ids not received yet
	start    time.Time
}

func newChaosWorld(t *testing.T, shards int, seed int64, hecs ...hectest.Options) *chaosWorld {
	t.Helper()
	w := &chaosWorld{t: t, dir: t.TempDir(), shards: shards, gen: slstest.NewGenerator(slstest.KindAudit, seed),
		written: map[string]struct{}{}, wroteAt: map[string]int64{}, wroteBy: map[string]int64{}, shardOf: map[string]int{}, recv: map[string]int{}, recvAt: map[string]int64{}, start: time.Now()}
	w.sls = slstest.NewServer(t, slstest.Options{
		Project:    testProject,
		Logstores:  []slstest.LogstoreOptions{{Name: testLogstore, Shards: shards}},
		AccessKeys: map[string]string{testAKID: testAKSecret},
	})
	if len(hecs) == 0 {
		hecs = []hectest.Options{{}}
	}
	for i, o := range hecs {
		if o.Token == "" {
			o.Token = testToken
		}
		// The oracle counts events as the receiver accepts them (before it
		// answers), with the arrival time taken there: no copies of the
		// whole history per poll, and no arrival times skewed by a slow
		// poller on a loaded machine.
		w.recvBy = append(w.recvBy, map[string]int{})
		o.Consume = func(evs []hectest.Event) { w.consume(i, evs) }
		w.hecs = append(w.hecs, hectest.NewServer(t, o))
	}
	for i := 0; i < shards; i++ {
		w.shardIDs = append(w.shardIDs, i)
	}
	return w
}

// write appends groups log groups of perGroup logs round-robin over the
// shards and returns how many logs it wrote.
func (w *chaosWorld) write(groups, perGroup int) int {
	n := 0
	for i := 0; i < groups; i++ {
		w.mu.Lock()
		lg := w.gen.LogGroup(perGroup)
		shard := w.shardIDs[w.next%len(w.shardIDs)]
		w.next++
		w.mu.Unlock()
		t0 := time.Now().UnixNano()
		if err := w.sls.Append(testProject, testLogstore, shard, lg); err != nil {
			// The shard was split or merged meanwhile: write elsewhere.
			shard = w.firstShardAfterRefresh()
			if shard < 0 || w.sls.Append(testProject, testLogstore, shard, lg) != nil {
				w.t.Errorf("append: %v", err)
				return n
			}
		}
		now := time.Now().UnixNano()
		w.mu.Lock()
		for _, l := range lg.Logs {
			id := logField(l, "event_id")
			if _, dup := w.written[id]; !dup && w.recv[id] == 0 {
				w.pending++
			}
			w.written[id] = struct{}{}
			w.wroteAt[id] = now
			w.wroteBy[id] = t0
			w.shardOf[id] = shard
		}
		w.mu.Unlock()
		n += len(lg.Logs)
	}
	return n
}

// refreshShards points the writer at the logstore's writable shards.
func (w *chaosWorld) refreshShards() error {
	shs, err := w.sls.Shards(testProject, testLogstore)
	if err != nil {
		return err
	}
	var ids []int
	for _, sh := range shs {
		if !sh.ReadOnly {
			ids = append(ids, sh.ID)
		}
	}
	w.mu.Lock()
	w.shardIDs = ids
	w.mu.Unlock()
	return nil
}

// firstShardAfterRefresh refreshes the writable shards and returns the
// first; -1 if that failed.
func (w *chaosWorld) firstShardAfterRefresh() int {
	if w.refreshShards() != nil {
		return -1
	}
	return w.firstShard()
}

func (w *chaosWorld) firstShard() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.shardIDs[0]
}

// load writes a group of perGroup logs every period until stop is called;
// stop returns once the writer has stopped.
func (w *chaosWorld) load(perGroup int, period time.Duration) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tk.C:
				w.write(1, perGroup)
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	w.t.Cleanup(stop)
	return stop
}

// consume records the events HEC i accepted, as it accepts them.
func (w *chaosWorld) consume(i int, evs []hectest.Event) {
	now := time.Now().UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range evs {
		id := eventID(ev.Event)
		if id == "" {
			continue
		}
		if w.recv[id] == 0 {
			w.recvAt[id] = now
			if _, ok := w.written[id]; ok {
				w.pending--
			}
		}
		w.recv[id]++
		w.recvBy[i][id]++
	}
}

func eventID(raw []byte) string {
	// The generator's event_id is the first field; avoid a full decode.
	const key = `"event_id":"`
	s := string(raw)
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	s = s[i+len(key):]
	j := strings.IndexByte(s, '"')
	if j < 0 {
		return ""
	}
	return s[:j]
}

// missing is how many written ids have not arrived (dead letters not
// subtracted).
func (w *chaosWorld) missing() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// waitAll polls until every written id arrived or was dead-lettered in
// one of dataDirs, or timeout; it reports whether it got there.
func (w *chaosWorld) waitAll(timeout time.Duration, dataDirs ...string) bool {
	deadline := time.Now().Add(timeout)
	for {
		m := w.missing()
		if m == 0 {
			return true
		}
		if dl := deadLetterIDs(dataDirs...); len(dl) > 0 {
			if w.reconcile(dataDirs...).Lost == 0 {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tally is one reconciliation by event id.
type tally struct {
	Written, Unique, Duplicates, DeadLettered, Lost int
	// Quarantined counts dead-letter entries holding raw corrupt bytes (no
	// event ids can be read from them) and QuarantinedBytes their size.
	Quarantined, QuarantinedBytes int
	Reasons                       map[string]int // dead-lettered events by reason class
	LostIDs                       []string       // the first few
}

func (w *chaosWorld) reconcile(dataDirs ...string) tally {
	dl, reasons, q, qb := deadLetters(dataDirs...)
	w.mu.Lock()
	defer w.mu.Unlock()
	tl := tally{Written: len(w.written), Reasons: reasons, Quarantined: q, QuarantinedBytes: qb}
	for id := range w.recv {
		if _, ok := w.written[id]; ok {
			tl.Unique++
		}
	}
	// A duplicate is a second copy at the same sink.
	for _, by := range w.recvBy {
		for id, n := range by {
			if _, ok := w.written[id]; ok {
				tl.Duplicates += n - 1
			}
		}
	}
	for id := range w.written {
		if w.recv[id] > 0 {
			continue
		}
		if dl[id] {
			tl.DeadLettered++
			continue
		}
		tl.Lost++
		if len(tl.LostIDs) < 5 {
			tl.LostIDs = append(tl.LostIDs, id)
		}
	}
	return tl
}

func deadLetterIDs(dataDirs ...string) map[string]bool {
	ids, _, _, _ := deadLetters(dataDirs...)
	return ids
}

// deadLetters reads every sink's dead-letter queue under the data dirs.
func deadLetters(dataDirs ...string) (ids map[string]bool, reasons map[string]int, raw, rawBytes int) {
	ids, reasons = map[string]bool{}, map[string]int{}
	for _, dd := range dataDirs {
		sinks, _ := filepath.Glob(filepath.Join(dd, "spool", "*"))
		for _, sd := range sinks {
			for d, err := range spool.ReadDeadLetters(sd) {
				if err != nil {
					break
				}
				class, _, _ := strings.Cut(d.Reason, ":")
				if d.Record == nil {
					raw++
					rawBytes += int(d.RawBytes)
					reasons["quarantined: "+class]++
					continue
				}
				evs, err := deliver.Decode(d.Record)
				if err != nil {
					continue
				}
				for _, ev := range evs {
					if id, ok := ev.Field("event_id"); ok {
						ids[id] = true
						reasons[class]++
					}
				}
			}
		}
	}
	return ids, reasons, raw, rawBytes
}

// chaosConfig is what a scenario varies in the relay's config.
type chaosConfig struct {
	DataDir         string
	MaxFetch        int           // log groups per pull (default 10)
	Group           string        // consumer group ("" = default)
	DrainOnly       bool          // no sources
	RateLimit       float64       // events/s per sink, 0 = none
	Ack             bool          // HEC indexer acknowledgement
	AckTimeout      time.Duration // when Ack
	SpoolMax        string        // default 256MiB
	SegmentBytes    string        // default 1MiB
	ShutdownTimeout time.Duration // default 10s
	MetricsAddr     string        // "" = off
	Checkpoint      time.Duration // checkpoint interval, default 500ms
	HECTimeout      time.Duration // one HEC attempt, 0 = default
	Sinks           []int         // the world's HECs used as sinks (nil = all)
	MinFree         string        // spool.min_free_bytes, default 16MiB
	ExtraSinks      string        // raw YAML items appended to sinks:
}

// writeConfig writes a relay config for c under the world's dir and
// returns its path. Every HEC of the world is one sink.
func (w *chaosWorld) writeConfig(name string, c chaosConfig) string {
	w.t.Helper()
	if c.MaxFetch == 0 {
		c.MaxFetch = 10
	}
	if c.SpoolMax == "" {
		c.SpoolMax = "256MiB"
	}
	if c.SegmentBytes == "" {
		c.SegmentBytes = "1MiB"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.MinFree == "" {
		c.MinFree = "16MiB"
	}
	if c.Checkpoint == 0 {
		c.Checkpoint = 500 * time.Millisecond
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nlog: {level: info, format: json}\nshutdown_timeout: %s\n", c.DataDir, c.ShutdownTimeout)
	if c.MetricsAddr != "" {
		fmt.Fprintf(&b, "metrics: {listen: %q}\n", c.MetricsAddr)
	}
	fmt.Fprintf(&b, "sls:\n  endpoint: %s\n  connect_to: %s\n  access_key_id: %s\n  access_key_secret: %s\n",
		w.sls.Endpoint(), w.sls.Addr(), testAKID, testAKSecret)
	if c.DrainOnly {
		b.WriteString("drain_only: true\n")
	} else {
		fmt.Fprintf(&b, "sources:\n  - project: %s\n    logstore: %s\n    heartbeat_interval: 1s\n    fetch_interval: 50ms\n    max_fetch_log_groups: %d\n    checkpoint_interval: %s\n",
			testProject, testLogstore, c.MaxFetch, c.Checkpoint)
		if c.Group != "" {
			fmt.Fprintf(&b, "    consumer_group: %s\n", c.Group)
		}
	}
	fmt.Fprintf(&b, "spool: {max_bytes: %s, min_free_bytes: %s, segment_bytes: %s}\nsinks:\n", c.SpoolMax, c.MinFree, c.SegmentBytes)
	for i, h := range w.hecs {
		if c.Sinks != nil && !slices.Contains(c.Sinks, i) {
			continue
		}
		fmt.Fprintf(&b, "  - name: hec%d\n    type: hec\n", i)
		if c.RateLimit > 0 {
			fmt.Fprintf(&b, "    rate_limit: %g\n", c.RateLimit)
		}
		fmt.Fprintf(&b, "    hec:\n      url: %s\n      token: %s\n", h.URL(), testToken)
		if c.HECTimeout > 0 {
			fmt.Fprintf(&b, "      timeout: %s\n", c.HECTimeout)
		}
		if c.Ack {
			fmt.Fprintf(&b, "      ack: {enabled: true, poll_interval: 100ms, timeout: %s}\n", c.AckTimeout)
		}
	}
	b.WriteString(c.ExtraSinks)
	path := filepath.Join(w.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// proc is one relay subprocess.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	state   *os.ProcessState
	log     string
	cfg     string
	logFrom int64 // the log's size when the process started
}

// startProc runs `slsrelay run --config cfg` with extra environment
// (e.g. the failpoint), appending its output to log. The process is killed
// by PID when the test ends.
func startProc(t *testing.T, bin, cfg, log string, env ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	from := logSize(log)
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, started: time.Now(), done: make(chan struct{}), log: log, cfg: cfg, logFrom: from}
	go func() { _ = cmd.Wait(); p.state = cmd.ProcessState; close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and reaps the process. Signals go through the
// os.Process (a pidfd on Linux), never syscall.Kill of the PID: a test
// signalling a relay it already reaped would hit whichever process got
// that PID next, on a busy machine another test's relay.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// up waits until the relay logged that it started (its line names its
// config file, which tells it from other relays sharing the log) or exited,
// at most timeout; it reports whether it started.
func (p *proc) up(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(p.log); err == nil && int64(len(b)) > p.logFrom {
			for _, l := range strings.Split(string(b[p.logFrom:]), "\n") {
				if strings.Contains(l, "relay started") && strings.Contains(l, p.cfg) {
					return true
				}
			}
		}
		if p.exited() || time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// term sends SIGTERM and waits up to timeout; it returns how long the exit
// took and whether it was clean (status 0). It signals only once the relay
// said it started (up, at most timeout): before its main function has
// installed its handler (the runtime and package initialisation take tens of
// milliseconds, more on a loaded machine) a SIGTERM kills it with the
// default action, which is no stop of the relay's. A stop that is not clean
// explains itself in the test's log: the exit status and time, and what the
// relay wrote from shortly before the signal on. A relay still running at
// the timeout is sent SIGQUIT first, so that the Go runtime writes every
// goroutine's stack into its log (it does not handle SIGQUIT), and only then
// SIGKILL.
func (p *proc) term(timeout time.Duration) (time.Duration, bool) {
	if !p.up(timeout) && !p.exited() {
		p.t.Logf("the relay (pid %d) had not said it started %s after its start; signalling it anyway", p.cmd.Process.Pid, time.Since(p.started).Round(time.Millisecond))
	}
	t0 := time.Now()
	from := logSize(p.log)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		took := time.Since(t0)
		if p.state.ExitCode() != 0 {
			p.t.Logf("SIGTERM: the relay (pid %d) exited after %s with %v; its log from just before the signal:\n%s",
				p.cmd.Process.Pid, took.Round(time.Millisecond), p.state, logSince(p.log, from, 20, stopLogLines))
			return took, false
		}
		return took, true
	case <-time.After(timeout):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
		p.kill()
		p.t.Logf("SIGTERM: the relay (pid %d) had not exited after %s (then SIGQUIT for its goroutine stacks, then SIGKILL: %v); its log from just before the SIGTERM:\n%s",
			p.cmd.Process.Pid, timeout, p.state, logSince(p.log, from, 20, stopLogLines))
		return time.Since(t0), false
	}
}

// stopLogLines caps the log lines term prints after the signal (a goroutine
// dump of the relay is a few hundred).
const stopLogLines = 2000

// logSize is the size of the file at path (0 if unreadable).
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the last before lines of the file at path written before
// offset from, and at most after lines written since (the first and last
// halves when there are more).
func logSince(path string, from int64, before, after int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	from = min(max(from, 0), int64(len(b)))
	split := func(s string) []string {
		s = strings.TrimRight(s, "\n")
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	pre, post := split(string(b[:from])), split(string(b[from:]))
	pre = pre[max(0, len(pre)-before):]
	if len(post) > after {
		n := len(post) - after
		post = slices.Concat(post[:after/2], []string{fmt.Sprintf("… (%d lines left out) …", n)}, post[len(post)-after/2:])
	}
	return strings.Join(pre, "\n") + "\n--- signal sent here ---\n" + strings.Join(post, "\n")
}

// killedBySignal reports whether the process ended by SIGKILL.
func (p *proc) killedBySignal() bool {
	if !p.exited() || p.state == nil {
		return false
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// freeAddr returns a loopback address free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// metric sums the samples of a metric from a relay's /metrics (-1 when
// unreachable).
func metric(addr, name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != ' ' && l[len(name)] != '{') {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// sinkMetric is a metric's sample for one sink (-1 when unreachable or
// absent).
func sinkMetric(addr, name, sink string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	prefix := name + "{"
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, prefix) && strings.Contains(l, `sink="`+sink+`"`) {
			if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// failpointEnv arms a named failpoint at its n-th hit.
func failpointEnv(name string, n int) string {
	return fmt.Sprintf("%s=%s=%d", failpoint.EnvVar, name, n)
}

// percentile of sorted durations (p in 0..100).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p / 100)
	return d[i]
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
