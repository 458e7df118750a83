package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"

	"slsrelay/checkpoint"
	"slsrelay/deliver"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

func generatedList(t testing.TB, kind slstest.Kind, groups, perGroup int, seed int64) (*sls.LogGroupList, []byte) {
	t.Helper()
	g := slstest.NewGenerator(kind, seed)
	lgl := &sls.LogGroupList{}
	for range groups {
		lgl.LogGroups = append(lgl.LogGroups, g.LogGroup(perGroup))
	}
	b, err := lgl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return lgl, b
}

// A raw pull makes the same record as the decoded one, payload included,
// without copying the bytes.
func TestNewRecord_RawMatchesDecoded(t *testing.T) {
	for _, kind := range []slstest.Kind{slstest.KindAudit, slstest.KindWeb, slstest.KindOdd} {
		lgl, b := generatedList(t, kind, 3, 40, 7)
		// Spread the times so that min and max differ.
		for i, lg := range lgl.LogGroups {
			for k, l := range lg.Logs {
				tm := uint32(1700000000 + (i*31+k*17)%97)
				l.Time = &tm
			}
		}
		b, _ = lgl.Marshal()
		want, err := newRecord("p", "l", 2, "c1", "c2", lgl)
		if err != nil {
			t.Fatal(err)
		}
		got, err := newRecord("p", "l", 2, "c1", "c2", &sls.LogGroupList{XXX_unrecognized: b})
		if err != nil {
			t.Fatal(err)
		}
		if got.Count != want.Count || got.MinTime != want.MinTime || got.MaxTime != want.MaxTime || got.Count != 120 {
			t.Errorf("%s: raw record count %d time [%d,%d], decoded %d [%d,%d]", kind,
				got.Count, got.MinTime, got.MaxTime, want.Count, want.MinTime, want.MaxTime)
		}
		if !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("%s: raw payload differs from the re-encoded pull", kind)
		}
		if &got.Payload[0] != &b[0] {
			t.Errorf("%s: raw payload was copied", kind)
		}
	}
}

// scanLogGroupList accepts exactly what the spool's reader (deliver.Decode)
// decodes, with the same log count: checked on truncations and byte flips
// of generated lists.
func TestScanLogGroupList_AgreesWithDecode(t *testing.T) {
	_, odd := generatedList(t, slstest.KindOdd, 2, 3, 3)
	_, small := generatedList(t, slstest.KindWeb, 1, 2, 4)
	check := func(t *testing.T, p []byte) {
		t.Helper()
		sum, serr := scanLogGroupList(p)
		evs, derr := deliver.Decode(&spool.Record{Payload: p})
		if (serr == nil) != (derr == nil) {
			t.Fatalf("scan error %v, decode error %v (payload % x)", serr, derr, p[:min(len(p), 64)])
		}
		if serr == nil && sum.count != len(evs) {
			t.Fatalf("scan counted %d logs, decode %d", sum.count, len(evs))
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	check(t, odd)
	for range 200 {
		check(t, odd[:rnd.IntN(len(odd))])
	}
	for i := 0; i <= len(small); i++ {
		check(t, small[:i])
	}
	for range 5000 {
		p := bytes.Clone(small)
		for range 1 + rnd.IntN(3) {
			p[rnd.IntN(len(p))] = byte(rnd.IntN(256))
		}
		check(t, p)
	}
	if _, err := scanLogGroupList(nil); err != nil {
		t.Errorf("empty list: %v", err)
	}
}

func TestUseRawPulls_Layout(t *testing.T) {
	cw := consumer.InitConsumerWorkerWithCheckpointTracker(consumer.LogHubConfig{
		Endpoint: "127.0.0.1:1", Project: "p", Logstore: "l", ConsumerGroupName: "g", ConsumerName: "c",
		CredentialsProvider: sls.NewStaticCredentialsProvider("id", "secret", ""),
		Logger:              newSDKLogger(discardLogger()),
	}, func(int, *sls.LogGroupList, consumer.CheckPointTracker) (string, error) { return "", nil })
	if !settleSDKClient(cw, time.Second) {
		t.Fatal("settleSDKClient failed")
	}
	if !useRawPulls(cw, newPullGate(context.Background(), 1)) {
		t.Fatal("useRawPulls found no SDK client to wrap inside the consumer worker (SDK layout changed?)")
	}
	f, _ := sdkClientField(cw)
	if _, ok := f.Interface().(*rawPulls); !ok {
		t.Fatalf("SDK client is %T after useRawPulls", f.Interface())
	}
}

// blockingSpool collects records; Put blocks while block is set.
type blockingSpool struct {
	mu      sync.Mutex
	records []*spool.Record
	block   chan struct{} // nil: no blocking
	puts    atomic.Int64
}

func (s *blockingSpool) Put(ctx context.Context, r *spool.Record) error {
	s.puts.Add(1)
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.records = append(s.records, r)
	s.mu.Unlock()
	return nil
}

func (s *blockingSpool) Sync(context.Context) error { return nil }

func (s *blockingSpool) logs() (n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.records {
		n += r.Count
	}
	return n
}

func emulatorWorker(t *testing.T, shards, logs int, sp Spool) (*Worker, *slstest.Server) {
	t.Helper()
	srv := slstest.NewServer(t, slstest.Options{
		Project:    "p",
		Logstores:  []slstest.LogstoreOptions{{Name: "l", Shards: shards}},
		AccessKeys: map[string]string{"id": "secret"},
	})
	if _, err := slstest.Seed(srv, "p", "l", slstest.KindAudit, logs, 50, 1); err != nil {
		t.Fatal(err)
	}
	cps := &fakeCheckpoints{j: &journal{}, commits: map[int]checkpoint.Cursor{}}
	w, err := newWorker(Source{Project: "p", Logstore: "l", Endpoint: srv.Endpoint(), ConsumerGroup: "g", ConsumerName: "c",
		Credentials:       sls.NewStaticCredentialsProvider("id", "secret", ""),
		HTTPClient:        NewHTTPClient(HTTPOptions{ConnectTo: srv.Addr()}),
		HeartbeatInterval: time.Second, FetchInterval: 50 * time.Millisecond, MaxFetchGroups: 4},
		Options{Spools: []Spool{sp}, Checkpoints: &lockedCheckpoints{c: cps}, Logger: slog.New(slog.DiscardHandler),
			ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return w, srv
}

type lockedCheckpoints struct {
	mu sync.Mutex
	c  *fakeCheckpoints
}

func (l *lockedCheckpoints) Commit(k checkpoint.ShardKey, c checkpoint.Cursor) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Commit(k, c)
}

func (l *lockedCheckpoints) Cursors(p, s string) (map[int]checkpoint.Cursor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Cursors(p, s)
}

func (l *lockedCheckpoints) RecordGap(g checkpoint.Gap) error { return nil }

// Through the consumer library against the emulator: every log arrives, in
// records whose payloads are the pulled lists.
func TestWorker_RawPullsEndToEnd(t *testing.T) {
	sp := &blockingSpool{}
	const logs = 3000
	w, _ := emulatorWorker(t, 3, logs, sp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for sp.logs() < logs && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := sp.logs(); got != logs {
		t.Fatalf("spooled %d logs, want %d", got, logs)
	}
	ids := map[string]bool{}
	for _, r := range sp.records {
		var lgl sls.LogGroupList
		if err := lgl.Unmarshal(r.Payload); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, lg := range lgl.LogGroups {
			for _, l := range lg.Logs {
				n++
				ids[l.Contents[0].GetValue()] = true
				if tm := int64(l.GetTime()); tm < r.MinTime || tm > r.MaxTime {
					t.Errorf("log time %d outside the record's [%d,%d]", tm, r.MinTime, r.MaxTime)
				}
			}
		}
		if n != r.Count {
			t.Errorf("record count %d, payload holds %d logs", r.Count, n)
		}
	}
	if len(ids) != logs {
		t.Errorf("%d distinct event ids, want %d", len(ids), logs)
	}
}

// While the spool blocks, the source holds at most maxHeldPulls pulls, however
// many shards have data.
func TestWorker_HeldPullsBounded(t *testing.T) {
	sp := &blockingSpool{block: make(chan struct{})}
	w, srv := emulatorWorker(t, 8, 8*200, sp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for sp.puts.Load() < maxHeldPulls && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // time for more pulls, were they allowed
	pulls := srv.Stats().Pulls
	if sp.puts.Load() != maxHeldPulls || pulls > maxHeldPulls {
		t.Errorf("with the spool blocked: %d Puts waiting, %d pulls served; want %d and at most %d",
			sp.puts.Load(), pulls, maxHeldPulls, maxHeldPulls)
	}
	close(sp.block)
	deadline = time.Now().Add(30 * time.Second)
	for sp.logs() < 8*200 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := sp.logs(); got != 8*200 {
		t.Errorf("after unblocking, spooled %d logs, want %d", got, 8*200)
	}
}

// FuzzScanLogGroupList: the same agreement on arbitrary bytes.
func FuzzScanLogGroupList(f *testing.F) {
	_, odd := generatedList(f, slstest.KindOdd, 2, 3, 3)
	_, small := generatedList(f, slstest.KindWeb, 1, 2, 4)
	f.Add(odd)
	f.Add(small)
	f.Add([]byte{0x0a, 0x08, 0x0a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		sum, serr := scanLogGroupList(p)
		evs, derr := deliver.Decode(&spool.Record{Payload: p})
		if (serr == nil) != (derr == nil) {
			t.Fatalf("scan error %v, decode error %v", serr, derr)
		}
		if serr == nil && sum.count != len(evs) {
			t.Fatalf("scan counted %d logs, decode %d", sum.count, len(evs))
		}
	})
}
