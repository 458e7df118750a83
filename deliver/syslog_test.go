package deliver_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/syslogtest"
	"slsrelay/spool"
)

// Tests of the syslog sink against the in-process fake receiver
// (syslogtest.Server); syslog_receivers_test.go runs against real rsyslogd
// and syslog-ng.

// msgN returns the "n" field of the JSON payload of an RFC 5424 message.
func msgN(msg string) string {
	m, err := syslogtest.ParseRFC5424(msg)
	if err != nil {
		return ""
	}
	var f map[string]string
	if json.Unmarshal([]byte(m.Msg), &f) != nil {
		return ""
	}
	return f["n"]
}

func fakeSyslog(t *testing.T, so syslogtest.ServerOptions, o deliver.SyslogOptions) (*syslogtest.Server, *deliver.Syslog) {
	t.Helper()
	so.Logf = t.Logf
	srv := syslogtest.NewServer(t, so)
	o.Address = srv.Addr()
	if o.Retry == (deliver.RetryPolicy{}) {
		o.Retry = fastRetry
	}
	s := newSyslogSink(t, o)
	t.Cleanup(func() {
		if errs := srv.Stats().Errors; len(errs) > 0 {
			t.Errorf("protocol errors at the fake receiver: %q", errs)
		}
	})
	return srv, s
}

func syslogHarness(t *testing.T, so syslogtest.ServerOptions, o deliver.SyslogOptions) *sinkHarness {
	srv, s := fakeSyslog(t, so, o)
	relp := so.Protocol == "relp"
	h := &sinkHarness{
		sink: s,
		received: func() []string {
			msgs := srv.Messages()
			if !relp { // a flushed write is not yet read: wait for quiet
				for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
					time.Sleep(20 * time.Millisecond)
					m := srv.Messages()
					if len(m) == len(msgs) {
						break
					}
					msgs = m
				}
			}
			var out []string
			for _, m := range msgs {
				out = append(out, msgN(m))
			}
			return out
		},
		// The receiver answers nothing on plain syslog: count the sink's
		// failed attempts instead.
		attempts: func() int { return int(s.Retries()) },
		fail: func(k deliver.ErrorKind) {
			srv.SetFault(syslogtest.Fault{Refuse: k == deliver.Transient, RefuseSession: k == deliver.Config})
		},
		heal: func() { srv.SetFault(syslogtest.Fault{}) },
	}
	if relp {
		h.reject = func(n string) {
			srv.SetFault(syslogtest.Fault{Reject: func(msg string) bool { return msgN(msg) == n }})
		}
		h.hold = func(b bool) { srv.SetFault(syslogtest.Fault{Hold: b}) }
	} else if so.TLS == nil {
		h.noConfig = "plain TCP syslog has no way to refuse a client"
	}
	return h
}

func TestSyslog_Conformance(t *testing.T) {
	certs := syslogtest.NewCerts(t, t.TempDir())
	for _, tc := range []struct {
		name string
		so   syslogtest.ServerOptions
		o    deliver.SyslogOptions
	}{
		{"tcp octet-counting", syslogtest.ServerOptions{}, deliver.SyslogOptions{Network: "tcp"}},
		{"tcp non-transparent", syslogtest.ServerOptions{Framing: "non-transparent"},
			deliver.SyslogOptions{Network: "tcp", Framing: "non-transparent"}},
		{"tls octet-counting", syslogtest.ServerOptions{TLS: certs.Server},
			deliver.SyslogOptions{Network: "tls", CAFile: certs.CAFile}},
		{"relp", syslogtest.ServerOptions{Protocol: "relp"}, deliver.SyslogOptions{Network: "relp"}},
		{"relp window 2", syslogtest.ServerOptions{Protocol: "relp"}, deliver.SyslogOptions{Network: "relp", RELPWindow: 2}},
		{"relp over tls", syslogtest.ServerOptions{Protocol: "relp", TLS: certs.Server},
			deliver.SyslogOptions{Network: "relp", TLS: true, CAFile: certs.CAFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testSinkConformance(t, func(t *testing.T) *sinkHarness {
				return syslogHarness(t, tc.so, tc.o)
			})
		})
	}
}

// TestSyslog_RELPResendsOnlyUnanswered: the receiver drops every connection
// at its 100th message; only unanswered messages are sent again, so every
// event arrives, and duplicates are bounded by one window per drop (answers
// the receiver wrote can still be lost: closing a socket with unread data
// resets it, and the client discards what it had not read).
func TestSyslog_RELPResendsOnlyUnanswered(t *testing.T) {
	const window = 32
	srv, s := fakeSyslog(t, syslogtest.ServerOptions{Protocol: "relp"}, deliver.SyslogOptions{Network: "relp", RELPWindow: window})
	srv.SetFault(syslogtest.Fault{DropAfter: 100})
	sendAll(t, s, []*deliver.Batch{batchOf(t, 1, 0, 1000)})
	st := srv.Stats()
	if st.Drops < 9 || st.Sessions < 10 {
		t.Errorf("stats %+v: want at least 9 dropped connections and 10 sessions", st)
	}
	seen := map[string]int{}
	dups := 0
	for _, m := range srv.Messages() {
		if seen[msgN(m)]++; seen[msgN(m)] > 1 {
			dups++
		}
	}
	for i := 0; i < 1000; i++ {
		if seen[strconv.Itoa(i)] == 0 {
			t.Errorf("event %d never arrived", i)
		}
	}
	if dups > st.Drops*window {
		t.Errorf("%d duplicates over %d drops, want at most one window (%d) per drop", dups, st.Drops, window)
	}
	t.Logf("%d drops, %d sessions, %d duplicates", st.Drops, st.Sessions, dups)
}

// TestSyslog_RELPAckTimeout: answers slower than RELPAckTimeout make the
// sink drop the session and resend; once the receiver is fast again,
// everything arrives.
func TestSyslog_RELPAckTimeout(t *testing.T) {
	srv, s := fakeSyslog(t, syslogtest.ServerOptions{Protocol: "relp"},
		deliver.SyslogOptions{Network: "relp", RELPAckTimeout: 50 * time.Millisecond})
	srv.SetFault(syslogtest.Fault{Delay: 200 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- s.Send(context.Background(), batchOf(t, 1, 0, 20)) }()
	waitFor(t, "a retry after the ack timeout", func() bool { return s.Retries() >= 1 })
	srv.SetFault(syslogtest.Fault{})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range srv.Messages() {
		got[msgN(m)] = true
	}
	for i := 0; i < 20; i++ {
		if !got[strconv.Itoa(i)] {
			t.Errorf("event %d never arrived", i)
		}
	}
}

// TestSyslog_StreamFramingAtFake: both framings carry messages with
// non-ASCII, quotes and a long value intact, exactly once, and the fake's
// strict RFC 5424 and framing checks find nothing wrong.
func TestSyslog_StreamFramingAtFake(t *testing.T) {
	for _, framing := range []string{"octet-counting", "non-transparent"} {
		t.Run(framing, func(t *testing.T) {
			srv, s := fakeSyslog(t, syslogtest.ServerOptions{Framing: framing}, deliver.SyslogOptions{Network: "tcp", Framing: framing})
			sendAll(t, s, runBatches(t, framing, 3, 100))
			waitFor(t, "300 messages", func() bool { return len(srv.Messages()) >= 300 })
			var recs []syslogtest.Record
			for _, m := range srv.Messages() {
				p, err := syslogtest.ParseRFC5424(m)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, syslogtest.Record{Host: p.Hostname, App: p.AppName, SD: p.SD, Msg: p.Msg})
			}
			ta := checkRecords(t, recs, framing, false, true)
			if ta.total != 300 || ta.dups != 0 {
				t.Errorf("received %d (%d duplicates), want 300", ta.total, ta.dups)
			}
		})
	}
}

// TestSyslog_RELPRejectDeadLettersThatEvent runs spool → delivery loop →
// syslog sink over RELP → fake receiver answering "500" to one message:
// exactly that event lands in the dead-letter queue, every other event is
// delivered, and the spool drains.
func TestSyslog_RELPRejectDeadLettersThatEvent(t *testing.T) {
	srv, s := fakeSyslog(t, syslogtest.ServerOptions{Protocol: "relp"}, deliver.SyslogOptions{Network: "relp", RELPWindow: 4})
	srv.SetFault(syslogtest.Fault{Reject: func(msg string) bool { return msgN(msg) == "13" }})
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 64 << 20, MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := sp.Put(ctx, record(t, uint64(i+1), numbered(i*10, 10))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	l := deliver.NewLoop(sp, s, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
	stop := runLoop(t, l)
	waitFor(t, "the spool to drain", func() bool { return sp.Stats().Depth == 0 })
	stop()

	var dead []string
	for dl, err := range sp.DeadLetters() {
		if err != nil {
			t.Fatal(err)
		}
		evs, err := deliver.Decode(dl.Record)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			dead = append(dead, fieldN(e))
		}
		if !strings.Contains(dl.Reason, "500 rejected by fault") {
			t.Errorf("dead-letter reason %q does not carry the receiver's answer", dl.Reason)
		}
	}
	if !slices.Equal(dead, []string{"13"}) {
		t.Errorf("dead-lettered events %v, want [13]", dead)
	}
	seen := map[string]int{}
	for _, m := range srv.Messages() {
		seen[msgN(m)]++
	}
	for i := 0; i < 30; i++ {
		n := strconv.Itoa(i)
		if i == 13 && seen[n] != 0 || i != 13 && seen[n] == 0 {
			t.Errorf("event %d received %d times", i, seen[n])
		}
	}
	if st := l.Stats(); st.DeadLettered[deliver.ReasonRejected] != 1 {
		t.Errorf("loop stats: dead-lettered %v, want 1 rejected", st.DeadLettered)
	}
}

// BenchmarkSyslog_Fake measures the client alone: messages/s into the
// in-process fake receiver over TCP and RELP (same events as
// BenchmarkSyslog_Rsyslog).
func BenchmarkSyslog_Fake(b *testing.B) {
	bs := runBatches(b, "bench", 1, 1000)
	bs[0].Events = append(bs[0].Events[:7:7], bs[0].Events[8:]...) // no long value
	for _, tc := range []struct {
		name string
		so   syslogtest.ServerOptions
		o    deliver.SyslogOptions
	}{
		{"tcp", syslogtest.ServerOptions{}, deliver.SyslogOptions{Network: "tcp"}},
		{"relp", syslogtest.ServerOptions{Protocol: "relp"}, deliver.SyslogOptions{Network: "relp"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := syslogtest.NewServer(b, tc.so)
			tc.o.Address = srv.Addr()
			s := newSyslogSink(b, tc.o)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Send(ctx, bs[0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(bs[0].Events))/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
