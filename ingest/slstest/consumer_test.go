package slstest_test

import (
	"errors"
	"net/http"
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
}

type consumerOpts struct {
	group, name string
	position    string
	startTime   int64
	secret      string
	logstore    string
	authV4      bool
}

// cutTransport fails every request while cut is set.
type cutTransport struct {
	cut  *atomic.Bool
	next http.RoundTripper
}

func (c cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("test: consumer host cut off")
	}
	return c.next.RoundTrip(r)
}

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
	c := &consumer{logs: &logBuffer{t: t}, cut: new(atomic.Bool)}
	hc := &http.Client{Transport: cutTransport{c.cut, s.HTTPClient().Transport}, Timeout: 10 * time.Second}
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
			seen.addList(gl)
			return "", tr.SaveCheckPoint(true)
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

func TestConsumer_ReadsEveryLogOnce(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	ids, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 100_000, 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := newIDSet()
	c := startConsumer(t, s, seen, consumerOpts{group: "g", name: "c1"})
	defer c.stop()
	waitFor(t, 60*time.Second, "100000 logs consumed", func() bool { return seen.len() >= len(ids) })
	if m := seen.missing(ids); len(m) > 0 {
		t.Fatalf("%d ids never read, e.g. %s", len(m), m[0])
	}
	if d := seen.duplicates(); d != 0 {
		t.Fatalf("%d logs read more than once", d)
	}
	if got := s.Stats().LogsServed; got != int64(len(ids)) {
		t.Errorf("Stats.LogsServed = %d, want %d", got, len(ids))
	}
}

func TestConsumer_Failover(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 6}}})
	ids, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 30_000, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	seen := newIDSet()
	var cs []*consumer
	for _, name := range []string{"a", "b", "c"} {
		cs = append(cs, startConsumer(t, s, seen, consumerOpts{group: "g", name: name}))
	}
	defer func() {
		for _, c := range cs {
			c.stop()
		}
	}()
	t.Run("shards are spread over the consumers", func(t *testing.T) {
		waitFor(t, 20*time.Second, "2 shards for each consumer", func() bool {
			per := map[string]int{}
			for _, c := range s.Assignments(project, logstore, "g") {
				per[c]++
			}
			return per["a"] == 2 && per["b"] == 2 && per["c"] == 2
		})
		waitFor(t, 30*time.Second, "first batch consumed", func() bool { return seen.len() >= len(ids) })
	})
	t.Run("a silent consumer's shards move", func(t *testing.T) {
		cs[2].cut.Store(true) // c's host dies: no heartbeat, no commit
		more, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 30_000, 100, 3)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, more...)
		waitFor(t, 30*time.Second, "c's shards reassigned", func() bool {
			a := s.Assignments(project, logstore, "g")
			for _, c := range a {
				if c == "c" {
					return false
				}
			}
			return len(a) == 6
		})
		waitFor(t, 30*time.Second, "all logs consumed", func() bool { return seen.len() >= len(ids) })
		if m := seen.missing(ids); len(m) > 0 {
			t.Fatalf("%d ids never read", len(m))
		}
		t.Logf("duplicates after failover: %d", seen.duplicates())
	})
	t.Run("a stopped consumer's shards move", func(t *testing.T) {
		cs[1].stop()
		cs = cs[:1]
		waitFor(t, 30*time.Second, "all shards on a", func() bool {
			a := s.Assignments(project, logstore, "g")
			for _, c := range a {
				if c != "a" {
					return false
				}
			}
			return len(a) == 6
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
