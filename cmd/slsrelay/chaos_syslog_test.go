package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"slsrelay/deliver/syslogtest"
)

// Scenario 9: the syslog receiver restarts mid-stream.

func TestChaos_SyslogRestarts(t *testing.T) {
	bin := chaosBinary(t)
	restarts := pick(3, 10)
	for _, network := range []string{"tcp", "relp"} {
		t.Run("rsyslog-"+network, func(t *testing.T) {
			begin := time.Now()
			rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{TCP: true, RELP: true})
			addr := rs.TCPAddr
			if network == "relp" {
				addr = rs.RELPAddr
			}
			w := newChaosWorld(t, chaosShards, 909)
			dd := filepath.Join(w.dir, "data")
			sink := fmt.Sprintf("  - name: rsyslog\n    type: syslog\n    syslog:\n      address: %s\n      network: %s\n      write_timeout: 2s\n", addr, network)
			cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, Sinks: []int{}, ExtraSinks: sink})
			log := filepath.Join(w.dir, "relay.log")
			stop := w.load(chaosPerGroup, 2*chaosPeriod)
			p := startProc(t, bin, cfg, log)
			for i := 0; i < restarts; i++ {
				time.Sleep(pick(800*time.Millisecond, 2*time.Second))
				rs.Restart()
			}
			time.Sleep(time.Second)
			stop()
			recv := map[string]int{}
			count := func() int {
				clear(recv)
				for _, r := range rs.Records() {
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
			wait := pick(time.Minute, 3*time.Minute)
			if network == "tcp" { // what plain TCP loses never arrives
				wait = pick(20*time.Second, time.Minute)
			}
			ok := waitUntil(wait, func() bool { return count() == 0 })
			_, clean := p.term(30 * time.Second)
			missing := count()
			tl := tally{Lost: missing}
			w.mu.Lock()
			tl.Written = len(w.written)
			for id, n := range recv {
				if _, ok := w.written[id]; ok {
					tl.Unique++
					tl.Duplicates += n - 1
				}
			}
			w.mu.Unlock()
			bound := "lost 0 (RELP: every message answered)"
			pass := clean && (ok || network != "relp")
			if network == "relp" {
				pass = pass && missing == 0
			} else {
				bound = "loss measured (plain TCP cannot tell what the receiver read before it died)"
			}
			id := 9
			report(t, chaosRow{ID: id, Name: "syslog receiver restarts: rsyslog over " + network, Load: fmt.Sprintf("%d shards; a %d-log group every %s", chaosShards, chaosPerGroup, 2*chaosPeriod),
				Faults:  fmt.Sprintf("rsyslogd stopped and restarted %d times mid-stream (by PID)", restarts),
				Bound:   bound,
				T:       tl,
				Figures: []string{fmt.Sprintf("loss: %d of %d events (%.3f%%) over %d restarts", missing, tl.Written, 100*float64(missing)/float64(max(tl.Written, 1)), restarts)},
				Pass:    pass,
				Notes:   "syslog-ng and TLS variants are not in the campaign yet",
				Elapsed: time.Since(begin),
			})
		})
	}
}
