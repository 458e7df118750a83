package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// percent is how far the job is through the range, 0..1: each shard
// counts by the receive time it has reached.
func (rr *replayRun) percent() float64 {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	n, sum := 0, 0.0
	span := rr.job.To.Sub(rr.job.From).Seconds()
	for _, st := range rr.shards {
		if st.p.Start == st.p.End && st.p.MissingFrom.IsZero() {
			continue
		}
		n++
		switch {
		case st.p.Done:
			sum++
		case !st.pos.IsZero():
			sum += min(1, max(0, st.pos.Sub(rr.job.From).Seconds()/span))
		}
	}
	if n == 0 {
		return 1
	}
	return sum / float64(n)
}

type progressLine struct {
	Job        string  `json:"replay"`
	Shards     int     `json:"shards"`
	ShardsDone int     `json:"shards_done"`
	Events     int64   `json:"events"`
	Bytes      int64   `json:"bytes"`
	Delivered  uint64  `json:"delivered_this_run"`
	Percent    float64 `json:"percent"`
	ETA        string  `json:"eta,omitempty"`
}

func (rr *replayRun) snapshot() progressLine {
	pl := progressLine{Job: rr.job.ID, Percent: rr.percent() * 100}
	rr.mu.Lock()
	for _, st := range rr.shards {
		if st.p.Start == st.p.End && st.p.MissingFrom.IsZero() {
			continue
		}
		pl.Shards++
		if st.p.Done {
			pl.ShardsDone++
		}
		pl.Events += st.p.Events
		pl.Bytes += st.p.Bytes
	}
	rr.mu.Unlock()
	for _, l := range rr.r.loops {
		pl.Delivered += l.Stats().DeliveredEvents
	}
	if done := pl.Percent/100 - rr.pct0; done > 0.001 {
		left := time.Duration(float64(time.Since(rr.started)) * (1 - pl.Percent/100) / done)
		pl.ETA = left.Round(time.Second).String()
	}
	pl.Percent = float64(int(pl.Percent*10)) / 10
	return pl
}

// reportProgress prints a progress bar on a terminal, otherwise a JSON
// line, every progress interval.
func (rr *replayRun) reportProgress(ctx context.Context) {
	tty := false
	if f, ok := rr.out.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !rr.args.progressJSON {
		tty = true
	}
	t := time.NewTicker(rr.args.progressEvery)
	defer t.Stop()
	for last := false; !last; {
		select {
		case <-ctx.Done():
			last = true // a last report, then the summary
		case <-t.C:
		}
		pl := rr.snapshot()
		if !tty {
			b, _ := json.Marshal(pl)
			fmt.Fprintln(rr.out, string(b))
			continue
		}
		const width = 30
		filled := int(pl.Percent / 100 * width)
		eta := pl.ETA
		if eta == "" {
			eta = "?"
		}
		fmt.Fprintf(rr.out, "\r[%s%s] %5.1f%%  %d events  %.1f MB  shards %d/%d  ETA %s   ",
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), pl.Percent, pl.Events,
			float64(pl.Bytes)/1e6, pl.ShardsDone, pl.Shards, eta)
		if last {
			fmt.Fprintln(rr.out)
		}
	}
}

// summary adds up the job (every run of it) for the last line.
func (rr *replayRun) summary(took time.Duration, failed bool) (replaySummary, error) {
	s := replaySummary{took: took}
	if rr.arch != nil {
		s.unit = "archived segments"
		d, err := rr.archiveDamage()
		if err != nil {
			return s, err
		}
		s.damaged = d
	}
	rr.mu.Lock()
	complete := !failed && rr.shards != nil
	for _, st := range rr.shards {
		p := st.p
		if p.Start != p.End || !p.MissingFrom.IsZero() {
			s.shards++
		}
		complete = complete && p.Done
		s.events += p.Events
		s.skipped += p.Skipped
		if !p.MissingFrom.IsZero() {
			if s.missingFrom.IsZero() || p.MissingFrom.Before(s.missingFrom) {
				s.missingFrom = p.MissingFrom
			}
			if p.MissingTo.After(s.missingTo) {
				s.missingTo = p.MissingTo
			}
		}
	}
	rr.mu.Unlock()
	for _, sc := range rr.r.cfg.Sinks {
		n, err := deadLettered(spoolDir(rr.r.cfg, sc.Name))
		if err != nil {
			return s, err
		}
		s.deadLettered = max(s.deadLettered, n)
	}
	if complete && spoolsEmpty(rr.r) {
		// Every spooled event left the spool acknowledged by the sink or
		// into the dead-letter queue (DESIGN invariants 2 and 4).
		s.delivered = s.events - s.deadLettered
		return s, nil
	}
	s.incomplete = true
	for _, l := range rr.r.loops {
		s.delivered = max(s.delivered, int64(l.Stats().DeliveredEvents))
	}
	return s, nil
}
