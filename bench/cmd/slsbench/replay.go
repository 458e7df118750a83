package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Benchmark 8: slsrelay replay of the preloaded end-to-end logstore (the
// whole of it, as a time range) into the HEC receiver, in the same sitting
// as the live end-to-end figure.

func init() { benchFuncs["replay"] = (*bench).benchReplay }

// replayResult is one replay run: process start → every event received.
type replayResult struct {
	Events       int
	Dups         int
	Elapsed      time.Duration // process start → last event received
	EventsPerSec float64
	RawMBps      float64
	CPUPerGB     float64
	PeakRSS      int64
}

func (b *bench) benchReplay(ctx context.Context, rep *report) error {
	// The range ends at "now", counted in whole seconds: let the second in
	// which the load ended pass.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)) + 20*time.Millisecond)
	for i := 0; i < b.opts.runs; i++ {
		r, err := b.runReplay(ctx, i)
		if err != nil {
			return err
		}
		b.logf("replay run %d: %d events in %s: %.0f events/s, %.1f MB/s raw, %.1f CPU s/GB, peak RSS %.0f MiB, dups %d",
			i+1, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerSec, r.RawMBps, r.CPUPerGB, mib(r.PeakRSS), r.Dups)
		rep.replay = append(rep.replay, r)
	}
	return nil
}

func (b *bench) runReplay(ctx context.Context, run int) (replayResult, error) {
	var res replayResult
	tr := newTracker()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	name := fmt.Sprintf("replay-%d", run)
	dir := filepath.Join(b.work, name)
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	cfg, err := relayConfig{
		DataDir: filepath.Join(dir, "data"), SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: b.e2e.Logstore, Group: b.nextGroup(name), HECURL: hec.URL(), HECExtra: b.opts.hecExtra,
	}.write(dir, "relay")
	if err != nil {
		return res, err
	}
	p, err := startProcess(b.relayBin, []string{"replay", "--config", cfg, "--source", benchProject + "/" + b.e2e.Logstore,
		"--from", "-24h", "--to", "now"}, filepath.Join(dir, "relay.log"), 250*time.Millisecond)
	if err != nil {
		return res, err
	}
	defer p.kill()
	if err := waitAll(ctx, p, tr, b.e2e.Logs, b.timeout(b.e2e.Logs)); err != nil && !exitedCleanly(p) {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	_, last := tr.span()
	u, err := p.wait(2 * time.Minute)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if miss := tr.missing(b.opts.seed, perShardCounts(b.e2e.Logs, b.e2e.Shards)); miss != 0 {
		return res, fmt.Errorf("%s: %d events lost", name, miss)
	}
	res.Events, res.Dups, _ = tr.counts()
	res.Elapsed = last.Sub(p.started)
	res.EventsPerSec = float64(res.Events) / res.Elapsed.Seconds()
	res.RawMBps = float64(b.e2e.RawBytes) / 1e6 / res.Elapsed.Seconds()
	res.PeakRSS = u.PeakRSS
	res.CPUPerGB = u.CPU.Seconds() / (float64(b.e2e.RawBytes) / 1e9)
	return res, nil
}

func exitedCleanly(p *relayProc) bool {
	done, err := p.exited()
	return done && err == nil
}

func (r *report) replayRate() float64 {
	return median(pluck(r.replay, func(x replayResult) float64 { return x.EventsPerSec }))
}

func (r *report) renderReplay(p printer) {
	if len(r.replay) == 0 {
		return
	}
	p("## 8. Replay: `slsrelay replay` of the whole end-to-end logstore → HEC receiver")
	p("")
	p("The same preloaded logstore as benchmark 1, read as a time range (`--from -24h --to now`: every shard")
	p("from its cursor at FROM to its cursor at TO, no consumer group) through the replay's own spool into a")
	p("fresh receiver. Rate is over *process start → last event received* (planning the shards included).")
	p("")
	p("| | replay |")
	p("| --- | --- |")
	row := func(name, f string, get func(replayResult) float64) {
		p("| %s | %s |", name, cell(pluck(r.replay, get), f))
	}
	row("events/s", "%.0f", func(x replayResult) float64 { return x.EventsPerSec })
	row("raw MB/s", "%.1f", func(x replayResult) float64 { return x.RawMBps })
	row("relay CPU s per GB raw", "%.1f", func(x replayResult) float64 { return x.CPUPerGB })
	row("peak RSS, MiB", "%.0f", func(x replayResult) float64 { return mib(x.PeakRSS) })
	row("elapsed, s", "%.2f", func(x replayResult) float64 { return x.Elapsed.Seconds() })
	row("duplicates", "%.0f", func(x replayResult) float64 { return float64(x.Dups) })
	p("")
}
