package slstest_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/go-kit/kit/log"

	"slsrelay/ingest/slstest"
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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idSet records event ids seen by consumers, counting duplicates.
type idSet struct {
	mu   sync.Mutex
	seen map[string]int
	dups int
}

func newIDSet() *idSet { return &idSet{seen: map[string]int{}} }

func (s *idSet) addList(gl *sls.LogGroupList) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range gl.LogGroups {
		for _, l := range g.Logs {
			id := eventID(l)
			s.seen[id]++
			if s.seen[id] > 1 {
				s.dups++
			}
		}
	}
}

func (s *idSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *idSet) missing(ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range ids {
		if s.seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

func (s *idSet) duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dups
}

func eventID(l *sls.Log) string {
	for _, c := range l.Contents {
		if c.GetKey() == slstest.IDField {
			return c.GetValue()
		}
	}
	return ""
}

// logBuffer is a go-kit logger capturing lines for assertions.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
	t     testing.TB
}

func (b *logBuffer) Log(kv ...any) error {
	var sb strings.Builder
	log.NewLogfmtLogger(&sb).Log(kv...)
	b.mu.Lock()
	b.lines = append(b.lines, sb.String())
	b.mu.Unlock()
	return nil
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "")
}
