package deliver_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/deliver/syslogtest"
)

// oversizeBatch is events first..first+n-1 of run, event first+1 carrying a
// value of long bytes.
func oversizeBatch(t *testing.T, seq uint64, run string, first, n, long int) *deliver.Batch {
	g := testGroup{topic: "audit", source: "10.0.0.1"}
	for i := first; i < first+n; i++ {
		kv := []string{"run", run, "n", strconv.Itoa(i)}
		if i == first+1 {
			kv = append(kv, "long", strings.Repeat("x", long))
		}
		g.logs = append(g.logs, testLog{sec: 1700000000 + uint32(i), kv: kv})
	}
	evs, err := deliver.Decode(record(t, seq, g))
	if err != nil {
		t.Fatal(err)
	}
	return &deliver.Batch{Seq: seq, Events: evs}
}

// TestSyslog_OversizeTruncatedIsMarkedCountedLogged: a message over
// max_message_bytes is cut, but never without a trace: RFC 5424 gets an SD
// element [slsrelay@PEN truncated="<original bytes>"] besides the suffix,
// RFC 3164 the suffix; each truncation is counted once (a re-send of the
// same record does not count again) and logged, rate-limited. Checked as
// rsyslog received it.
func TestSyslog_OversizeTruncatedIsMarkedCountedLogged(t *testing.T) {
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{UDP: true, TCP: true})
	for _, tc := range []struct {
		name string
		o    deliver.SyslogOptions
	}{
		{"rfc5424 tcp", deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr, MaxMessageBytes: 4096}},
		{"rfc3164 udp", deliver.SyslogOptions{Network: "udp", Address: rs.UDPAddr, Format: "rfc3164", MaxMessageBytes: 1024}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			tc.o.Logger = testLogger(t, &logs)
			s := newSyslogSink(t, tc.o)
			b := oversizeBatch(t, 1, tc.name, 0, 3, 20000)
			sendAll(t, s, []*deliver.Batch{b, b}) // the second is a re-send of the same record
			var long *syslogtest.Record
			recs := rs.Quiet(300*time.Millisecond, 10*time.Second)
			for i := range recs {
				if r := &recs[i]; strings.Contains(r.Msg, tc.name) && strings.Contains(r.Msg, `"n":"1"`) {
					long = r
					break
				}
			}
			if long == nil {
				t.Fatal("the long event did not arrive")
			}
			if !strings.HasSuffix(long.Msg, deliver.SyslogTruncationMarker) {
				t.Errorf("msg does not end with the marker: …%s", long.Msg[max(0, len(long.Msg)-40):])
			}
			if tc.o.Format == "" {
				sd, err := syslogtest.ParseSD(long.SD)
				if err != nil {
					t.Fatalf("SD %q: %v", long.SD, err)
				}
				n, err := strconv.Atoi(sd["slsrelay@32473"]["truncated"])
				if err != nil || n <= 20000 {
					t.Errorf("SD %q: want slsrelay@32473 truncated=<original bytes > 20000>", long.SD)
				}
				if sd["sls@32473"]["project"] == "" {
					t.Errorf("SD %q lost the sls element", long.SD)
				}
			}
			if c := s.Counters(); c.Truncated != 1 {
				t.Errorf("Counters().Truncated = %d, want 1 (one event, sent twice)", c.Truncated)
			}
			if strings.Count(logs.String(), "truncated") < 1 {
				t.Errorf("no log line about the truncation:\n%s", logs.String())
			}
		})
	}
}

// TestLoop_SyslogOversizeDeadLetterKeepsWholeEvent: oversize: dead-letter
// (or dead_letter) sends the whole event to the dead-letter queue, counted,
// and delivers the others.
func TestLoop_SyslogOversizeDeadLetterKeepsWholeEvent(t *testing.T) {
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TCP: true})
	for _, mode := range []string{"dead-letter", "dead_letter"} {
		t.Run(mode, func(t *testing.T) {
			s := newSyslogSink(t, deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr, MaxMessageBytes: 4096, Oversize: mode})
			g := testGroup{topic: "audit"}
			for i := 0; i < 3; i++ {
				kv := []string{"run", mode, "n", strconv.Itoa(i)}
				if i == 1 {
					kv = append(kv, "long", strings.Repeat("y", 20000))
				}
				g.logs = append(g.logs, testLog{sec: 1700000000, kv: kv})
			}
			q := newFakeQueue(record(t, 1, g))
			l := deliver.NewLoop(q, s, deliver.LoopOptions{Logger: testLogger(t, nil), Retry: fastRetry})
			runLoop(t, l)
			waitFor(t, "ack", func() bool { return len(q.Acked()) == 1 })
			dead := q.Dead()
			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dead))
			}
			evs, err := deliver.Decode(dead[0].rec)
			if err != nil || len(evs) != 1 {
				t.Fatalf("dead letter: %d events, %v", len(evs), err)
			}
			if v, _ := evs[0].Field("long"); len(v) != 20000 {
				t.Errorf("dead-lettered event keeps %d bytes of its 20000", len(v))
			}
			if c := s.Counters(); c.OversizeDeadLettered != 1 || c.Truncated != 0 {
				t.Errorf("Counters = %+v, want OversizeDeadLettered 1, Truncated 0", c)
			}
		})
	}
}

// TestSinks_InvalidUTF8Counted: both sinks replace invalid UTF-8 by U+FFFD
// (their formats must be valid UTF-8); each sink counts the events it
// changed so, once per record however often it is sent.
func TestSinks_InvalidUTF8Counted(t *testing.T) {
	g := testGroup{topic: "audit", logs: []testLog{
		{sec: 1700000000, kv: []string{"n", "0", "msg", "fine"}},
		{sec: 1700000000, kv: []string{"n", "1", "msg", "bad \xff\xfe byte"}},
		{sec: 1700000000, kv: []string{"n", "2", "k\xc3", "bad key"}},
	}}
	evs, err := deliver.Decode(record(t, 5, g))
	if err != nil {
		t.Fatal(err)
	}
	b := &deliver.Batch{Seq: 5, Events: evs}
	_, hec, _ := hecHarness(t, hectest.Options{}, deliver.HECOptions{})
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TCP: true})
	sl := newSyslogSink(t, deliver.SyslogOptions{Network: "tcp", Address: rs.TCPAddr})
	for _, s := range []interface {
		deliver.Sink
		deliver.CounterReporter
	}{hec, sl} {
		for range 2 {
			if err := s.Send(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.Counters().InvalidUTF8; n != 2 {
			t.Errorf("%s: Counters().InvalidUTF8 = %d, want 2", s.Name(), n)
		}
	}
}
