package hectest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
)

// actionTrailBody builds a HEC body of ~1 KB ActionTrail-like events and
// its gzip, stopping once the gzip reaches wireSize bytes.
func actionTrailBody(wireSize int) (plain, gz []byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	names := []string{"DescribeInstances", "CreateBucket", "PutObject", "AssumeRole", "ListUsers", "RunInstances"}
	for i := 0; ; i++ {
		start := b.Len()
		fmt.Fprintf(&b, `{"time":%d.%03d,"host":"actiontrail","source":"sls:project-prod:actiontrail_log","sourcetype":"aliyun:actiontrail","index":"main",`+
			`"event":{"event_id":"%08X-%04X-%04X-%04X-%012X","eventVersion":"1","eventSource":"ecs.aliyuncs.com","eventName":"%s","eventType":"ApiCall",`+
			`"eventTime":"2026-05-01T12:%02d:%02dZ","acsRegion":"cn-hangzhou","sourceIpAddress":"%d.%d.%d.%d","userAgent":"aliyun-sdk-go/1.61.%d (linux; amd64) Go/1.22",`+
			`"requestId":"%08X-%04X-%04X-%04X-%012X","apiVersion":"2014-05-26","serviceName":"Ecs","isGlobal":false,"referencedResources":{"ACS::ECS::Instance":["i-bp1%016x","i-bp1%016x"]},`+
			`"userIdentity":{"type":"ram-user","principalId":"%d","accountId":"%d","userName":"deploy-%d","accessKeyId":"LTAI%016x","sessionContext":{"attributes":{"creationDate":"2026-05-01T11:00:00Z","mfaAuthenticated":"false"}}},`+
			`"requestParameters":{"RegionId":"cn-hangzhou","PageSize":50,"PageNumber":%d,"InstanceIds":"[\"i-bp1%016x\"]","HostId":"ecs.cn-hangzhou.aliyuncs.com"},`+
			`"additionalEventData":{"loginAccount":"deploy@example.com","isMFAChecked":"false"}},`+
			`"fields":{"project":"project-prod","logstore":"actiontrail_log","shard":%d}}`+"\n",
			1714567040+i/100, i%1000, rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff,
			names[rng.IntN(len(names))], rng.IntN(60), rng.IntN(60), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(100),
			rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff, rng.Uint64(), rng.Uint64(),
			rng.Uint64()%1e15, rng.Uint64()%1e15, rng.IntN(20), rng.Uint64(), rng.IntN(10), rng.Uint64(), rng.IntN(8))
		zw.Write(b.Bytes()[start:])
		if i%64 == 63 {
			zw.Flush()
			if zb.Len() >= wireSize {
				break
			}
		}
	}
	zw.Close()
	return b.Bytes(), zb.Bytes()
}

type readFunc = func(s *Server, w http.ResponseWriter, r *http.Request, req *Request, f *Fault) ([]Event, answer, *[]byte)

func benchReadEvents(b *testing.B, read readFunc, consume bool) {
	plain, gz := actionTrailBody(1 << 20)
	opts := Options{Token: "t"}
	if consume {
		opts.Consume = func([]Event) {}
	}
	s, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := &Fault{}
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, PathEvent, bytes.NewReader(gz))
		r.Header.Set("Content-Encoding", "gzip")
		req := &Request{AckID: -1}
		events, a, buf := read(s, httptest.NewRecorder(), r, req, f)
		if a.status != http.StatusOK {
			b.Fatalf("answer %+v", a)
		}
		if consume {
			s.opts.Consume(events)
		}
		s.release(events, buf)
	}
	b.ReportMetric(float64(len(gz)), "wire-bytes/op")
}

// BenchmarkReadEvents decodes 1 MiB gzip requests of ~1 KB ActionTrail-like
// events; MB/s counts decompressed JSON.
func BenchmarkReadEvents(b *testing.B) {
	cur := (*Server).readEvents
	ref := func(s *Server, w http.ResponseWriter, r *http.Request, req *Request, f *Fault) ([]Event, answer, *[]byte) {
		ev, a := s.refReadEvents(w, r, req, f, false)
		return ev, a, nil
	}
	b.Run("impl=new/consume", func(b *testing.B) { benchReadEvents(b, cur, true) })
	b.Run("impl=new/store", func(b *testing.B) { benchReadEvents(b, cur, false) })
	b.Run("impl=reference/consume", func(b *testing.B) { benchReadEvents(b, ref, true) })
}

// BenchmarkGunzip compares the two gzip readers on the body of
// BenchmarkReadEvents (why readEvents inflates with klauspost/compress).
func BenchmarkGunzip(b *testing.B) {
	plain, gz := actionTrailBody(1 << 20)
	b.Run("impl=compress-gzip", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		buf := make([]byte, 0, len(plain)+1)
		for b.Loop() {
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				b.Fatal(err)
			}
			if buf, err = readAll(zr, buf, int64(len(plain)), 1<<30); err != nil || len(buf) != len(plain) {
				b.Fatal(err, len(buf))
			}
		}
	})
	b.Run("impl=klauspost", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		buf := make([]byte, 0, len(plain)+1)
		for b.Loop() {
			var err error
			if buf, _, err = gunzip(gz, nil, buf, 1<<30); err != nil || len(buf) != len(plain) {
				b.Fatal(err, len(buf))
			}
		}
	})
}
