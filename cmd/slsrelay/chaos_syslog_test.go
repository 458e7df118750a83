package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/syslogtest"
)

// Scenario 9: the syslog receiver restarts mid-stream.

// syslogReceiver is what scenario 9 needs of rsyslogd and syslog-ng.
type syslogReceiver interface {
	Restart()
	Records() []syslogtest.Record
	Quiet(settle, timeout time.Duration) []syslogtest.Record
	Log() string
}

// syslogCase is one receiver and transport of scenario 9.
type syslogCase struct {
	receiver string // rsyslog or syslog-ng
	network  string // tcp, tls, relp, relp+tls
}

var syslogCases = []syslogCase{
	{"rsyslog", "tcp"}, {"rsyslog", "tls"}, {"rsyslog", "relp"}, {"rsyslog", "relp+tls"},
	{"syslog-ng", "tcp"}, {"syslog-ng", "tls"},
	// syslog-ng OSE has no RELP server (RELP is a syslog-ng Premium
	// Edition feature; the 3.38 build has no relp module): no such row.
}

// start starts the case's receiver and returns it with the sink's YAML.
func (c syslogCase) start(t *testing.T) (syslogReceiver, string) {
	certs := syslogtest.NewCerts(t, t.TempDir())
	var rcv syslogReceiver
	var addr, extra string
	network := c.network
	switch c.receiver + " " + c.network {
	case "rsyslog tcp":
		rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TCP: true})
		rcv, addr = rs, rs.TCPAddr
	case "rsyslog tls":
		rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TLS: true, CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
		rcv, addr = rs, rs.TLSAddr
		extra = fmt.Sprintf("      tls: {ca_file: %s}\n", certs.CAFile)
	case "rsyslog relp":
		rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{RELP: true})
		rcv, addr = rs, rs.RELPAddr
	case "rsyslog relp+tls":
		// imrelp with certificates demands a client certificate.
		rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{RELPTLS: true, RequireClientCert: true,
			CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
		rcv, addr, network = rs, rs.RELPTLSAddr, "relp"
		extra = fmt.Sprintf("      use_tls: true\n      tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", certs.CAFile, certs.ClientCert, certs.ClientKey)
	case "syslog-ng tcp":
		// network(flags(syslog-protocol)): RFC 5424, one message per line.
		ng := syslogtest.StartSyslogNG(t, syslogtest.SyslogNGOptions{RFC5424: true})
		rcv, addr = ng, ng.RFC5424Addr
		extra = "      framing: non-transparent\n"
	case "syslog-ng tls":
		// syslog(transport(tls)): RFC 5425, octet counting.
		ng := syslogtest.StartSyslogNG(t, syslogtest.SyslogNGOptions{TLS: true, CAFile: certs.CAFile, CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
		rcv, addr = ng, ng.TLSAddr
		extra = fmt.Sprintf("      tls: {ca_file: %s}\n", certs.CAFile)
	default:
		t.Fatalf("no receiver for %v", c)
	}
	sink := fmt.Sprintf("  - name: syslog\n    type: syslog\n    syslog:\n      address: %s\n      network: %s\n      write_timeout: 2s\n%s", addr, network, extra)
	return rcv, sink
}

func (c syslogCase) relp() bool { return strings.HasPrefix(c.network, "relp") }

func TestChaos_SyslogRestarts(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	restarts := pick(2, 10)
	gap := pick(700*time.Millisecond, 2*time.Second)
	for _, c := range syslogCases {
		t.Run(c.receiver+"-"+strings.ReplaceAll(c.network, "+", "-"), func(t *testing.T) {
			begin := time.Now()
			rcv, sink := c.start(t)
			w := newChaosWorld(t, chaosShards, 909)
			dd := filepath.Join(w.dir, "data")
			maddr := freeAddr(t)
			cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, Sinks: []int{}, ExtraSinks: sink, MetricsAddr: maddr})
			log := filepath.Join(w.dir, "relay.log")
			stop := w.load(chaosPerGroup, 2*chaosPeriod)
			p := startProc(t, bin, cfg, log)
			// Each restart comes while records are being delivered.
			delivered := func() float64 { return metric(maddr, "slsrelay_delivered_events_total") }
			midStream := 0
			for i := 0; i < restarts; i++ {
				d0 := delivered()
				time.Sleep(gap)
				waitUntil(time.Minute, func() bool { return delivered() > d0 })
				if delivered() > d0 {
					midStream++
				}
				rcv.Restart()
			}
			time.Sleep(gap)
			stop()
			w.mu.Lock()
			written := len(w.written)
			w.mu.Unlock()
			// Done when the relay spooled every event and its spool is
			// empty (each record sent and, for RELP, answered), and the
			// receiver wrote what it got.
			drained := waitUntil(pick(2*time.Minute, 5*time.Minute), func() bool {
				return metric(maddr, "slsrelay_ingest_logs_total") >= float64(written) && metric(maddr, "slsrelay_spool_records") == 0
			})
			recv := map[string]int{}
			count := func() int {
				clear(recv)
				for _, r := range rcv.Records() {
					if id := eventID([]byte(r.Msg)); id != "" {
						recv[id]++
					}
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				n := 0
				for id := range w.written {
					if recv[id] == 0 {
						n++
					}
				}
				return n
			}
			rcv.Quiet(time.Second, 30*time.Second)
			if c.relp() {
				// Every message was answered: it is in the receiver's
				// queue, on its way to the file.
				waitUntil(30*time.Second, func() bool { return count() == 0 })
			}
			_, clean := p.term(time.Minute)
			missing := count()
			tl := tally{Lost: missing, Written: written}
			w.mu.Lock()
			for id, n := range recv {
				if _, ok := w.written[id]; ok {
					tl.Unique++
					tl.Duplicates += n - 1
				}
			}
			w.mu.Unlock()
			pass := clean && drained && midStream == restarts
			bound := "lost 0 (RELP: every message answered before its record leaves the spool)"
			if c.relp() {
				pass = pass && missing == 0
			} else {
				bound = "loss measured (a stream cannot tell what the receiver read before it died)"
			}
			if !pass {
				t.Logf("drained %v, clean stop %v, restarts mid-stream %d of %d; relay log:\n%s\nreceiver log:\n%s",
					drained, clean, midStream, restarts, tail(log, 10), rcv.Log())
			}
			notes := ""
			if c.receiver == "syslog-ng" {
				notes = "syslog-ng OSE 3.38 has no RELP server (RELP is only in syslog-ng Premium Edition), so syslog-ng is tested over TCP and TLS only"
			}
			if c.network == "relp+tls" {
				notes = "imrelp with tls=\"on\" demands a client certificate: the sink sends one (mutual TLS)"
			}
			report(t, chaosRow{ID: 9, Name: "syslog restarts: " + c.receiver + " " + c.network,
				Load:   fmt.Sprintf("%d shards; a %d-log group every %s; one syslog sink (%s, RFC 5424)", chaosShards, chaosPerGroup, 2*chaosPeriod, c.network),
				Faults: fmt.Sprintf("%s stopped (SIGTERM by PID) and restarted %d times mid-stream, %s apart", c.receiver, restarts, gap),
				Bound:  bound,
				T:      tl,
				Figures: []string{fmt.Sprintf("loss: %d of %d events (%.3f%%) over %d restarts (%.1f events per restart); duplicates %d",
					missing, tl.Written, 100*float64(missing)/float64(max(tl.Written, 1)), restarts, float64(missing)/float64(restarts), tl.Duplicates)},
				Pass:    pass,
				Notes:   notes,
				Elapsed: time.Since(begin),
			})
		})
	}
}
