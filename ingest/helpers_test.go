package ingest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

const (
	project  = slstest.DefaultProject
	logstore = slstest.DefaultLogstore
)

// newClient returns an SDK client pointed at s with the default AccessKey.
func newClient(s *slstest.Server) *sls.Client {
	c := sls.CreateNormalInterface(s.Endpoint(), slstest.DefaultAKID, slstest.DefaultAKSecret, "").(*sls.Client)
	c.SetHTTPClient(s.HTTPClient())
	c.SetRetryTimeout(5 * time.Second)
	return c
}

// memSpool is an in-memory Spool recording every record it holds. put and
// sync, when set, run first and may fail the call or block on ctx.
type memSpool struct {
	mu      sync.Mutex
	records []*spool.Record
	put     func(ctx context.Context, r *spool.Record) error
	sync    func(ctx context.Context) error
}

func (m *memSpool) Put(ctx context.Context, r *spool.Record) error {
	if m.put != nil {
		if err := m.put(ctx, r); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, r)
	return nil
}

func (m *memSpool) Sync(ctx context.Context) error {
	if m.sync != nil {
		return m.sync(ctx)
	}
	return nil
}

func (m *memSpool) snapshot() []*spool.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*spool.Record(nil), m.records...)
}

// ids decodes the event ids (first content value of every log) of records.
func ids(t testing.TB, recs []*spool.Record) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		var gl sls.LogGroupList
		if err := gl.Unmarshal(r.Payload); err != nil {
			t.Fatalf("record of shard %d at %s: %v", r.Shard, r.Cursor, err)
		}
		for _, g := range gl.LogGroups {
			for _, l := range g.Logs {
				out = append(out, l.Contents[0].GetValue())
			}
		}
	}
	return out
}

// countIDs counts how often each id occurs.
func countIDs(xs []string) map[string]int {
	m := map[string]int{}
	for _, x := range xs {
		m[x]++
	}
	return m
}

// waitFor polls cond until it holds or d passes (not a timed assertion: d
// only bounds a test that would otherwise hang).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errInjected = errors.New("injected failure")
