package deliver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/deliver"
	"slsrelay/spool"
)

// testLog is one SLS log for building payloads: time, nanoseconds, k/v pairs.
type testLog struct {
	sec, ns uint32
	kv      []string
}

type testGroup struct {
	topic, source string
	tags          []string // k, v, k, v…
	logs          []testLog
}

func sp(s string) *string { return &s }

func payload(t testing.TB, groups ...testGroup) []byte {
	t.Helper()
	list := &sls.LogGroupList{}
	for _, g := range groups {
		lg := &sls.LogGroup{}
		if g.topic != "" {
			lg.Topic = sp(g.topic)
		}
		if g.source != "" {
			lg.Source = sp(g.source)
		}
		for i := 0; i+1 < len(g.tags); i += 2 {
			lg.LogTags = append(lg.LogTags, &sls.LogTag{Key: sp(g.tags[i]), Value: sp(g.tags[i+1])})
		}
		for _, l := range g.logs {
			sec := l.sec
			sl := &sls.Log{Time: &sec}
			if l.ns != 0 {
				ns := l.ns
				sl.TimeNs = &ns
			}
			for i := 0; i+1 < len(l.kv); i += 2 {
				sl.Contents = append(sl.Contents, &sls.LogContent{Key: sp(l.kv[i]), Value: sp(l.kv[i+1])})
			}
			lg.Logs = append(lg.Logs, sl)
		}
		list.LogGroups = append(list.LogGroups, lg)
	}
	b, err := list.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// numbered is a group of n logs whose field "n" counts from first.
func numbered(first, n int) testGroup {
	g := testGroup{topic: "audit", source: "10.0.0.1", tags: []string{"__hostname__", "web-1"}}
	for i := first; i < first+n; i++ {
		g.logs = append(g.logs, testLog{sec: 1700000000 + uint32(i), ns: 123456789, kv: []string{"n", strconv.Itoa(i), "msg", "hello"}})
	}
	return g
}

func record(t testing.TB, seq uint64, groups ...testGroup) *spool.Record {
	n := 0
	for _, g := range groups {
		n += len(g.logs)
	}
	return &spool.Record{Seq: seq, Project: "proj", Logstore: "audit-log", Shard: 3,
		Cursor: "c" + strconv.FormatUint(seq, 10), Count: n, Payload: payload(t, groups...)}
}

// fakeQueue is an in-memory deliver.Queue: Peek returns the first unacked
// record, blocking while there is none.
type fakeQueue struct {
	mu       sync.Mutex
	recs     []*spool.Record
	acked    []uint64
	dead     []deadLetter
	changed  chan struct{}
	deadErr  error
	ackErr   error
	peekErrs error
}

type deadLetter struct {
	rec    *spool.Record
	reason string
}

func newFakeQueue(recs ...*spool.Record) *fakeQueue {
	return &fakeQueue{recs: recs, changed: make(chan struct{})}
}

func (q *fakeQueue) Peek(ctx context.Context) (*spool.Record, error) {
	for {
		q.mu.Lock()
		if q.peekErrs != nil {
			q.mu.Unlock()
			return nil, q.peekErrs
		}
		if len(q.recs) > 0 {
			r := q.recs[0]
			q.mu.Unlock()
			return r, nil
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

func (q *fakeQueue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ackErr != nil {
		return q.ackErr
	}
	if len(q.recs) == 0 || q.recs[0].Seq != seq {
		return fmt.Errorf("fake queue: ack %d is not the head", seq)
	}
	q.recs = q.recs[1:]
	q.acked = append(q.acked, seq)
	close(q.changed)
	q.changed = make(chan struct{})
	return nil
}

func (q *fakeQueue) DeadLetter(r *spool.Record, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deadErr != nil {
		return q.deadErr
	}
	q.dead = append(q.dead, deadLetter{r, reason})
	return nil
}

func (q *fakeQueue) Acked() []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]uint64(nil), q.acked...)
}

func (q *fakeQueue) Dead() []deadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]deadLetter(nil), q.dead...)
}

// fakeSink is a deliver.Sink of function fields (litestream mock style).
type fakeSink struct {
	SendFunc  func(ctx context.Context, b *deliver.Batch) error
	CloseFunc func() error
}

func (s *fakeSink) Name() string { return "fake" }
func (s *fakeSink) Send(ctx context.Context, b *deliver.Batch) error {
	return s.SendFunc(ctx, b)
}
func (s *fakeSink) Close() error {
	if s.CloseFunc == nil {
		return nil
	}
	return s.CloseFunc()
}

// testLogger logs to t.Log and, when buf is not nil, to buf as text.
func testLogger(t testing.TB, buf *syncBuffer) *slog.Logger {
	var h slog.Handler = slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})
	if buf != nil {
		h = multiHandler{h, slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})}
	}
	return slog.New(h)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

type multiHandler []slog.Handler

func (m multiHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (m multiHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range m {
		errs = append(errs, h.Handle(ctx, r.Clone()))
	}
	return errors.Join(errs...)
}
func (m multiHandler) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithAttrs(a)
	}
	return out
}
func (m multiHandler) WithGroup(g string) slog.Handler {
	out := make(multiHandler, len(m))
	for i, h := range m {
		out[i] = h.WithGroup(g)
	}
	return out
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fastRetry keeps tests quick.
var fastRetry = deliver.RetryPolicy{Min: time.Millisecond, Max: 5 * time.Millisecond}
