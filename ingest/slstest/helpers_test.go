package slstest_test

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
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

// produce writes total logs of kind into the default logstore through the
// SDK's producer-side calls, perGroup logs a request, and returns their
// event ids in order. Requests cycle through PutLogs (round robin over the
// readwrite shards) and PostLogStoreLogs (routed by an MD5 hash key), each
// with lz4 and with zstd bodies, as the SDK compresses them.
func produce(t testing.TB, s *slstest.Server, kind slstest.Kind, total, perGroup int, seed int64) []string {
	t.Helper()
	c := newClient(s)
	g := slstest.NewGenerator(kind, seed)
	ids := make([]string, 0, total)
	for i, done := 0, 0; done < total; i++ {
		n := min(perGroup, total-done)
		lg := g.LogGroup(n)
		for _, l := range lg.Logs {
			ids = append(ids, l.Contents[0].GetValue())
		}
		compress := sls.Compress_LZ4
		if i%2 == 1 {
			compress = sls.Compress_ZSTD
		}
		var err error
		if i%4 < 2 {
			err = c.PutLogsWithCompressType(project, logstore, lg, compress)
		} else {
			sum := md5.Sum([]byte(strconv.Itoa(i)))
			key := hex.EncodeToString(sum[:])
			err = c.PostLogStoreLogsV2(project, logstore, &sls.PostLogStoreLogsRequest{LogGroup: lg, HashKey: &key, CompressType: compress})
		}
		if err != nil {
			t.Fatalf("request %d (logs %d..%d): %v", i, done, done+n, err)
		}
		done += n
	}
	return ids
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

// addList records the logs of gl and returns how many there were.
func (s *idSet) addList(gl *sls.LogGroupList) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range gl.LogGroups {
		for _, l := range g.Logs {
			n++
			id := eventID(l)
			s.seen[id]++
			if s.seen[id] > 1 {
				s.dups++
			}
		}
	}
	return n
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
