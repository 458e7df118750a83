package deliver_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/syslogtest"
)

// Tests against real receivers (rsyslogd, syslog-ng) started on loopback
// ports; they skip when a binary is missing, and fail instead under CI=true.

const (
	longValueBytes = 10000
	nonASCII       = "héllo 世界 🎉 \"quoted\" back\\slash ]bracket"
)

// runBatches builds batches of events carrying run, n (counting from 0) and
// a non-ASCII value; event 7 also carries a long value.
func runBatches(t testing.TB, run string, batches, per int) []*deliver.Batch {
	var out []*deliver.Batch
	for b := 0; b < batches; b++ {
		g := testGroup{topic: "audit", source: "10.0.0.1", tags: []string{"__hostname__", "web-1", "__tag__:k8s.pod", "api\"7]"}}
		for i := b * per; i < (b+1)*per; i++ {
			kv := []string{"run", run, "n", strconv.Itoa(i), "text", nonASCII}
			if i == 7 {
				kv = append(kv, "long", strings.Repeat("x", longValueBytes))
			}
			g.logs = append(g.logs, testLog{sec: 1700000000 + uint32(i), ns: 123456789, kv: kv})
		}
		evs, err := deliver.Decode(record(t, uint64(b+1), g))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &deliver.Batch{Seq: uint64(b + 1), Events: evs})
	}
	return out
}

func newSyslogSink(t testing.TB, o deliver.SyslogOptions) *deliver.Syslog {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t, nil)
	}
	if o.Retry == (deliver.RetryPolicy{}) {
		o.Retry = deliver.RetryPolicy{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	s, err := deliver.NewSyslog(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sendAll(t testing.TB, s deliver.Sink, batches []*deliver.Batch) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	for _, b := range batches {
		if err := s.Send(ctx, b); err != nil {
			t.Fatalf("send batch %d: %v", b.Seq, err)
		}
	}
	return time.Since(start)
}

// payloadFields parses a JSON payload (after a CEF/LEEF-free json format).
func payloadFields(msg string) (map[string]string, bool) {
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "\ufeff"))
	var m map[string]string
	if json.Unmarshal([]byte(msg), &m) != nil {
		return nil, false
	}
	return m, true
}

// kvFields parses the kv payload written with KVQuote auto.
func kvFields(msg string) map[string]string {
	out := map[string]string{}
	s := strings.TrimSpace(msg)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		k := s[:eq]
		s = s[eq+1:]
		var v strings.Builder
		if strings.HasPrefix(s, `"`) {
			s = s[1:]
			for s != "" && s[0] != '"' {
				if s[0] == '\\' && len(s) > 1 {
					v.WriteByte(s[1])
					s = s[2:]
					continue
				}
				v.WriteByte(s[0])
				s = s[1:]
			}
			s = strings.TrimPrefix(s, `"`)
		} else {
			sp := strings.IndexByte(s, ' ')
			if sp < 0 {
				sp = len(s)
			}
			v.WriteString(s[:sp])
			s = s[sp:]
		}
		out[k] = v.String()
		s = strings.TrimPrefix(s, " ")
	}
	return out
}

// tally counts the records of one run by their "n".
type tally struct {
	seen        map[int]int
	total, dups int
}

func (ta tally) missing(n int) (miss []int) {
	for i := 0; i < n; i++ {
		if ta.seen[i] == 0 {
			miss = append(miss, i)
		}
	}
	return miss
}

// checkRecords verifies the fields of each record of run and tallies them.
func checkRecords(t *testing.T, recs []syslogtest.Record, run string, kv bool, checkSD bool) tally {
	t.Helper()
	ta := tally{seen: map[int]int{}}
	bad := 0
	for _, r := range recs {
		var f map[string]string
		if kv {
			f = kvFields(r.Msg)
		} else {
			var ok bool
			if f, ok = payloadFields(r.Msg); !ok {
				continue
			}
		}
		if f["run"] != run {
			continue
		}
		n, err := strconv.Atoi(f["n"])
		if err != nil {
			t.Errorf("record without n: %q", r.Msg)
			continue
		}
		ta.seen[n]++
		ta.total++
		if ta.seen[n] > 1 {
			ta.dups++
		}
		if f["text"] != nonASCII && bad < 3 {
			bad++
			t.Errorf("n=%d: text %q, want %q", n, f["text"], nonASCII)
		}
		if n == 7 && len(f["long"]) != longValueBytes {
			t.Errorf("n=7: long value of %d bytes, want %d", len(f["long"]), longValueBytes)
		}
		if checkSD {
			sd, err := syslogtest.ParseSD(r.SD)
			if err != nil && bad < 3 {
				bad++
				t.Errorf("n=%d: SD %q: %v", n, r.SD, err)
				continue
			}
			m := sd["sls@32473"]
			tags := sd["sls_tags@32473"]
			if (m["project"] != "proj" || m["logstore"] != "audit-log" || m["shard"] != "3" || m["topic"] != "audit" ||
				m["source"] != "10.0.0.1" || tags["__hostname__"] != "web-1" || tags["k8s_pod"] != "api\"7]") && bad < 3 {
				bad++
				t.Errorf("n=%d: SD %q parsed as %v", n, r.SD, sd)
			}
			if r.Host != "web-1" || r.App != "slsrelay" {
				t.Errorf("n=%d: host %q app %q", n, r.Host, r.App)
			}
		}
	}
	return ta
}

func TestSyslog_Rsyslog(t *testing.T) {
	dir := t.TempDir()
	certs := syslogtest.NewCerts(t, dir)
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{UDP: true, TCP: true, TLS: true, RELP: true,
		CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
	const batches, per = 4, 500
	n := batches * per
	for _, tc := range []struct {
		name string
		o    deliver.SyslogOptions
	}{
		{"tcp octet-counting", deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr}},
		{"tcp non-transparent", deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr, Framing: "non-transparent"}},
		{"tls octet-counting", deliver.SyslogOptions{Network: "tls", Address: rs.TLSAddr, CAFile: certs.CAFile}},
		{"tls non-transparent", deliver.SyslogOptions{Network: "tls", Address: rs.TLSAddr, CAFile: certs.CAFile, Framing: "non-transparent"}},
		{"relp", deliver.SyslogOptions{Network: "relp", Address: rs.RELPAddr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSyslogSink(t, tc.o)
			took := sendAll(t, s, runBatches(t, tc.name, batches, per))
			ta := checkRecords(t, rs.WaitRecords(0, 0), tc.name, false, true)
			for ta.total < n {
				recs := rs.Quiet(300*time.Millisecond, 20*time.Second)
				ta = checkRecords(t, recs, tc.name, false, true)
				if ta.total < n {
					break
				}
			}
			if ta.total != n || ta.dups != 0 {
				t.Errorf("received %d records (%d duplicates, missing %v), want exactly %d", ta.total, ta.dups, first(ta.missing(n), 10), n)
			}
			t.Logf("%d events in %s: %.0f msg/s", n, took, float64(n)/took.Seconds())
		})
	}
	t.Run("udp best effort, long message truncated", func(t *testing.T) {
		s := newSyslogSink(t, deliver.SyslogOptions{Network: "udp", Address: rs.UDPAddr, MaxMessageBytes: 8192})
		sendAll(t, s, runBatches(t, "udp", 1, 200))
		recs := rs.Quiet(300*time.Millisecond, 10*time.Second)
		got, truncated := 0, false
		for _, r := range recs {
			if strings.Contains(r.Msg, `"run":"udp"`) {
				got++
				if strings.HasSuffix(r.Msg, deliver.SyslogTruncationMarker) {
					truncated = true
				}
			}
		}
		t.Logf("udp: %d of 200 datagrams arrived", got)
		if got == 0 || !truncated {
			t.Errorf("udp: %d arrived, truncated long message seen: %v", got, truncated)
		}
	})
}

func first(s []int, n int) []int { return s[:min(n, len(s))] }

// spans writes sorted numbers as ranges: [3250-3499 7484-7499].
func spans(s []int) []string {
	var out []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		out = append(out, strconv.Itoa(s[i])+"-"+strconv.Itoa(s[j]))
		i = j + 1
	}
	return out
}

// TestSyslog_SyslogNG sends to syslog-ng's network() sources in RFC 5424
// (flags(syslog-protocol)) and RFC 3164 mode, each over TCP and over TLS
// with a client certificate (newline framing, which network() expects), and
// to its syslog() driver over TLS (RFC 5425, octet counting); the output is
// parsed back: exact counts, header fields, SD or payload metadata, the
// non-ASCII and the long value.
func TestSyslog_SyslogNG(t *testing.T) {
	dir := t.TempDir()
	certs := syslogtest.NewCerts(t, dir)
	ng := syslogtest.StartSyslogNG(t, syslogtest.SyslogNGOptions{RFC5424: true, RFC3164: true, TLS: true,
		RFC5424TLS: true, RFC3164TLS: true,
		RequireClientCert: true, CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
	defer func() {
		if t.Failed() {
			t.Logf("syslog-ng log:\n%s", ng.Log())
		}
	}()
	const batches, per = 3, 500
	n := batches * per
	mtls := func(o deliver.SyslogOptions) deliver.SyslogOptions {
		o.Network, o.CAFile, o.CertFile, o.KeyFile = "tls", certs.CAFile, certs.ClientCert, certs.ClientKey
		return o
	}
	rfc3164kv := deliver.SyslogOptions{Framing: "non-transparent", Format: "rfc3164", Payload: "kv", PayloadMeta: true}
	rfc3164json := deliver.SyslogOptions{Framing: "non-transparent", Format: "rfc3164", PayloadMeta: true}
	for _, tc := range []struct {
		name    string
		o       deliver.SyslogOptions
		rfc3164 bool
		source  string // syslog-ng's source name, see StartSyslogNG
	}{
		{"rfc5424 tcp", deliver.SyslogOptions{Network: "tcp", Address: ng.RFC5424Addr, Framing: "non-transparent"}, false, "s_rfc5424"},
		{"rfc3164 tcp kv", func() deliver.SyslogOptions { o := rfc3164kv; o.Network, o.Address = "tcp", ng.RFC3164Addr; return o }(), true, "s_rfc3164"},
		{"rfc5424 network tls", func() deliver.SyslogOptions {
			o := mtls(deliver.SyslogOptions{Framing: "non-transparent"})
			o.Address = ng.RFC5424TLSAddr
			return o
		}(), false, "s_rfc5424_tls"},
		{"rfc3164 network tls kv", func() deliver.SyslogOptions { o := mtls(rfc3164kv); o.Address = ng.RFC3164TLSAddr; return o }(), true, "s_rfc3164_tls"},
		{"rfc3164 network tls json", func() deliver.SyslogOptions { o := mtls(rfc3164json); o.Address = ng.RFC3164TLSAddr; return o }(), true, "s_rfc3164_tls"},
		{"rfc5424 syslog() mtls", deliver.SyslogOptions{Network: "tls", Address: ng.TLSAddr, CAFile: certs.CAFile,
			CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, false, "s_tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := tc.o.Payload == "kv"
			s := newSyslogSink(t, tc.o)
			took := sendAll(t, s, runBatches(t, tc.name, batches, per))
			ng.WaitRecords(n, 20*time.Second)
			recs := ng.Quiet(300*time.Millisecond, 20*time.Second)
			ta := checkRecords(t, recs, tc.name, kv, !tc.rfc3164)
			if ta.total != n || ta.dups != 0 {
				t.Errorf("received %d records (%d duplicates, missing %v), want exactly %d", ta.total, ta.dups, first(ta.missing(n), 10), n)
			}
			for _, r := range recs {
				if strings.Contains(r.Msg, tc.name) && r.Input != tc.source {
					t.Errorf("record of this run from source %q, want %q", r.Input, tc.source)
					break
				}
			}
			if tc.rfc3164 { // no SD: the metadata is in the payload
				checked := 0
				for _, r := range recs {
					f := kvFields(r.Msg)
					if !kv {
						f, _ = payloadFields(r.Msg)
					}
					if f["run"] != tc.name {
						continue
					}
					if checked++; r.Host != "web-1" || r.App != "slsrelay" || f["sls_project"] != "proj" || f["sls_shard"] != "3" ||
						f["sls_tag_k8s_pod"] != "api\"7]" {
						t.Errorf("rfc3164 record: host %q app %q fields %v", r.Host, r.App, f)
						break
					}
				}
				if checked != n {
					t.Errorf("checked the metadata of %d records, want %d", checked, n)
				}
			}
			t.Logf("%d events in %s: %.0f msg/s", n, took, float64(n)/took.Seconds())
		})
	}
	t.Run("mtls without client certificate is a config error", func(t *testing.T) {
		s := newSyslogSink(t, deliver.SyslogOptions{Network: "tls", Address: ng.TLSAddr, CAFile: certs.CAFile})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.Send(ctx, runBatches(t, "nocert", 1, 1)[0])
		if deliver.KindOf(err) != deliver.Config {
			t.Errorf("got %v (kind %v), want a Config error", err, deliver.KindOf(err))
		}
	})
}

// TestSyslog_ReceiverRestart restarts rsyslogd (SIGTERM, start again on the
// same ports) while batches flow, and counts what arrived: over RELP nothing
// may be lost; over TCP it logs how many were lost or duplicated, and where
// (docs/CONFIG.md quotes the range).
func TestSyslog_ReceiverRestart(t *testing.T) {
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TCP: true, RELP: true})
	const batches, per = 40, 250
	n := batches * per
	for _, tc := range []struct {
		name string
		o    deliver.SyslogOptions
	}{
		{"tcp", deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr}},
		{"relp", deliver.SyslogOptions{Network: "relp", Address: rs.RELPAddr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSyslogSink(t, tc.o)
			run := "restart " + tc.name
			bs := runBatches(t, run, batches, per)
			var sent atomic.Int64
			done := make(chan time.Duration, 1)
			go func() {
				start := time.Now()
				for _, b := range bs {
					if err := s.Send(context.Background(), b); err != nil {
						t.Errorf("send: %v", err)
						break
					}
					sent.Add(1)
				}
				done <- time.Since(start)
			}()
			for sent.Load() < batches/3 {
				time.Sleep(time.Millisecond)
			}
			rs.Restart()
			<-done
			// One more event on the same connection: once rsyslogd wrote it,
			// it has processed everything sent before it, so a slow (or
			// descheduled) receiver is not counted as loss.
			sendAll(t, s, runBatches(t, run+" end", 1, 1))
			var recs []syslogtest.Record
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
				recs = rs.Records()
				if checkRecords(t, recs, run+" end", false, false).total > 0 || time.Now().After(deadline) {
					break
				}
			}
			ta := checkRecords(t, recs, run, false, false)
			miss := ta.missing(n)
			t.Logf("%s across a receiver restart: sent %d, received %d, lost %d %v, duplicated %d",
				tc.name, n, ta.total, len(miss), spans(miss), ta.dups)
			if tc.name == "relp" && len(miss) > 0 {
				t.Errorf("relp lost %d events: %v", len(miss), first(miss, 10))
			}
		})
	}
}

// BenchmarkSyslog_Rsyslog measures messages/s into a real rsyslogd over TCP
// and RELP on loopback (json payload, ~285-byte messages, 999 per batch),
// end to end: the timer stops once rsyslogd has written every message of
// the run to its output file, not when Send returns (over TCP that only
// means the bytes reached the kernel; over RELP that rsyslogd queued them).
// msg/s is that end-to-end rate; sent-msg/s is the rate at which Send
// returned, for comparison.
func BenchmarkSyslog_Rsyslog(b *testing.B) {
	rs := syslogtest.StartRsyslog(b, syslogtest.RsyslogOptions{TCP: true, RELP: true})
	bs := runBatches(b, "bench", 1, 1000)
	bs[0].Events = append(bs[0].Events[:7:7], bs[0].Events[8:]...) // no long value
	per := len(bs[0].Events)
	for _, tc := range []struct {
		name string
		o    deliver.SyslogOptions
	}{
		{"tcp", deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr}},
		{"relp", deliver.SyslogOptions{Network: "relp", Address: rs.RELPAddr}},
		{"relp window 1024", deliver.SyslogOptions{Network: "relp", Address: rs.RELPAddr, RELPWindow: 1024}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newSyslogSink(b, tc.o)
			ctx := context.Background()
			want := rs.Lines() + b.N*per // earlier runs waited for theirs
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Send(ctx, bs[0]); err != nil {
					b.Fatal(err)
				}
			}
			sent := b.Elapsed()
			if got := rs.WaitLines(want, 2*time.Minute); got < want {
				b.Fatalf("rsyslogd wrote %d of %d messages", got-(want-b.N*per), b.N*per)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "msg/s")
			b.ReportMetric(float64(b.N*per)/sent.Seconds(), "sent-msg/s")
		})
	}
}

func TestSyslog_Failures(t *testing.T) {
	dir := t.TempDir()
	certs := syslogtest.NewCerts(t, dir)
	other := syslogtest.NewCerts(t, t.TempDir())
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TLS: true, RELP: true,
		CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
	t.Run("unknown CA is a config error", func(t *testing.T) {
		s := newSyslogSink(t, deliver.SyslogOptions{Network: "tls", Address: rs.TLSAddr, CAFile: other.CAFile})
		err := s.Send(context.Background(), runBatches(t, "ca", 1, 1)[0])
		if deliver.KindOf(err) != deliver.Config {
			t.Errorf("got %v, want a Config error", err)
		}
	})
	for _, network := range []string{"tcp", "relp"} {
		t.Run(network+" receiver down: retried until cancelled, then delivered", func(t *testing.T) {
			down := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TCP: true, RELP: true})
			a := down.TCPAddr
			if network == "relp" {
				a = down.RELPAddr
			}
			down.Stop()
			s := newSyslogSink(t, deliver.SyslogOptions{Network: network, Address: a})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			b := runBatches(t, "down "+network, 1, 10)[0]
			if err := s.Send(ctx, b); err != context.DeadlineExceeded {
				t.Fatalf("got %v, want context.DeadlineExceeded", err)
			}
			if s.Retries() == 0 {
				t.Error("no retries counted")
			}
			down.Restart()
			sendAll(t, s, []*deliver.Batch{b})
			recs := down.WaitRecords(10, 20*time.Second)
			if ta := checkRecords(t, recs, "down "+network, false, true); ta.total != 10 {
				t.Errorf("received %d, want 10", ta.total)
			}
		})
	}
}

// TestSyslog_RsyslogRELPOverTLS sends over RELP with TLS (imrelp tls="on",
// tls.authMode certvalid, certificates generated by the test) to rsyslogd.
// imrelp with certificates always demands a client certificate, and it
// closes the session without a TLS alert when none comes: the sink cannot
// tell that from a network failure, so it retries (loudly, with a hint)
// instead of pausing with a Config error.
func TestSyslog_RsyslogRELPOverTLS(t *testing.T) {
	certs := syslogtest.NewCerts(t, t.TempDir())
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{RELPTLS: true, RequireClientCert: true,
		CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
	defer func() {
		if t.Failed() {
			t.Logf("rsyslogd log:\n%s", rs.Log())
		}
	}()
	o := deliver.SyslogOptions{Network: "relp", TLS: true, Address: rs.RELPTLSAddr, CAFile: certs.CAFile}
	t.Run("no client certificate is retried with a hint", func(t *testing.T) {
		var logs syncBuffer
		o := o
		o.Logger = testLogger(t, &logs)
		s := newSyslogSink(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Send(ctx, runBatches(t, "nocert", 1, 1)[0]); err != context.DeadlineExceeded {
			t.Errorf("got %v, want context.DeadlineExceeded after retries", err)
		}
		if s.Retries() == 0 || !strings.Contains(logs.String(), "client certificate") {
			t.Errorf("%d retries, logs without the client certificate hint:\n%s", s.Retries(), logs.String())
		}
	})
	t.Run("mutual tls", func(t *testing.T) {
		const n = 1000
		o := o
		o.CertFile, o.KeyFile = certs.ClientCert, certs.ClientKey
		s := newSyslogSink(t, o)
		took := sendAll(t, s, runBatches(t, "relp tls", 2, n/2))
		rs.WaitRecords(n, 20*time.Second)
		ta := checkRecords(t, rs.Quiet(300*time.Millisecond, 20*time.Second), "relp tls", false, true)
		if ta.total != n || ta.dups != 0 {
			t.Errorf("received %d records (%d duplicates, missing %v), want exactly %d", ta.total, ta.dups, first(ta.missing(n), 10), n)
		}
		t.Logf("%d events in %s: %.0f msg/s", n, took, float64(n)/took.Seconds())
	})
}
