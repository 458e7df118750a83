package slstest_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumerLibrary "github.com/aliyun/aliyun-log-go-sdk/consumer"

	"slsrelay/ingest/slstest"
)

// consumer runs one SDK consumer worker against s, recording what it reads.
type consumer struct {
	w    *consumerLibrary.ConsumerWorker
	logs *logBuffer
	cut  *atomic.Bool // when set, every request fails as if the host died
	wire *wireStats   // what its HTTP client saw

	batches     atomic.Int64 // process calls with logs
	read        atomic.Int64 // logs recorded
	uncommitted atomic.Int64 // logs recorded whose checkpoint could not be saved
	diedWith    atomic.Int64 // with dieAfter: distinct logs in seen when it died; -1 before
}

type consumerOpts struct {
	group, name string
	position    string
	startTime   int64
	secret      string
	logstore    string
	authV4      bool
	maxFetch    int // MaxFetchLogGroupCount; 0 = the SDK's 1000
	// onBatch, if set, runs on the shard worker after the n-th batch of
	// logs was recorded and its checkpoint saved (or not).
	onBatch func(c *consumer, n int64)
	// dieAfter, if > 0, cuts the consumer off after it recorded that many
	// batches, before their checkpoint is saved: its host dies mid-batch.
	dieAfter int64
	// slowFirstCheckpoint delays the answer to the consumer's first
	// GetCheckpoint (its first shard worker's first call) by that long.
	slowFirstCheckpoint time.Duration
}

// wireStats count the HTTP exchanges of requests a consumer's client sent
// since from.
type wireStats struct {
	from      atomic.Int64 // unix nanos; 0 = not counting
	sent      atomic.Int64 // requests sent
	answered  atomic.Int64 // requests answered (any HTTP status)
	failed    atomic.Int64 // requests that got no answer
	minNanos  atomic.Int64 // quickest answer (headers)
	bodyBytes atomic.Int64 // answer body bytes read
}

// reset starts counting afresh from now.
func (w *wireStats) reset() {
	w.sent.Store(0)
	w.answered.Store(0)
	w.failed.Store(0)
	w.minNanos.Store(math.MaxInt64)
	w.bodyBytes.Store(0)
	w.from.Store(time.Now().UnixNano())
}

// cutTransport fails every request while cut is set, and counts exchanges.
type cutTransport struct {
	cut  *atomic.Bool
	wire *wireStats
	next http.RoundTripper

	slowFirstCheckpoint time.Duration
	checkpointReads     *atomic.Int64
}

func (c cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.slowFirstCheckpoint > 0 && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/consumergroups/") &&
		c.checkpointReads.Add(1) == 1 {
		time.Sleep(c.slowFirstCheckpoint)
	}
	start := time.Now()
	counted := c.wire.from.Load() != 0 && start.UnixNano() >= c.wire.from.Load()
	if counted {
		c.wire.sent.Add(1)
	}
	if c.cut.Load() {
		if counted {
			c.wire.failed.Add(1)
		}
		return nil, errors.New("test: consumer host cut off")
	}
	resp, err := c.next.RoundTrip(r)
	if !counted {
		return resp, err
	}
	if err != nil {
		c.wire.failed.Add(1)
		return resp, err
	}
	c.wire.answered.Add(1)
	d := time.Since(start).Nanoseconds()
	for m := c.wire.minNanos.Load(); d < m && !c.wire.minNanos.CompareAndSwap(m, d); m = c.wire.minNanos.Load() {
	}
	resp.Body = countingBody{resp.Body, &c.wire.bodyBytes}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

var errHostDead = errors.New("test: consumer host is dead")

func startConsumer(t *testing.T, s *slstest.Server, seen *idSet, o consumerOpts) *consumer {
	t.Helper()
	if o.secret == "" {
		o.secret = slstest.DefaultAKSecret
	}
	if o.position == "" {
		o.position = consumerLibrary.BEGIN_CURSOR
	}
	if o.logstore == "" {
		o.logstore = logstore
	}
	c := &consumer{logs: &logBuffer{t: t}, cut: new(atomic.Bool), wire: new(wireStats)}
	c.diedWith.Store(-1)
	hc := &http.Client{Transport: cutTransport{c.cut, c.wire, s.HTTPClient().Transport, o.slowFirstCheckpoint, new(atomic.Int64)},
		Timeout: 10 * time.Second}
	cfg := consumerLibrary.LogHubConfig{
		Endpoint:                  s.Endpoint(),
		AccessKeyID:               slstest.DefaultAKID,
		AccessKeySecret:           o.secret,
		Project:                   project,
		Logstore:                  o.logstore,
		ConsumerGroupName:         o.group,
		ConsumerName:              o.name,
		CursorPosition:            o.position,
		CursorStartTime:           o.startTime,
		HeartbeatIntervalInSecond: 1,
		HeartbeatTimeoutInSecond:  3,
		DataFetchIntervalInMs:     20,
		MaxFetchLogGroupCount:     o.maxFetch,
		AutoCommitDisabled:        true,
		HTTPClient:                hc,
		Logger:                    c.logs,
		DisableRuntimeMetrics:     true,
	}
	if o.authV4 {
		cfg.AuthVersion, cfg.Region = sls.AuthV4, "cn-emulator"
	}
	c.w = consumerLibrary.InitConsumerWorkerWithCheckpointTracker(cfg,
		func(shard int, gl *sls.LogGroupList, tr consumerLibrary.CheckPointTracker) (string, error) {
			if c.cut.Load() {
				return "", errHostDead // a dead host processes nothing
			}
			n := seen.addList(gl)
			if n == 0 { // an empty pull at the end of the shard
				return "", tr.SaveCheckPoint(true)
			}
			b := c.batches.Add(1)
			c.read.Add(int64(n))
			if o.dieAfter > 0 && b == o.dieAfter {
				c.cut.Store(true)
				c.diedWith.Store(int64(seen.len()))
			}
			err := tr.SaveCheckPoint(true)
			if err != nil {
				c.uncommitted.Add(int64(n))
			}
			if o.onBatch != nil {
				o.onBatch(c, b)
			}
			return "", err
		})
	c.w.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer %s log:\n%s", o.name, c.logs)
		}
	})
	return c
}

func (c *consumer) stop() { c.cut.Store(false); c.w.StopAndWait() }

// TestConsumer_PutLogs100k writes 100,000 logs through the SDK's PutLogs
// and PostLogStoreLogs into 4 shards while two consumer groups read them
// with the SDK's consumer library: "one" with a single consumer, which must
// read every log exactly once, and "three" with three consumers, which
// must spread the shards, survive one of them dying mid-consumption (its
// heartbeat stops, no graceful shutdown) and read every log.
func TestConsumer_PutLogs100k(t *testing.T) {
	t.Parallel()
	const (
		total    = 100_000
		perGroup = 500
		maxFetch = 4 // groups a pull for group "three": many pulls a shard
		victim   = "c"
	)
	s := slstest.NewServer(t, slstest.Options{})
	seenOne, seenThree := newIDSet(), newIDSet()
	one := startConsumer(t, s, seenOne, consumerOpts{group: "one", name: "solo"})
	defer one.stop()

	three := map[string]*consumer{}
	for _, name := range []string{"a", "b", "c"} {
		o := consumerOpts{group: "three", name: name, maxFetch: maxFetch}
		if name == victim {
			o.dieAfter = 3
		}
		three[name] = startConsumer(t, s, seenThree, o)
	}
	defer func() {
		// Stopping the victim waits out the SDK's backoff on its failed
		// pulls; stop the consumers together.
		var wg sync.WaitGroup
		for _, c := range three {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop() }()
		}
		wg.Wait()
	}()
	perConsumer := func() map[string]int {
		per := map[string]int{}
		for _, c := range s.Assignments(project, logstore, "three") {
			per[c]++
		}
		return per
	}
	waitFor(t, 30*time.Second, "every consumer of group three holding a shard", func() bool {
		per := perConsumer()
		return per["a"] >= 1 && per["b"] >= 1 && per["c"] >= 1 && per["a"]+per["b"]+per["c"] == 4
	})
	victimShards := []int{}
	for shard, c := range s.Assignments(project, logstore, "three") {
		if c == victim {
			victimShards = append(victimShards, shard)
		}
	}
	t.Logf("group three before the failover: %v", s.Assignments(project, logstore, "three"))

	pstart := time.Now()
	ids := produce(t, s, slstest.KindWeb, total, perGroup, 1)
	t.Logf("produced in %v", time.Since(pstart))
	st := s.Stats()
	if st.Puts != total/perGroup || st.LogsWritten != total {
		t.Fatalf("stats after the SDK writes: %+v, want %d puts of %d logs", st, total/perGroup, total)
	}
	info, _ := s.Shards(project, logstore)
	for _, sh := range info {
		if sh.Logs < total/8 {
			t.Fatalf("shard %d got %d of %d logs: writes not spread (%+v)", sh.ID, sh.Logs, total, info)
		}
	}

	t.Run("one consumer reads every log exactly once", func(t *testing.T) {
		waitFor(t, 90*time.Second, "100000 logs consumed by group one", func() bool { return seenOne.len() >= len(ids) })
		if m := seenOne.missing(ids); len(m) > 0 {
			t.Fatalf("%d ids never read, e.g. %s", len(m), m[0])
		}
		if d := seenOne.duplicates(); d != 0 || one.read.Load() != int64(len(ids)) {
			t.Fatalf("%d logs read more than once (%d reads of %d logs)", d, one.read.Load(), len(ids))
		}
		// The consumer library asks for lz4: its pulls are answered with
		// stored blocks stitched together, not recompressed.
		if st, pulls := slstest.StitchedPulls(s), s.Stats().Pulls; st == 0 {
			t.Fatalf("none of %d pulls answered by stitching lz4 blocks", pulls)
		} else {
			t.Logf("%d of %d pulls so far stitched", st, pulls)
		}
	})
	t.Run("three consumers: shards spread, a dead one's move, no gap", func(t *testing.T) {
		killedAt := &three[victim].diedWith
		waitFor(t, 30*time.Second, "the victim dying", func() bool { return killedAt.Load() >= 0 })
		if k := killedAt.Load(); k >= int64(len(ids)) {
			t.Fatalf("the victim died after everything was read (%d logs)", k)
		}
		waitFor(t, 30*time.Second, "the victim's shards reassigned", func() bool {
			a := s.Assignments(project, logstore, "three")
			for _, c := range a {
				if c == victim {
					return false
				}
			}
			return len(a) == 4
		})
		waitFor(t, 90*time.Second, "100000 logs consumed by group three", func() bool { return seenThree.len() >= len(ids) })
		if m := seenThree.missing(ids); len(m) > 0 {
			t.Fatalf("%d ids never read, e.g. %s", len(m), m[0])
		}
		for name, c := range three {
			if c.read.Load() == 0 {
				t.Errorf("consumer %s read nothing", name)
			}
		}
		// Every duplicate is a log the victim read but could not commit
		// before it died: the consumer taking its shard over starts from
		// its last checkpoint.
		dups, lost := seenThree.duplicates(), three[victim].uncommitted.Load()
		t.Logf("failover: victim %s held shards %v, died after %d batches with %d of %d logs read by the group; "+
			"it read %d logs, %d uncommitted; %d duplicates; assignments now %v",
			victim, victimShards, three[victim].batches.Load(), killedAt.Load(), len(ids),
			three[victim].read.Load(), lost, dups, s.Assignments(project, logstore, "three"))
		if int64(dups) > lost {
			t.Fatalf("%d duplicates, more than the %d logs the victim read without committing", dups, lost)
		}
	})
	t.Run("a stopped consumer's shards move", func(t *testing.T) {
		three["b"].stop()
		delete(three, "b")
		waitFor(t, 30*time.Second, "all shards on a", func() bool {
			a := s.Assignments(project, logstore, "three")
			for _, c := range a {
				if c != "a" {
					return false
				}
			}
			return len(a) == 4
		})
	})
}

func TestConsumer_CheckpointsPersist(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	first, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 10_000, 50, 4)
	if err != nil {
		t.Fatal(err)
	}
	seen1 := newIDSet()
	c1 := startConsumer(t, s, seen1, consumerOpts{group: "g", name: "c1"})
	waitFor(t, 30*time.Second, "first batch consumed", func() bool { return seen1.len() >= len(first) })
	c1.stop()
	if cps := s.Checkpoints(project, logstore, "g"); len(cps) != 4 {
		t.Fatalf("checkpoints %v, want 4 shards", cps)
	}
	second, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 5_000, 50, 5)
	if err != nil {
		t.Fatal(err)
	}
	seen2 := newIDSet()
	c2 := startConsumer(t, s, seen2, consumerOpts{group: "g", name: "c2"})
	defer c2.stop()
	waitFor(t, 30*time.Second, "second batch consumed", func() bool { return seen2.len() >= len(second) })
	if m := seen2.missing(second); len(m) > 0 {
		t.Fatalf("%d new ids never read", len(m))
	}
	if n := seen2.len(); n != len(second) {
		t.Fatalf("restarted consumer read %d distinct logs, want only the %d new ones", n, len(second))
	}
}

func TestConsumer_CursorPosition(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	old, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 2_000, 50, 6)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Unix() + 1
	waitFor(t, 3*time.Second, "next second", func() bool { return time.Now().Unix() >= start })
	recent, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 1_000, 50, 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("BEGIN reads everything", func(t *testing.T) {
		t.Parallel()
		seen := newIDSet()
		c := startConsumer(t, s, seen, consumerOpts{group: "begin", name: "c"})
		defer c.stop()
		waitFor(t, 30*time.Second, "all logs", func() bool { return seen.len() >= len(old)+len(recent) })
	})
	t.Run("SPECIAL_TIMER reads from the time", func(t *testing.T) {
		t.Parallel()
		seen := newIDSet()
		c := startConsumer(t, s, seen, consumerOpts{group: "timer", name: "c", position: consumerLibrary.SPECIAL_TIMER_CURSOR, startTime: start})
		defer c.stop()
		waitFor(t, 30*time.Second, "recent logs", func() bool { return seen.len() >= len(recent) })
		waitFor(t, 30*time.Second, "checkpoints on every shard", func() bool { return len(s.Checkpoints(project, logstore, "timer")) == 4 })
		if n := seen.len(); n != len(recent) || len(seen.missing(recent)) > 0 {
			t.Fatalf("read %d logs, want exactly the %d received since %d", n, len(recent), start)
		}
	})
	t.Run("END reads only new logs", func(t *testing.T) {
		t.Parallel()
		s := slstest.NewServer(t, slstest.Options{})
		if _, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 1_000, 50, 6); err != nil {
			t.Fatal(err)
		}
		seen := newIDSet()
		c := startConsumer(t, s, seen, consumerOpts{group: "end", name: "c", position: consumerLibrary.END_CURSOR})
		defer c.stop()
		waitFor(t, 30*time.Second, "consumer positioned on every shard", func() bool { return len(s.Checkpoints(project, logstore, "end")) == 4 })
		g := slstest.NewGenerator(slstest.KindAudit, 8)
		var fresh []string
		for i := 0; i < 4; i++ {
			lg := g.LogGroup(10)
			for _, l := range lg.Logs {
				fresh = append(fresh, l.Contents[0].GetValue())
			}
			if err := s.Append(project, logstore, i, lg); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 30*time.Second, "new logs", func() bool { return seen.len() >= len(fresh) })
		if n := seen.len(); n != len(fresh) || len(seen.missing(fresh)) > 0 {
			t.Fatalf("read %d logs, want exactly the %d appended after start", n, len(fresh))
		}
	})
}

func TestConsumer_WrongSecret(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 1_000, 50, 9); err != nil {
		t.Fatal(err)
	}
	for _, v4 := range []bool{false, true} {
		name := "v1"
		if v4 {
			name = "v4"
		}
		t.Run(name, func(t *testing.T) {
			seen := newIDSet()
			c := startConsumer(t, s, seen, consumerOpts{group: "g-" + name, name: "c", secret: "wrong", authV4: v4})
			waitFor(t, 10*time.Second, "SignatureNotMatch in the consumer log", func() bool { return c.logs.contains("SignatureNotMatch") })
			c.stop()
			if seen.len() != 0 {
				t.Fatalf("consumer with a wrong secret read %d logs", seen.len())
			}
		})
	}
	if st := s.Stats(); st.LogsServed != 0 || st.AuthFailures == 0 {
		t.Fatalf("stats %+v: want no logs served and auth failures counted", st)
	}
}

func TestConsumer_SplitShard(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
	ids, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 20_000, 20, 10)
	if err != nil {
		t.Fatal(err)
	}
	seen := newIDSet()
	c := startConsumer(t, s, seen, consumerOpts{group: "g", name: "c"})
	defer c.stop()
	waitFor(t, 30*time.Second, "consumption under way", func() bool { return seen.len() > 1_000 })

	sdk := newClient(s)
	shards, err := sdk.SplitShard(project, logstore, 0, "20000000000000000000000000000000")
	if err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	if len(shards) != 3 || shards[0].Status != "readonly" || shards[1].InclusiveBeginKey != "00000000000000000000000000000000" ||
		shards[1].ExclusiveBeginKey != "20000000000000000000000000000000" || shards[2].ExclusiveBeginKey != "80000000000000000000000000000000" {
		t.Fatalf("split answer %+v", shards)
	}
	more, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 10_000, 20, 11)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, more...)
	waitFor(t, 60*time.Second, "every log consumed", func() bool { return seen.len() >= len(ids) })
	if m := seen.missing(ids); len(m) > 0 {
		t.Fatalf("%d ids never read", len(m))
	}
	info, _ := s.Shards(project, logstore)
	if len(info) != 4 || !info[0].ReadOnly || info[2].Logs == 0 || info[3].Logs == 0 {
		t.Fatalf("shards after split: %+v", info)
	}
	waitFor(t, 10*time.Second, "finished parent released", func() bool {
		_, held := s.Assignments(project, logstore, "g")[0]
		return !held
	})
}

// TestConsumer_SlowStart starts a consumer whose first shard worker is slow
// to reach its first read (as on a loaded machine): the emulator must not
// hand the consumer its other shards before that read, else their workers
// start together on an SDK client never used for a read and, under -race,
// the SDK's initHttpClient race fails the test (16 shards: the more workers
// start together, the likelier the race shows; with the emulator handing
// out every shard from the second heartbeat, as it did, about one run in
// three failed). It must still get and read every shard.
func TestConsumer_SlowStart(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 16}}})
	ids, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 1600, 10, 12)
	if err != nil {
		t.Fatal(err)
	}
	seen := newIDSet()
	c := startConsumer(t, s, seen, consumerOpts{group: "g", name: "c", slowFirstCheckpoint: 3 * time.Second})
	defer c.stop()
	waitFor(t, 60*time.Second, "every log consumed", func() bool { return seen.len() >= len(ids) })
	if m := seen.missing(ids); len(m) > 0 {
		t.Fatalf("%d ids never read", len(m))
	}
}
