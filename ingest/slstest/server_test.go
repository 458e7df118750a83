package slstest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

// pullAll reads a shard from begin to end with the SDK, count groups a pull.
func pullAll(t *testing.T, c *sls.Client, shard int, compress int) *idSet {
	t.Helper()
	seen := newIDSet()
	cur, err := c.GetCursor(project, logstore, shard, "begin")
	if err != nil {
		t.Fatalf("GetCursor begin: %v", err)
	}
	for {
		gl, plm, err := c.PullLogsWithQuery(&sls.PullLogRequest{Project: project, Logstore: logstore, ShardID: shard,
			Cursor: cur, LogGroupMaxCount: 100, CompressType: compress})
		if err != nil {
			t.Fatalf("PullLogs: %v", err)
		}
		seen.addList(gl)
		if plm.NextCursor == cur {
			return seen
		}
		cur = plm.NextCursor
	}
}

func TestServer_PutLogs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		compress int
	}{
		{"lz4", sls.Compress_LZ4},
		{"zstd", sls.Compress_ZSTD},
		{"none", sls.Compress_None},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := slstest.NewServer(t, slstest.Options{})
			c := newClient(s)
			g := slstest.NewGenerator(slstest.KindAudit, 1)
			var ids []string
			for i := 0; i < 8; i++ {
				lg := g.LogGroup(50)
				for _, l := range lg.Logs {
					ids = append(ids, l.Contents[0].GetValue())
				}
				if err := c.PutLogsWithCompressType(project, logstore, lg, tc.compress); err != nil {
					t.Fatalf("PutLogs: %v", err)
				}
			}
			seen := newIDSet()
			for shard := 0; shard < 4; shard++ {
				for id, n := range pullAll(t, c, shard, tc.compress).seen {
					for i := 0; i < n; i++ {
						seen.seen[id]++
					}
				}
			}
			if m := seen.missing(ids); len(m) > 0 || len(seen.seen) != len(ids) {
				t.Fatalf("got %d distinct ids, want %d; missing %d", len(seen.seen), len(ids), len(m))
			}
			if got := s.Stats().LogsWritten; got != int64(len(ids)) {
				t.Errorf("Stats.LogsWritten = %d, want %d", got, len(ids))
			}
		})
	}
	t.Run("hash key routes to the covering shard", func(t *testing.T) {
		s := slstest.NewServer(t, slstest.Options{})
		c := newClient(s)
		key := "c0000000000000000000000000000001" // in the 4th quarter
		if err := c.PostLogStoreLogs(project, logstore, slstest.NewGenerator(slstest.KindWeb, 2).LogGroup(10), &key); err != nil {
			t.Fatalf("PostLogStoreLogs: %v", err)
		}
		shards, _ := s.Shards(project, logstore)
		if shards[3].Logs != 10 {
			t.Fatalf("shard 3 holds %d logs, want 10 (shards %+v)", shards[3].Logs, shards)
		}
	})
	t.Run("invalid body is rejected", func(t *testing.T) {
		s := slstest.NewServer(t, slstest.Options{})
		c := newClient(s)
		err := c.PutRawLogWithCompressType(project, logstore, []byte("\xff\xff\xff not a log group"), sls.Compress_None)
		var se *sls.Error
		if !errors.As(err, &se) || se.Code != "PostBodyInvalid" || se.HTTPCode != 400 {
			t.Fatalf("err = %v, want 400 PostBodyInvalid", err)
		}
	})
}

func TestServer_ListShards(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	shards, err := c.ListShards(project, logstore)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"00000000000000000000000000000000", "40000000000000000000000000000000",
		"80000000000000000000000000000000", "c0000000000000000000000000000000",
		"ffffffffffffffffffffffffffffffff",
	}
	if len(shards) != 4 {
		t.Fatalf("got %d shards, want 4", len(shards))
	}
	for i, sh := range shards {
		if sh.ShardID != i || sh.Status != "readwrite" || sh.InclusiveBeginKey != want[i] || sh.ExclusiveBeginKey != want[i+1] || sh.CreateTime == 0 {
			t.Errorf("shard %d = %+v", i, sh)
		}
	}
}

func TestServer_GetCursor(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
	c := newClient(s)
	g := slstest.NewGenerator(slstest.KindWeb, 3)
	if err := s.Append(project, logstore, 0, g.LogGroup(5)); err != nil {
		t.Fatal(err)
	}
	mid := time.Now().Add(time.Second).Unix()
	waitFor(t, 3*time.Second, "next second", func() bool { return time.Now().Unix() >= mid })
	if err := s.Append(project, logstore, 0, g.LogGroup(7)); err != nil {
		t.Fatal(err)
	}
	count := func(cur string) int {
		gl, _, err := c.PullLogs(project, logstore, 0, cur, "", 1000)
		if err != nil {
			t.Fatalf("PullLogs: %v", err)
		}
		n := 0
		for _, g := range gl.LogGroups {
			n += len(g.Logs)
		}
		return n
	}
	for _, tc := range []struct {
		from string
		want int
	}{
		{"begin", 12},
		{"end", 0},
		{fmt.Sprint(mid), 7},
		{fmt.Sprint(mid - 100), 12},
		{fmt.Sprint(mid + 100), 0},
	} {
		t.Run(tc.from, func(t *testing.T) {
			cur, err := c.GetCursor(project, logstore, 0, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if got := count(cur); got != tc.want {
				t.Errorf("logs after cursor from=%s: %d, want %d", tc.from, got, tc.want)
			}
		})
	}
	t.Run("cursor time", func(t *testing.T) {
		cur, _ := c.GetCursor(project, logstore, 0, fmt.Sprint(mid))
		ct, err := c.GetCursorTime(project, logstore, 0, cur)
		if err != nil {
			t.Fatal(err)
		}
		if ct.Unix() < mid || ct.Unix() > mid+2 {
			t.Errorf("cursor time %d, want about %d", ct.Unix(), mid)
		}
	})
	t.Run("invalid cursor", func(t *testing.T) {
		_, _, err := c.PullLogs(project, logstore, 0, "bm90LWEtY3Vyc29y", "", 10)
		if err == nil || !strings.Contains(err.Error(), "InvalidCursor") {
			t.Fatalf("err = %v, want InvalidCursor", err)
		}
	})
}

func TestServer_PullLogs(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
	c := newClient(s)
	if _, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 100, 10, 4); err != nil {
		t.Fatal(err)
	}
	begin, _ := c.GetCursor(project, logstore, 0, "begin")
	end, _ := c.GetCursor(project, logstore, 0, "end")
	t.Run("count bounds the groups", func(t *testing.T) {
		gl, plm, err := c.PullLogsWithQuery(&sls.PullLogRequest{Project: project, Logstore: logstore, Cursor: begin, LogGroupMaxCount: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(gl.LogGroups) != 3 || plm.Count != 3 || plm.RawSize == 0 {
			t.Fatalf("got %d groups, meta %+v", len(gl.LogGroups), plm)
		}
	})
	t.Run("end cursor stops the read", func(t *testing.T) {
		gl, plm, err := c.PullLogsWithQuery(&sls.PullLogRequest{Project: project, Logstore: logstore, Cursor: begin, LogGroupMaxCount: 3})
		if err != nil {
			t.Fatal(err)
		}
		gl, next, err := c.PullLogs(project, logstore, 0, begin, plm.NextCursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(gl.LogGroups) != 3 || next != plm.NextCursor {
			t.Fatalf("got %d groups next %s, want 3 groups next %s", len(gl.LogGroups), next, plm.NextCursor)
		}
	})
	t.Run("empty pull at the end returns the same cursor", func(t *testing.T) {
		gl, next, err := c.PullLogs(project, logstore, 0, end, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(gl.LogGroups) != 0 || next != end {
			t.Fatalf("got %d groups, next %s, want 0 and %s", len(gl.LogGroups), next, end)
		}
	})
	t.Run("receive time tag", func(t *testing.T) {
		gl, _, _ := c.PullLogs(project, logstore, 0, begin, "", 1)
		tags := gl.LogGroups[0].LogTags
		if len(tags) == 0 || tags[len(tags)-1].GetKey() != "__receive_time__" {
			t.Fatalf("tags %v, want a __receive_time__ tag last", tags)
		}
	})
	t.Run("query filters logs", func(t *testing.T) {
		gl, plm, err := c.PullLogsWithQuery(&sls.PullLogRequest{Project: project, Logstore: logstore, Cursor: begin,
			LogGroupMaxCount: 1000, Query: "* | where method = 'GET' and status != '200'"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range gl.LogGroups {
			for _, l := range g.Logs {
				n++
				var m, st string
				for _, kv := range l.Contents {
					switch kv.GetKey() {
					case "method":
						m = kv.GetValue()
					case "status":
						st = kv.GetValue()
					}
				}
				if m != "GET" || st == "200" {
					t.Fatalf("log with method=%s status=%s passed the filter", m, st)
				}
			}
		}
		if n == 0 || plm.DataCountBeforeQuery != 10 || plm.LinesBeforeQuery != 100 || plm.Lines != n {
			t.Fatalf("n=%d meta %+v", n, plm)
		}
	})
	t.Run("unsupported query", func(t *testing.T) {
		_, _, err := c.PullLogsWithQuery(&sls.PullLogRequest{Project: project, Logstore: logstore, Cursor: begin,
			LogGroupMaxCount: 10, Query: "* | stats count(*)"})
		if err == nil || !strings.Contains(err.Error(), "InvalidQueryString") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestServer_Errors(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	for _, tc := range []struct {
		name   string
		call   func() error
		status int32
		code   string
	}{
		{"unknown project", func() error { _, err := c.ListShards("nope", logstore); return err }, 404, "ProjectNotExist"},
		{"unknown logstore", func() error { _, err := c.ListShards(project, "nope"); return err }, 404, "LogStoreNotExist"},
		{"unknown group", func() error { _, err := c.GetCheckpoint(project, logstore, "nope"); return err }, 404, "ConsumerGroupNotExist"},
		{"duplicate group", func() error {
			cg := sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 10}
			if err := c.CreateConsumerGroup(project, logstore, cg); err != nil {
				return err
			}
			return c.CreateConsumerGroup(project, logstore, cg)
		}, 400, "ConsumerGroupAlreadyExist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var se *sls.Error
			if !errors.As(err, &se) || se.HTTPCode != tc.status || se.Code != tc.code || se.RequestID == "" {
				t.Fatalf("err = %v, want %d %s with a request id", err, tc.status, tc.code)
			}
		})
	}
}

func TestServer_MergeShards(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	if err := s.Append(project, logstore, 1, slstest.NewGenerator(slstest.KindWeb, 1).LogGroup(5)); err != nil {
		t.Fatal(err)
	}
	shards, err := c.MergeShards(project, logstore, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 3 || shards[0].ShardID != 4 || shards[0].InclusiveBeginKey != "40000000000000000000000000000000" ||
		shards[0].ExclusiveBeginKey != "c0000000000000000000000000000000" || shards[1].Status != "readonly" || shards[2].Status != "readonly" {
		t.Fatalf("merge answer %+v", shards)
	}
	t.Run("the old shard stays readable", func(t *testing.T) {
		cur, _ := c.GetCursor(project, logstore, 1, "begin")
		gl, _, err := c.PullLogs(project, logstore, 1, cur, "", 10)
		if err != nil || len(gl.LogGroups) != 1 {
			t.Fatalf("got %d groups, err %v", len(gl.GetLogGroups()), err)
		}
	})
	t.Run("writes skip read-only shards", func(t *testing.T) {
		key := "50000000000000000000000000000000"
		if err := c.PostLogStoreLogs(project, logstore, slstest.NewGenerator(slstest.KindWeb, 2).LogGroup(3), &key); err != nil {
			t.Fatal(err)
		}
		info, _ := s.Shards(project, logstore)
		if info[4].Logs != 3 || info[1].Logs != 5 {
			t.Fatalf("shards %+v", info)
		}
	})
}

func TestServer_AppendRaw(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
	lg := slstest.NewGenerator(slstest.KindAudit, 9).LogGroup(4)
	raw, err := lg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendRaw(project, logstore, 1, raw); err != nil {
		t.Fatalf("AppendRaw: %v", err)
	}
	if err := s.AppendRaw(project, logstore, 1, []byte{0x0a, 0x7f}); !errors.Is(err, slstest.ErrInvalidBody) {
		t.Errorf("AppendRaw(truncated) = %v, want ErrInvalidBody", err)
	}
	if err := s.AppendRaw(project, logstore, 5, raw); err == nil {
		t.Error("AppendRaw to shard 5 of 2 succeeded")
	}
	c := newClient(s)
	cur, err := c.GetCursor(project, logstore, 1, "begin")
	if err != nil {
		t.Fatal(err)
	}
	gl, _, err := c.PullLogs(project, logstore, 1, cur, "", 10)
	if err != nil {
		t.Fatalf("PullLogs: %v", err)
	}
	if len(gl.LogGroups) != 1 || len(gl.LogGroups[0].Logs) != 4 {
		t.Fatalf("pulled %d groups, want 1 of 4 logs", len(gl.LogGroups))
	}
	for i, l := range gl.LogGroups[0].Logs {
		if got, want := l.Contents[0].GetValue(), lg.Logs[i].Contents[0].GetValue(); got != want {
			t.Errorf("log %d: first field %q, want %q", i, got, want)
		}
	}
}
