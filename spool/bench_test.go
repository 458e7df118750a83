package spool

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// auditLogs returns n bytes of JSON-ish audit log lines of about 1 KB each,
// with the variety of real ones (request ids, IPs, user agents, paths).
func auditLogs(n int, seed int64) []byte {
	rng := rand.New(rand.NewSource(seed))
	users := []string{"alice", "bob", "carol", "svc-deploy", "svc-backup", "root", "mallory"}
	actions := []string{"ConsoleLogin", "PutObject", "GetObject", "DeleteBucket", "CreateUser", "AttachPolicy", "DescribeInstances"}
	agents := []string{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		"aliyun-cli/3.0.190 (linux; amd64)", "Go-http-client/1.1", "terraform-provider-alicloud/1.214.0"}
	b := make([]byte, 0, n+2048)
	for len(b) < n {
		b = fmt.Appendf(b, `{"__time__":%d,"eventId":"%016x-%08x","eventName":"%s","userIdentity":{"type":"ram-user","userName":"%s","accountId":"1%015d","accessKeyId":"LTAI%012x"},"sourceIpAddress":"%d.%d.%d.%d","userAgent":"%s","requestId":"%08X-%04X-%04X-%012X","serviceName":"%s","resource":"acs:oss:cn-hangzhou:%d:bucket-%d/path/to/object-%d.log","requestParameters":{"bucket":"bucket-%d","key":"logs/%d/%02d/%02d/part-%05d.gz","size":%d},"responseElements":{"status":%d},"eventVersion":"1","acsRegion":"cn-hangzhou","errorCode":"%s"}`+"\n",
			1700000000+rng.Intn(86400), rng.Uint64(), rng.Uint32(), actions[rng.Intn(len(actions))], users[rng.Intn(len(users))],
			rng.Int63n(1e15), rng.Int63n(1<<48), 10+rng.Intn(200), rng.Intn(256), rng.Intn(256), rng.Intn(256),
			agents[rng.Intn(len(agents))], rng.Uint32(), rng.Intn(1<<16), rng.Intn(1<<16), rng.Int63n(1<<48),
			[]string{"oss", "ecs", "ram", "sls"}[rng.Intn(4)], rng.Int63n(1e12), rng.Intn(50), rng.Intn(100000),
			rng.Intn(50), 2023+rng.Intn(2), 1+rng.Intn(12), 1+rng.Intn(28), rng.Intn(100000), rng.Intn(1<<24),
			[]int{200, 200, 200, 403, 404}[rng.Intn(5)], []string{"", "", "", "AccessDenied", "NoSuchKey"}[rng.Intn(5)])
	}
	return b[:n]
}

var benchSizes = []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func benchOpen(b *testing.B, comp string) *Spool {
	o := Options{MinFreeBytes: 1, MaxBytes: 64 << 30, Compression: comp}
	s, err := Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSpool_PutSync: one Put and one Sync per op (ingest's pattern),
// next to the raw write+fsync baseline of the same bytes.
func BenchmarkSpool_PutSync(b *testing.B) {
	for _, size := range benchSizes {
		payload := auditLogs(size, 1)
		b.Run("raw-write-fsync/"+sizeName(size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := f.Write(payload); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, comp := range []string{"none", "s2", "lz4", "zstd"} {
			b.Run(comp+"/"+sizeName(size), func(b *testing.B) {
				s := benchOpen(b, comp)
				ctx := context.Background()
				b.SetBytes(int64(size))
				for b.Loop() {
					r := &Record{Project: "p", Logstore: "l", Cursor: "MTcwMDAwMDAwMA==", Payload: payload, ReceivedAt: time.Now()}
					if err := s.Put(ctx, r); err != nil {
						b.Fatal(err)
					}
					if err := s.Sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSpool_Drain: Peek+Ack per op over a spool filled beforehand
// (Ack fsyncs the acknowledged Seq).
func BenchmarkSpool_Drain(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 8 << 20} {
		payload := auditLogs(size, 2)
		for _, comp := range []string{"s2", "lz4", "zstd"} {
			b.Run(comp+"/"+sizeName(size), func(b *testing.B) {
				s := benchOpen(b, comp)
				ctx := context.Background()
				b.SetBytes(int64(size))
				for b.Loop() {
					b.StopTimer()
					if err := s.Put(ctx, &Record{Payload: payload}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					r, err := s.Peek(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if err := s.Ack(r.Seq); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCodec compresses and decodes 1 MiB of ~1 KB audit log lines and
// reports the compression ratio.
func BenchmarkCodec(b *testing.B) {
	payload := auditLogs(1<<20, 3)
	for _, c := range []struct {
		name string
		id   byte
	}{{"s2", codecS2}, {"lz4", codecLZ4}, {"zstd", codecZstd}} {
		r := &Record{Payload: payload}
		f, _ := encodeRecord(r, c.id)
		enc := f.seal(1)
		ratio := float64(len(payload)) / float64(len(enc))
		b.Run(c.name+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := encodeRecord(r, c.id); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ratio, "ratio")
		})
		b.Run(c.name+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := decodeRecord(enc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ratio, "ratio")
		})
	}
}
