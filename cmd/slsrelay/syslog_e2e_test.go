package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/deliver/syslogtest"
)

// TestRelay_SyslogRELPToRsyslog: SLS emulator → relay (in-process) → a real
// rsyslogd over RELP. Every event arrives exactly once (counted by event_id
// in rsyslogd's output) with its SLS metadata in the structured data.
// Skips when rsyslogd is missing, fails instead under CI=true.
func TestRelay_SyslogRELPToRsyslog(t *testing.T) {
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{RELP: true})
	const shards, groups, perGroup = 4, 100, 100
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	exp := writeLogs(t, w.sls, shards, groups, perGroup, 23)
	total := len(exp.logs)

	cfg := w.config()
	cfg.Sinks = []SinkConfig{{Name: "rsyslog", Type: "syslog", Syslog: &SyslogConfig{Network: "relp", Address: rs.RELPAddr}}}
	start := time.Now()
	rr := startRelay(t, cfg, nil)
	counts := map[string]int{}
	var recs []syslogtest.Record
	count := func() int {
		recs = rs.Records()
		clear(counts)
		for _, r := range recs {
			var f struct {
				ID string `json:"event_id"`
			}
			if json.Unmarshal([]byte(r.Msg), &f) == nil && f.ID != "" {
				counts[f.ID]++
			}
		}
		return len(counts)
	}
	waitFor(t, 3*time.Minute, fmt.Sprintf("%d events at rsyslogd", total), func() bool { return count() >= total })
	elapsed := time.Since(start)
	if err := rr.stop(); err != nil {
		t.Fatalf("relay stopped with %v", err)
	}
	rs.Quiet(300*time.Millisecond, 10*time.Second)
	count()
	dups, missing := 0, 0
	for _, id := range exp.order {
		switch c := counts[id]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("%d events through the relay into rsyslogd over RELP in %s (%.0f events/s incl. start-up)",
		len(counts), elapsed.Round(time.Millisecond), float64(len(counts))/elapsed.Seconds())
	if missing != 0 || dups != 0 || len(counts) != total {
		t.Fatalf("rsyslogd holds %d distinct events, %d missing, %d duplicates; want %d exactly once", len(counts), missing, dups, total)
	}
	sd, err := syslogtest.ParseSD(recs[0].SD)
	if err != nil || sd["sls@32473"]["project"] != testProject || sd["sls@32473"]["logstore"] != testLogstore {
		t.Errorf("structured data %q (%v): want project %q, logstore %q", recs[0].SD, err, testProject, testLogstore)
	}
}
