package ingest

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"
	"google.golang.org/protobuf/proto"

	"slsrelay/checkpoint"
	"slsrelay/spool"
)

// journal records the order of durable steps across fakes.
type journal struct {
	mu    sync.Mutex
	steps []string
}

func (j *journal) add(s string) { j.mu.Lock(); j.steps = append(j.steps, s); j.mu.Unlock() }

// fakeSpool is a function-field fake of Spool.
type fakeSpool struct {
	name    string
	j       *journal
	put     func(*spool.Record) error
	sync    func() error
	ctxErr  bool // Sync fails with the context's error, as a wait on another fsync round does
	records []*spool.Record
}

func (f *fakeSpool) Put(_ context.Context, r *spool.Record) error {
	if f.put != nil {
		if err := f.put(r); err != nil {
			return err
		}
	}
	f.records = append(f.records, r)
	f.j.add(f.name + ".put")
	return nil
}

func (f *fakeSpool) Sync(ctx context.Context) error {
	if f.ctxErr && ctx.Err() != nil {
		return ctx.Err()
	}
	if f.sync != nil {
		if err := f.sync(); err != nil {
			return err
		}
	}
	f.j.add(f.name + ".sync")
	return nil
}

type fakeCheckpoints struct {
	j       *journal
	commits map[int]checkpoint.Cursor
}

func (f *fakeCheckpoints) Commit(k checkpoint.ShardKey, c checkpoint.Cursor) error {
	f.j.add("commit")
	f.commits[k.Shard] = c
	return nil
}
func (f *fakeCheckpoints) Cursors(string, string) (map[int]checkpoint.Cursor, error) {
	return f.commits, nil
}
func (f *fakeCheckpoints) RecordGap(checkpoint.Gap) error { return nil }

// fakeTracker stands in for the SDK's checkpoint tracker.
type fakeTracker struct {
	consumer.CheckPointTracker
	j         *journal
	cur, next string
	saved     int
}

func (t *fakeTracker) GetCurrentCursor() string { return t.cur }
func (t *fakeTracker) GetNextCursor() string    { return t.next }
func (t *fakeTracker) SaveCheckPoint(bool) error {
	t.saved++
	t.j.add("sls.save")
	return nil
}

func testLogGroups(n int) *sls.LogGroupList {
	lg := &sls.LogGroup{Topic: proto.String("t")}
	for i := 0; i < n; i++ {
		lg.Logs = append(lg.Logs, &sls.Log{Time: proto.Uint32(uint32(1700000000 + i)),
			Contents: []*sls.LogContent{{Key: proto.String("k"), Value: proto.String("v")}}})
	}
	return &sls.LogGroupList{LogGroups: []*sls.LogGroup{lg}}
}

func newTestWorker(t *testing.T, spools ...Spool) (*Worker, *fakeCheckpoints, *journal) {
	t.Helper()
	j := &journal{}
	for _, s := range spools {
		s.(*fakeSpool).j = j
	}
	cps := &fakeCheckpoints{j: j, commits: map[int]checkpoint.Cursor{}}
	w, err := newWorker(Source{Project: "p", Logstore: "l", Endpoint: "127.0.0.1:1", ConsumerGroup: "g", ConsumerName: "c",
		Credentials: sls.NewStaticCredentialsProvider("id", "secret", "")},
		Options{Spools: spools, Checkpoints: cps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return w, cps, j
}

func TestWorker_ProcessOrder(t *testing.T) {
	a, b := &fakeSpool{name: "a"}, &fakeSpool{name: "b"}
	w, cps, j := newTestWorker(t, a, b)
	tr := &fakeTracker{j: j, cur: "c1", next: "c2"}
	if err := w.process(context.Background(), 3, testLogGroups(5), tr); err != nil {
		t.Fatal(err)
	}
	want := []string{"a.put", "b.put", "a.sync", "b.sync", "commit", "sls.save"}
	if got := j.steps; !slices.Equal(got, want) {
		t.Errorf("steps = %v, want %v", got, want)
	}
	if got := cps.commits[3]; got.Cursor != "c2" || got.MaxTime != 1700000004 {
		t.Errorf("local checkpoint = %+v, want cursor c2, max time 1700000004", got)
	}
	r := a.records[0]
	if r.Count != 5 || r.MinTime != 1700000000 || r.Cursor != "c1" || r.NextCursor != "c2" || r.Shard != 3 {
		t.Errorf("record = %+v", r)
	}
	var back sls.LogGroupList
	if err := back.Unmarshal(r.Payload); err != nil || len(back.LogGroups[0].Logs) != 5 {
		t.Errorf("payload does not decode to the pull: %v", err)
	}
}

// TestWorker_ProcessSyncFailure is invariant 1 at the ingest level: a failed
// fsync stops both checkpoints, and the retry does not spool the pull twice.
func TestWorker_ProcessSyncFailure(t *testing.T) {
	fail := true
	a := &fakeSpool{name: "a"}
	b := &fakeSpool{name: "b", sync: func() error {
		if fail {
			return syscall.ENOSPC
		}
		return nil
	}}
	w, cps, j := newTestWorker(t, a, b)
	tr := &fakeTracker{j: j, cur: "c1", next: "c2"}
	err := w.process(context.Background(), 0, testLogGroups(2), tr)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("process = %v, want ENOSPC", err)
	}
	if len(cps.commits) != 0 || tr.saved != 0 {
		t.Fatalf("checkpoint moved after a failed sync: local %v, sls saves %d", cps.commits, tr.saved)
	}
	fail = false
	if err := w.process(context.Background(), 0, testLogGroups(2), tr); err != nil {
		t.Fatal(err)
	}
	if len(a.records) != 1 || len(b.records) != 1 {
		t.Errorf("retry spooled again: a has %d, b has %d records, want 1 each", len(a.records), len(b.records))
	}
	if cps.commits[0].Cursor != "c2" || tr.saved != 1 {
		t.Errorf("after recovery: local %v, sls saves %d", cps.commits, tr.saved)
	}
}

func TestWorker_ProcessPutBlockedUntilCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &fakeSpool{name: "a", put: func(*spool.Record) error { cancel(); return context.Canceled }}
	w, cps, j := newTestWorker(t, a)
	tr := &fakeTracker{j: j, cur: "c1", next: "c2"}
	if err := w.process(ctx, 0, testLogGroups(1), tr); !errors.Is(err, context.Canceled) {
		t.Fatalf("process = %v, want context.Canceled", err)
	}
	if len(cps.commits) != 0 || tr.saved != 0 {
		t.Errorf("checkpoint moved without a durable spool")
	}
}

// Found by chaos scenario 14 (SIGTERM under load): a stop that landed
// between a successful Put and its fsync left the pull in the spool without
// a checkpoint, so it was pulled and delivered again after the restart. Once
// a Put went through, the barrier and the commit finish despite the stop.
func TestWorker_ProcessStopAfterPutStillCommits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &fakeSpool{name: "a", ctxErr: true, put: func(*spool.Record) error { cancel(); return nil }}
	w, cps, j := newTestWorker(t, a)
	tr := &fakeTracker{j: j, cur: "c1", next: "c2"}
	if err := w.process(ctx, 0, testLogGroups(1), tr); err != nil {
		t.Fatalf("process = %v, want nil", err)
	}
	if cps.commits[0].Cursor != "c2" {
		t.Errorf("local checkpoint = %+v, want c2 after the record was spooled", cps.commits[0])
	}
}

func TestWorker_ProcessEmptyPull(t *testing.T) {
	t.Run("no progress", func(t *testing.T) {
		a := &fakeSpool{name: "a"}
		w, cps, j := newTestWorker(t, a)
		if err := w.process(context.Background(), 0, &sls.LogGroupList{}, &fakeTracker{j: j, cur: "c1", next: "c1"}); err != nil {
			t.Fatal(err)
		}
		if len(j.steps) != 0 || len(cps.commits) != 0 {
			t.Errorf("an empty pull at the end of a shard did something: %v", j.steps)
		}
	})
	t.Run("filtered by query", func(t *testing.T) {
		a := &fakeSpool{name: "a"}
		w, cps, j := newTestWorker(t, a)
		if err := w.process(context.Background(), 0, &sls.LogGroupList{}, &fakeTracker{j: j, cur: "c1", next: "c9"}); err != nil {
			t.Fatal(err)
		}
		if len(a.records) != 0 || cps.commits[0].Cursor != "c9" {
			t.Errorf("filtered pull: records %d, checkpoint %+v; want none and c9", len(a.records), cps.commits[0])
		}
	})
}
