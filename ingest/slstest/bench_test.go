package slstest_test

import (
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

// BenchmarkServer_PullLogs measures raw LogGroupList bytes served per
// second to one SDK client on loopback, pulling 1000 groups a request.
// "bytes" reads with GetLogsBytes (no protobuf decoding, the server-bound
// figure); "decoded" with PullLogs, which decodes as a consumer does.
func BenchmarkServer_PullLogs(b *testing.B) {
	s := slstest.NewServer(b, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 200_000, 100, 1); err != nil {
		b.Fatal(err)
	}
	c := newClient(s)
	for _, tc := range []struct {
		name     string
		compress int
		decode   bool
	}{
		{"bytes/lz4", sls.Compress_LZ4, false},
		{"bytes/zstd", sls.Compress_ZSTD, false},
		{"decoded/lz4", sls.Compress_LZ4, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			begin, err := c.GetCursor(project, logstore, 0, "begin")
			if err != nil {
				b.Fatal(err)
			}
			cur, before := begin, s.Stats()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				plr := &sls.PullLogRequest{Project: project, Logstore: logstore, Cursor: cur, LogGroupMaxCount: 1000, CompressType: tc.compress}
				var next string
				if tc.decode {
					_, plm, err := c.PullLogsWithQuery(plr)
					if err != nil {
						b.Fatal(err)
					}
					next = plm.NextCursor
				} else {
					_, plm, err := c.GetLogsBytesWithQuery(plr)
					if err != nil {
						b.Fatal(err)
					}
					next = plm.NextCursor
				}
				if next == cur {
					next = begin
				}
				cur = next
			}
			b.StopTimer()
			after := s.Stats()
			raw := after.RawBytesServed - before.RawBytesServed
			b.SetBytes(raw / int64(b.N))
			b.ReportMetric(float64(after.LogsServed-before.LogsServed)/b.Elapsed().Seconds(), "logs/s")
			b.ReportMetric(float64(raw)/float64(after.BytesServed-before.BytesServed), "ratio")
		})
	}
}
