package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// TestRelay_RateLimitedDrainInterleaves: HEC is down while a backlog
// builds up in the spool; when it comes back, the sink drains at its
// rate_limit, and logs written to SLS after that are delivered interleaved
// with the backlog (spool lanes), not after all of it. The check is on
// arrival order, not on time: a FIFO spool would deliver every new event
// after the last backlog event.
func TestRelay_RateLimitedDrainInterleaves(t *testing.T) {
	const shards, perGroup = 2, 50
	const backlogGroups, freshGroups = 240, 20 // 12,000 and 1,000 logs
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Status: 503, Code: 9})
	cfg := w.config()
	cfg.Sinks[0].RateLimit = 3000 // the backlog drains in about 4 s
	cfg.Spool.InterleaveAfter = Duration(300 * time.Millisecond)
	cfg.Sources[0].MaxFetchGroups = 10 // 500-log records
	backlog := writeLogs(t, w.sls, shards, backlogGroups, perGroup, 21)
	rr := startRelay(t, cfg, nil)

	worker := rr.r.ingest.Workers()[0]
	waitFor(t, 2*time.Minute, "the backlog spooled", func() bool { return worker.Stats().Logs >= int64(len(backlog.logs)) })
	time.Sleep(2 * time.Duration(cfg.Spool.InterleaveAfter)) // the backlog is older than interleave_after
	w.hec.SetFault(hectest.Fault{})
	waitFor(t, time.Minute, "the drain to start", func() bool { return w.hec.EventCount() > 0 })
	fresh := writeLogs(t, w.sls, shards, freshGroups, perGroup, 22)
	total := len(backlog.logs) + len(fresh.logs)
	waitFor(t, 3*time.Minute, fmt.Sprintf("%d events at HEC", total), func() bool { return w.hec.EventCount() >= total })
	if err := rr.stop(); err != nil {
		t.Fatalf("relay stopped with %v", err)
	}

	seen := map[string]bool{}
	backlogSeen, backlogAtLastFresh, freshSeen := 0, -1, 0
	for _, ev := range w.hec.Events() {
		var b struct {
			ID string `json:"event_id"`
		}
		if err := json.Unmarshal(ev.Event, &b); err != nil || b.ID == "" {
			t.Fatalf("event without event_id: %s", ev.Event)
		}
		if seen[b.ID] {
			continue
		}
		seen[b.ID] = true
		switch {
		case backlog.logs[b.ID] != nil:
			backlogSeen++
		case fresh.logs[b.ID] != nil:
			freshSeen++
			if freshSeen == len(fresh.logs) {
				backlogAtLastFresh = backlogSeen
			}
		default:
			t.Fatalf("unknown event %s", b.ID)
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct events delivered, want %d", len(seen), total)
	}
	t.Logf("when the last of %d new events arrived, %d of %d backlog events had", len(fresh.logs), backlogAtLastFresh, len(backlog.logs))
	if backlogAtLastFresh >= len(backlog.logs)*9/10 {
		t.Fatalf("new events waited behind the backlog: the last one arrived after %d of %d backlog events", backlogAtLastFresh, len(backlog.logs))
	}
}
