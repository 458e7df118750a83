package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"slsrelay/deliver/hectest"
)

// drainResult is one backlog drain: the relay fills its spool from SLS
// while the SIEM is down, then the SIEM comes back.
type drainResult struct {
	Events       int
	RawBytes     int64
	FillTime     time.Duration // relay start → every log spooled
	FillMBps     float64       // raw MB/s spooled with the SIEM down
	SpoolBytes   int64         // on disk when the SIEM came back
	FirstEvent   time.Duration // SIEM back → first event received
	DrainTime    time.Duration // SIEM back → last event received
	DrainMBps    float64       // raw MB/s over DrainTime
	EventsPerSec float64
	PeakRSS      int64
	CPUPerGB     float64
	// Series is what the plot shows: delivered events and relay RSS over
	// time since the SIEM came back.
	Series []drainPoint
}

type drainPoint struct {
	At        time.Duration
	Delivered int
	RSS       int64
}

// loadDrain loads the drain logstore with at least bytes raw bytes.
func (b *bench) loadDrain(bytes int64) (loaded, error) {
	perLog := 1007.0 // measured raw bytes per workload log; refined below
	if b.e2e.Logs > 0 {
		perLog = float64(b.e2e.RawBytes) / float64(b.e2e.Logs)
	}
	n := int(float64(bytes)/perLog) + 1
	n = (n + 8*perGroup - 1) / (8 * perGroup) * 8 * perGroup
	return loadLogstore(b.sls, "drain", 8, n, b.opts.seed+7)
}

func (b *bench) benchDrain(ctx context.Context, rep *report) error {
	b.logf("loading the drain backlog (%.1f GB raw) into the emulator", float64(b.opts.drainBytes)/1e9)
	l, err := b.loadDrain(b.opts.drainBytes)
	if err != nil {
		return err
	}
	b.drainStore = l
	rep.drainStore = l
	b.logf("loaded %d logs, %.2f GB raw, in %s", l.Logs, float64(l.RawBytes)/1e9, l.Took.Round(time.Millisecond))
	for i := 0; i < b.opts.runs; i++ {
		r, err := b.runDrain(ctx, i)
		if err != nil {
			return err
		}
		b.logf("drain run %d: filled %.2f GB raw (%.0f MiB spooled) in %s (%.0f MB/s); drained in %s: %.0f MB/s raw, %.0f events/s, peak RSS %.0f MiB",
			i+1, float64(r.RawBytes)/1e9, mib(r.SpoolBytes), r.FillTime.Round(time.Millisecond), r.FillMBps,
			r.DrainTime.Round(time.Millisecond), r.DrainMBps, r.EventsPerSec, mib(r.PeakRSS))
		rep.drain = append(rep.drain, r)
	}
	return nil
}

func (b *bench) runDrain(ctx context.Context, run int) (drainResult, error) {
	l := b.drainStore
	res := drainResult{Events: l.Logs, RawBytes: l.RawBytes}
	tr := newTracker()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	hec.SetFault(hectest.Fault{Down: true})
	name := fmt.Sprintf("drain-%d", run)
	dir := filepath.Join(b.work, name)
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	maddr, err := freeAddr()
	if err != nil {
		return res, err
	}
	cfg, err := relayConfig{
		DataDir: filepath.Join(dir, "data"), SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: l.Logstore, Group: b.nextGroup(name), HECURL: hec.URL(), HECExtra: b.opts.hecExtra, SourceExtra: b.opts.sourceExtra, MetricsAddr: maddr, MaxBackoff: "1s", ShutdownTimeout: "5s",
	}.write(dir, "relay")
	if err != nil {
		return res, err
	}
	p, err := startRelay(b.relayBin, cfg, filepath.Join(dir, "relay.log"), 200*time.Millisecond)
	if err != nil {
		return res, err
	}
	defer p.kill()
	// Fill: every log spooled while the SIEM is down.
	deadline := time.Now().Add(b.timeout(l.Logs))
	for {
		v, ok := metric(maddr, "slsrelay_ingest_logs_total")
		if ok && int(v) >= l.Logs {
			break
		}
		if done, err := p.exited(); done {
			return res, fmt.Errorf("%s: relay exited while filling: %v\n%s", name, err, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("%s: spooled %.0f of %d logs in time\n%s", name, v, l.Logs, tailFile(p.log, 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.FillTime = time.Since(p.started)
	res.FillMBps = float64(l.RawBytes) / 1e6 / res.FillTime.Seconds()
	if v, ok := metric(maddr, "slsrelay_spool_bytes"); ok {
		res.SpoolBytes = int64(v)
	}
	cpu0 := p.cpuNow()
	back := time.Now()
	hec.SetFault(hectest.Fault{})
	var series []drainPoint
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			u, _, _ := tr.counts()
			s, _ := readProc(p.pid())
			series = append(series, drainPoint{At: time.Since(back), Delivered: u, RSS: s.RSS})
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	err = waitAll(ctx, p, tr, l.Logs, b.timeout(l.Logs))
	close(stopSampling)
	<-sampleDone
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	first, last := tr.span()
	cpu := p.cpuNow() - cpu0
	u, err := p.stop(30 * time.Second)
	if err != nil {
		return res, err
	}
	if miss := tr.missing(b.opts.seed+7, perShardCounts(l.Logs, l.Shards)); miss != 0 {
		return res, fmt.Errorf("%s: %d events lost", name, miss)
	}
	u2, _, _ := tr.counts()
	series = append(series, drainPoint{At: last.Sub(back), Delivered: u2})
	res.Series = series
	res.FirstEvent = first.Sub(back)
	res.DrainTime = last.Sub(back)
	res.DrainMBps = float64(l.RawBytes) / 1e6 / res.DrainTime.Seconds()
	res.EventsPerSec = float64(l.Logs) / res.DrainTime.Seconds()
	res.PeakRSS = u.PeakRSS
	res.CPUPerGB = cpu.Seconds() / (float64(l.RawBytes) / 1e9)
	return res, nil
}
