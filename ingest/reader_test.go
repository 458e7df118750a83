package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slsrelay/ingest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// chain checks that recs are contiguous pulls from `from` to `to`.
func chain(t *testing.T, name string, recs []*spool.Record, from, to string) {
	t.Helper()
	c := from
	for i, r := range recs {
		if r.Cursor != c {
			t.Fatalf("%s: record %d starts at %s, want %s (a range is missing or repeated)", name, i, r.Cursor, c)
		}
		c = r.NextCursor
	}
	if c != to {
		t.Fatalf("%s: records end at %s, want %s", name, c, to)
	}
}

func TestShardReader_ReadsRangeIntoEverySpool(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	want, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 400, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	var got []string
	for shard := range 4 {
		from, _ := c.GetCursor(project, logstore, shard, "begin")
		to, _ := c.GetCursor(project, logstore, shard, "end")
		a, b := &memSpool{}, &memSpool{}
		var pulls int
		r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: shard,
			MaxGroups: 3, Spools: []ingest.Spool{a, b},
			Progress: func(p ingest.Pull) error {
				pulls++
				// Progress comes only once the pull is in both spools.
				for _, sp := range []*memSpool{a, b} {
					if rs := sp.snapshot(); len(rs) == 0 || rs[len(rs)-1].NextCursor != p.Next {
						t.Errorf("shard %d: Progress(%s..%s) before the pull is in every spool", shard, p.Cursor, p.Next)
					}
				}
				return nil
			}}
		end, err := r.Read(context.Background(), from, to)
		if err != nil || end != to {
			t.Fatalf("shard %d: Read = %s, %v; want %s, nil", shard, end, err, to)
		}
		chain(t, "spool a", a.snapshot(), from, to)
		chain(t, "spool b", b.snapshot(), from, to)
		if pulls != len(a.snapshot()) || pulls < 2 {
			t.Errorf("shard %d: %d Progress calls for %d records", shard, pulls, len(a.snapshot()))
		}
		got = append(got, ids(t, a.snapshot())...)
	}
	n := countIDs(got)
	for _, id := range want {
		if n[id] != 1 {
			t.Fatalf("event %s read %d times, want 1", id, n[id])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("read %d events, want %d", len(got), len(want))
	}
}

// A spool that fails gets the same pull again, and a spool that already
// holds it does not get it twice.
func TestShardReader_RetriesTheSamePull(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 200, 10, 2); err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	from, _ := c.GetCursor(project, logstore, 1, "begin")
	to, _ := c.GetCursor(project, logstore, 1, "end")
	var putFails, syncFails atomic.Int32
	putFails.Store(3)
	syncFails.Store(2)
	a := &memSpool{}
	b := &memSpool{
		put: func(context.Context, *spool.Record) error {
			if putFails.Add(-1) >= 0 {
				return errInjected
			}
			return nil
		},
		sync: func(context.Context) error {
			if syncFails.Add(-1) >= 0 {
				return errInjected
			}
			return nil
		},
	}
	var errs atomic.Int32
	r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 1, MaxGroups: 2,
		Spools: []ingest.Spool{a, b}, OnError: func(error) { errs.Add(1) }}
	if end, err := r.Read(context.Background(), from, to); err != nil || end != to {
		t.Fatalf("Read = %s, %v", end, err)
	}
	chain(t, "spool a", a.snapshot(), from, to)
	chain(t, "spool b", b.snapshot(), from, to)
	if errs.Load() != 5 {
		t.Errorf("OnError told %d failures, want 5", errs.Load())
	}
}

func TestShardReader_CursorExpired(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 40, 10, 3); err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	from, _ := c.GetCursor(project, logstore, 0, "begin")
	time.Sleep(10 * time.Millisecond)
	if err := s.SetTTL(project, logstore, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 0, Spools: []ingest.Spool{&memSpool{}}}
	_, err := r.Read(context.Background(), from, "")
	var ce *ingest.CursorExpiredError
	if !errors.As(err, &ce) || ce.Cursor != from || ce.Shard != 0 || ce.Code != "InvalidCursor" {
		t.Fatalf("Read = %v, want a CursorExpiredError for %s", err, from)
	}
}

// Open-ended, the reader follows new data; StopAtEnd returns at the end;
// a Progress error stops it with the pull durable.
func TestShardReader_FollowsAndStops(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	from, _ := c.GetCursor(project, logstore, 2, "begin")
	a := &memSpool{}
	var seen atomic.Int64
	r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 2,
		FetchInterval: 10 * time.Millisecond, Spools: []ingest.Spool{a},
		Progress: func(p ingest.Pull) error { seen.Add(int64(p.Count)); return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.Read(ctx, from, ""); done <- err }()
	g := slstest.NewGenerator(slstest.KindAudit, 4)
	for range 5 {
		if err := s.Append(project, logstore, 2, g.LogGroup(7)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "35 logs followed", func() bool { return seen.Load() == 35 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v", err)
	}
	to, _ := c.GetCursor(project, logstore, 2, "end")
	chain(t, "spool", a.snapshot(), from, to)

	stop := errors.New("stop")
	r2 := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 2, MaxGroups: 2,
		Spools: []ingest.Spool{&memSpool{}}, StopAtEnd: true,
		Progress: func(p ingest.Pull) error {
			if p.Count > 0 {
				return stop
			}
			return nil
		}}
	if end, err := r2.Read(context.Background(), from, ""); !errors.Is(err, stop) || end == from {
		t.Fatalf("Read with failing Progress = %s, %v", end, err)
	}
	r2.Progress = nil
	if end, err := r2.Read(context.Background(), from, ""); err != nil || end != to {
		t.Fatalf("Read with StopAtEnd = %s, %v; want %s", end, err, to)
	}
}

// A spool whose fsync keeps failing is retried with backoff, and its error
// is logged at most once per 30 s per shard with a count of what was
// suppressed, not once per retry.
func TestShardReader_FailingSyncLogIsRateLimited(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 40, 10, 5); err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	from, _ := c.GetCursor(project, logstore, 0, "begin")
	var buf lockedBuffer
	var fails atomic.Int32
	sp := &memSpool{sync: func(context.Context) error { fails.Add(1); return errInjected }}
	r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 0, Spools: []ingest.Spool{sp},
		Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); r.Read(ctx, from, "") }()
	waitFor(t, 2*time.Minute, "8 failed fsyncs", func() bool { return fails.Load() >= 8 })
	cancel()
	<-done
	elapsed := time.Since(start)
	lines := strings.Count(buf.String(), "spooling a pull failed")
	if max := 1 + int(elapsed/(30*time.Second)); lines < 1 || lines > max {
		t.Fatalf("%d failed fsyncs in %s logged %d times, want 1..%d:\n%s", fails.Load(), elapsed, lines, max, buf.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A pull that returned everything the shard held (fewer groups than asked
// for, far under SLS's size cap) leaves the shard caught up: the next
// request waits FetchInterval instead of going out at once for the one or
// two groups that arrived in the round trip, which would make one tiny
// spool record per round trip and queue them before the sink. A full pull
// is followed at once.
func TestShardReader_CaughtUpWaitsFetchInterval(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	from, _ := c.GetCursor(project, logstore, 1, "begin")
	g := slstest.NewGenerator(slstest.KindAudit, 9)
	for range 5 {
		if err := s.Append(project, logstore, 1, g.LogGroup(3)); err != nil {
			t.Fatal(err)
		}
	}
	r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 1, MaxGroups: 2,
		FetchInterval: time.Hour, Spools: []ingest.Spool{&memSpool{}}}
	// 5 groups, 2 a pull: two full pulls followed at once, then a short one
	// (1 group) after which the shard is caught up.
	pulls := pullsBeforeWait(t, s, r, from, 3)
	var groups []int
	for _, p := range pulls {
		groups = append(groups, p.Groups)
	}
	if len(pulls) != 3 || groups[0] != 2 || groups[1] != 2 || groups[2] != 1 {
		t.Fatalf("pulls of %v groups; want [2 2 1] and then a wait of FetchInterval", groups)
	}
	if !pulls[2].CaughtUp(2) || pulls[1].CaughtUp(2) {
		t.Errorf("CaughtUp: short pull %v, full pull %v; want true, false", pulls[2].CaughtUp(2), pulls[1].CaughtUp(2))
	}
}

// TestShardReader_IdleShardWaitsIdleFetchInterval: a pull that found no
// data is followed after IdleFetchInterval, not FetchInterval, so that an
// idle shard costs fewer requests than one with data.
func TestShardReader_IdleShardWaitsIdleFetchInterval(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	from, _ := c.GetCursor(project, logstore, 1, "end")
	r := &ingest.ShardReader{Client: c, Project: project, Logstore: logstore, Shard: 1,
		FetchInterval: time.Millisecond, IdleFetchInterval: time.Hour, Spools: []ingest.Spool{&memSpool{}}}
	pulls := pullsBeforeWait(t, s, r, from, 1)
	if len(pulls) != 1 || !pulls[0].AtEnd() {
		t.Fatalf("%d pulls (first at end: %v); want one empty pull and then a wait of IdleFetchInterval", len(pulls), len(pulls) > 0 && pulls[0].AtEnd())
	}
}

// pullsBeforeWait runs r from cursor from until it made n pulls, then
// appends data to its shard and gives it 300 ms to pull again, which a
// reader that does not wait would do; it returns every pull made. A slow
// machine only makes a wait more certain to be seen: it cannot make a wait
// look like none.
func pullsBeforeWait(t *testing.T, s *slstest.Server, r *ingest.ShardReader, from string, n int) []ingest.Pull {
	t.Helper()
	var mu sync.Mutex
	var pulls []ingest.Pull
	r.Fetched = func(p ingest.Pull) { mu.Lock(); pulls = append(pulls, p); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.Read(ctx, from, ""); done <- err }()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d pulls", n), func() bool { mu.Lock(); defer mu.Unlock(); return len(pulls) >= n })
	if err := s.Append(project, logstore, r.Shard, slstest.NewGenerator(slstest.KindAudit, 3).LogGroup(3)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]ingest.Pull(nil), pulls...)
}
