package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// memResult is the relay's memory with a backlog in its spool, the SIEM
// down and 16 shards assigned and consuming a trickle of live logs.
type memResult struct {
	BacklogRaw   int64 // raw bytes in the spool before the relay started
	SpoolBytes   int64 // on disk
	Steady       int64 // median VmRSS over the second half of the window
	Peak         int64 // VmHWM
	Shards       int
	Open         time.Duration // relay start → 16 shards assigned
	Window       time.Duration
	SamplesTaken int
}

const memShards = 16

// prebuildSpool writes records of the relay's format (one pull of 100
// workload groups each, the serialized LogGroupList as ingest encodes it)
// into a spool at dir until raw bytes reach size, with the barrier every 8
// records. A pool of 16 distinct records is cycled: their ids repeat, which
// does not matter here since nothing is delivered.
func prebuildSpool(ctx context.Context, dir string, size int64, seed int64) (records int, raw int64, err error) {
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 30, MinFreeBytes: 2 << 30})
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if cerr := sp.Close(); err == nil {
			err = cerr
		}
	}()
	g := slstest.NewGenerator(slstest.KindAudit, genSeed(seed, 950))
	var pool []*spool.Record
	for i := 0; i < 16; i++ {
		p, err := g.Pull(100, perGroup)
		if err != nil {
			return 0, 0, err
		}
		now := time.Now()
		pool = append(pool, &spool.Record{Project: benchProject, Logstore: "backlog", Shard: i % memShards,
			Cursor: fmt.Sprintf("MTcwMDAwMDAwMDAwMDAwMDAw%04d", i), NextCursor: fmt.Sprintf("MTcwMDAwMDAwMDAwMDAwMDAw%04d", i+1),
			Count: 100 * perGroup, MinTime: now.Unix(), MaxTime: now.Unix(), ReceivedAt: now, Payload: p})
	}
	for raw < size {
		r := *pool[records%len(pool)]
		r.ReceivedAt = time.Now()
		if err := sp.Put(ctx, &r); err != nil {
			return records, raw, err
		}
		records++
		raw += int64(len(r.Payload))
		if records%8 == 0 {
			if err := sp.Sync(ctx); err != nil {
				return records, raw, err
			}
		}
	}
	return records, raw, sp.Sync(ctx)
}

func (b *bench) benchMemory(ctx context.Context, rep *report) error {
	if err := b.sls.CreateLogstore(benchProject, slstest.LogstoreOptions{Name: "live16", Shards: memShards}); err != nil {
		return err
	}
	// A trickle into every shard while the benchmark runs: one group of
	// 100 logs per shard per second.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g := slstest.NewGenerator(slstest.KindAudit, genSeed(b.opts.seed+9, 0))
		t := time.NewTicker(time.Second / memShards)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			_ = b.sls.Append(benchProject, "live16", i%memShards, g.LogGroup(perGroup))
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for _, size := range []int64{b.opts.backlogSmall, b.opts.backlogBytes} {
		dir := filepath.Join(b.work, fmt.Sprintf("mem-%d", size))
		spoolDir := filepath.Join(dir, "data", "spool", "hec")
		if err := os.MkdirAll(spoolDir, 0o755); err != nil {
			return err
		}
		t0 := time.Now()
		n, raw, err := prebuildSpool(ctx, spoolDir, size, b.opts.seed)
		if err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("prebuild spool: %w", err)
		}
		b.logf("memory: built a %.1f GB-raw backlog (%d records) in %s", float64(raw)/1e9, n, time.Since(t0).Round(time.Millisecond))
		for i := 0; i < b.opts.runs; i++ {
			r, err := b.runMemory(ctx, dir, raw, i)
			if err != nil {
				os.RemoveAll(dir)
				return err
			}
			b.logf("memory %.1f GB backlog run %d: %d shards, steady RSS %.0f MiB, peak %.0f MiB (spool %.0f MiB on disk)",
				float64(raw)/1e9, i+1, r.Shards, mib(r.Steady), mib(r.Peak), mib(r.SpoolBytes))
			if size == b.opts.backlogSmall {
				rep.memSmall = append(rep.memSmall, r)
			} else {
				rep.memLarge = append(rep.memLarge, r)
			}
		}
		os.RemoveAll(dir)
	}
	return nil
}

func (b *bench) runMemory(ctx context.Context, dir string, raw int64, run int) (memResult, error) {
	memWindow := b.opts.memWindow
	res := memResult{BacklogRaw: raw, Window: memWindow}
	tr := newTracker()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	hec.SetFault(hectest.Fault{Down: true})
	maddr, err := freeAddr()
	if err != nil {
		return res, err
	}
	group := b.nextGroup(fmt.Sprintf("mem-%d", run))
	cfg, err := relayConfig{
		DataDir: filepath.Join(dir, "data"), SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: "live16", Group: group, HECURL: hec.URL(), HECExtra: b.opts.hecExtra, SourceExtra: b.opts.sourceExtra, MetricsAddr: maddr, SpoolMax: "16GiB", ShutdownTimeout: "5s",
	}.write(dir, fmt.Sprintf("relay-%d", run))
	if err != nil {
		return res, err
	}
	p, err := startRelay(b.relayBin, cfg, filepath.Join(dir, fmt.Sprintf("relay-%d.log", run)), 200*time.Millisecond,
		b.profileArgs(fmt.Sprintf("mem-%d-%d", raw/1e6, run))...)
	if err != nil {
		return res, err
	}
	defer p.kill()
	deadline := time.Now().Add(3 * time.Minute)
	for len(b.sls.Assignments(benchProject, "live16", group)) < memShards {
		if done, err := p.exited(); done {
			return res, fmt.Errorf("relay exited: %v\n%s", err, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("16 shards not assigned in time\n%s", tailFile(p.log, 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Open = time.Since(p.started)
	res.Shards = len(b.sls.Assignments(benchProject, "live16", group))
	from := time.Since(p.started) + memWindow/2
	select {
	case <-time.After(memWindow):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if v, ok := metric(maddr, "slsrelay_spool_bytes"); ok {
		res.SpoolBytes = int64(v)
	}
	u, err := p.stop(30 * time.Second)
	if err != nil {
		return res, err
	}
	var rss []int64
	for _, s := range p.Samples() {
		if s.At >= from {
			rss = append(rss, s.RSS)
		}
	}
	if len(rss) == 0 {
		return res, fmt.Errorf("no RSS samples in the steady window")
	}
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	res.Steady, res.Peak, res.SamplesTaken = rss[len(rss)/2], u.PeakRSS, len(rss)
	return res, nil
}
