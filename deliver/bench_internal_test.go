package deliver

import (
	"fmt"
	"strconv"
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	kgzip "github.com/klauspost/compress/gzip"

	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// auditRecord builds a record of n audit-like logs of about 1 KB of HEC JSON.
func auditRecord(b testing.TB, n int) *spool.Record {
	g := &sls.LogGroup{Topic: strp("actiontrail"), Source: strp("10.20.30.40"),
		LogTags: []*sls.LogTag{{Key: strp("__hostname__"), Value: strp("audit-collector-01")}, {Key: strp("__receive_time__"), Value: strp("1700000000")}}}
	for i := range n {
		sec, ns := uint32(1700000000+i), uint32(123456789)
		l := &sls.Log{Time: &sec, TimeNs: &ns}
		add := func(k, v string) { l.Contents = append(l.Contents, &sls.LogContent{Key: strp(k), Value: strp(v)}) }
		add("event_id", fmt.Sprintf("8c1f0b6e-%04x-4d2a-9a7e-%012d", i&0xffff, i))
		add("event_name", "ConsoleSignin")
		add("event_type", "ApiCall")
		add("event_source", "signin.aliyun.com")
		add("acs_region", "cn-hangzhou")
		add("user_identity.type", "ram-user")
		add("user_identity.principal_id", "2034567890123456")
		add("user_identity.account_id", "1234567890123456")
		add("user_identity.user_name", "alice.zhang@example.com")
		add("source_ip_address", "203.0.113."+strconv.Itoa(i%250))
		add("user_agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36")
		add("request_id", fmt.Sprintf("B7E5C9A2-%08d-4F0D-9C3B-7A1E2D3C4B5A", i))
		add("service_name", "AasSub")
		add("api_version", "2015-05-01")
		add("request_parameters", `{"LoginType":"password","MfaChecked":"true","Referer":"https://signin.aliyun.com/login.htm?callback=https%3A%2F%2Fhomenew.console.aliyun.com"}`)
		add("response_elements", `{"LoginResult":"success","IsMFAEnabled":true}`)
		add("error_code", "")
		add("error_message", "")
		add("additional_event_data", `{"LoginAccount":"alice.zhang@example.com","CallbackUrl":"https://homenew.console.aliyun.com/"}`)
		add("resource_type", "ACS::RAM::User")
		g.Logs = append(g.Logs, l)
	}
	p, err := (&sls.LogGroupList{LogGroups: []*sls.LogGroup{g}}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return &spool.Record{Seq: 1, Project: "security-audit", Logstore: "actiontrail_log", Shard: 7, Count: n, Payload: p}
}

func benchHEC(b testing.TB) *HEC {
	h, err := NewHEC(HECOptions{URL: "http://127.0.0.1:1", Token: "t"})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// encodeAll renders evs request by request as Send does and calls f with
// each request body; it returns the total JSON bytes.
func encodeAll(h *HEC, evs []Event, f func([]byte)) (size int) {
	var mc metaCache
	for i := 0; i < len(evs); {
		c := h.encodeChunk(evs, i, &mc)
		size += len(c.buf)
		if f != nil {
			f(c.buf)
		}
		i = c.end()
		h.putChunk(c)
	}
	return size
}

// BenchmarkHEC_Encode: HEC JSON formatting (and gzip) of 1 KB audit events
// per batch size; SetBytes counts uncompressed JSON.
func BenchmarkHEC_Encode(b *testing.B) {
	h := benchHEC(b)
	for _, n := range []int{1, 100, 1000, 4096} {
		evs, err := Decode(auditRecord(b, n))
		if err != nil {
			b.Fatal(err)
		}
		size := encodeAll(h, evs, nil)
		b.Run(fmt.Sprintf("json/events=%d", n), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				encodeAll(h, evs, nil)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
		for _, level := range []int{kgzip.BestSpeed, kgzip.DefaultCompression} {
			b.Run(fmt.Sprintf("json+gzip%d/events=%d", level, n), func(b *testing.B) {
				gz := &gzipPool{level: level}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				var out int
				for b.Loop() {
					encodeAll(h, evs, func(body []byte) { out += len(gz.compress(body)) })
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(size)*float64(b.N)/float64(out), "ratio")
			})
		}
	}
}

// BenchmarkDecode compares the hand-written decoder with the SDK's gogo
// Unmarshal on the same payload.
func BenchmarkDecode(b *testing.B) {
	rec := auditRecord(b, 1000)
	b.Run("walker", func(b *testing.B) {
		b.SetBytes(int64(len(rec.Payload)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(rec); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(1000*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("gogo", func(b *testing.B) {
		b.SetBytes(int64(len(rec.Payload)))
		b.ReportAllocs()
		for b.Loop() {
			var l sls.LogGroupList
			if err := l.Unmarshal(rec.Payload); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(1000*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func TestAuditRecordSize(t *testing.T) {
	evs, _ := Decode(auditRecord(t, 10))
	h := benchHEC(t)
	per := encodeAll(h, evs, nil) / 10
	if per < 900 || per > 1400 {
		t.Errorf("audit event is %d bytes of HEC JSON, want about 1 KB", per)
	}
}

// BenchmarkDecode_Pull: one spool record as ingest writes it (100 log
// groups of 100 audit logs, ~10 MB), decoded as the delivery loop does
// (in two halves at once, buffers reused from record to record), in two
// halves into fresh memory (Decode), and in one pass into fresh memory.
func BenchmarkDecode_Pull(b *testing.B) {
	g := slstest.NewGenerator(slstest.KindAudit, 1)
	p, err := g.Pull(100, 100)
	if err != nil {
		b.Fatal(err)
	}
	rec := &spool.Record{Seq: 1, Project: "p", Logstore: "l", Count: 10000, Payload: p}
	b.Run("loop", func(b *testing.B) {
		var buf decodeBuffers
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := decodeInto(rec, &buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("halves-fresh", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := Decode(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := decodeSequential(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func strp(s string) *string { return &s }

// BenchmarkDecode_SmallBatchAfterLarge: a batch of eight 800-event records
// (a caught-up shard's pulls) decoded into buffers that a 10,000-event
// record grew before, as the delivery loop does after a backlog.
func BenchmarkDecode_SmallBatchAfterLarge(b *testing.B) {
	large, small := auditRecord(b, 10000), auditRecord(b, 800)
	var buf decodeBuffers
	if _, err := decodeInto(large, &buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(8 * int64(len(small.Payload)))
	for b.Loop() {
		if _, err := decodeInto(small, &buf); err != nil {
			b.Fatal(err)
		}
		for range 7 {
			if _, err := decodeAppend(small, &buf); err != nil {
				b.Fatal(err)
			}
		}
	}
}
