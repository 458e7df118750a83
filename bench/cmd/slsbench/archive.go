package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"slsrelay/spool"
)

// Benchmark 9: the archive of delivered records (sinks[].spool.retain).
// In one sitting: the end-to-end run of benchmark 1 with the archive off
// and on (same config otherwise, segment_bytes small enough that most of
// the run is archived), then `slsrelay replay --from-spool` of everything
// archived into a fresh receiver.

func init() { benchFuncs["archive"] = (*bench).benchArchive }

// archiveSegmentBytes is the spool segment size of both live runs: a
// segment is archived whole once delivered, so the run's last segment is
// not in the archive; the relay's minimum (1MiB) keeps that share small
// for small workloads too.
const archiveSegmentBytes = "1MiB"

type archiveResult struct {
	OffEventsPerSec, OnEventsPerSec float64 // live end to end, archive off / on
	OffCPUPerGB, OnCPUPerGB         float64
	ArchiveBytes                    int64
	ArchiveSegments                 int64
	ArchivedEvents                  int64
	ReplayEvents                    int
	ReplayDups                      int
	ReplayElapsed                   time.Duration // process start → last event received
	ReplayEventsPerSec              float64
	ReplayRawMBps                   float64 // raw bytes of the archived share of the logstore
}

func (b *bench) benchArchive(ctx context.Context, rep *report) error {
	for i := 0; i < b.opts.runs; i++ {
		r, err := b.runArchive(ctx, i)
		if err != nil {
			return err
		}
		b.logf("archive run %d: live %.0f events/s off, %.0f on; archive %d segments, %.1f MB, %d events; replay --from-spool %d events in %s: %.0f events/s, %.1f MB/s raw, dups %d",
			i+1, r.OffEventsPerSec, r.OnEventsPerSec, r.ArchiveSegments, float64(r.ArchiveBytes)/1e6, r.ArchivedEvents,
			r.ReplayEvents, r.ReplayElapsed.Round(time.Millisecond), r.ReplayEventsPerSec, r.ReplayRawMBps, r.ReplayDups)
		rep.archive = append(rep.archive, r)
	}
	return nil
}

// runLive relays the whole e2e logstore once into a fresh receiver with the
// archive on or off; it returns the run's rate, CPU per GB and data dir.
func (b *bench) runLive(ctx context.Context, name string, retain bool) (eps, cpuPerGB float64, dataDir string, err error) {
	tr := newTracker()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return 0, 0, "", err
	}
	defer hec.Close()
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, "", err
	}
	c := relayConfig{
		DataDir: filepath.Join(dir, "data"), SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: b.e2e.Logstore, Group: b.nextGroup(name), HECURL: hec.URL(), HECExtra: b.opts.hecExtra, SourceExtra: b.opts.sourceExtra,
		SegmentBytes: archiveSegmentBytes,
	}
	if retain {
		c.SinkSpool = "{retain: 24h}"
	}
	cfg, err := c.write(dir, "relay")
	if err != nil {
		return 0, 0, "", err
	}
	before := b.sls.Stats()
	p, err := startRelay(b.relayBin, cfg, filepath.Join(dir, "relay.log"), 250*time.Millisecond, b.profileArgs(name)...)
	if err != nil {
		return 0, 0, "", err
	}
	defer p.kill()
	t0, err := b.waitFirstPull(ctx, p, before.Pulls)
	if err != nil {
		return 0, 0, "", err
	}
	if err := waitAll(ctx, p, tr, b.e2e.Logs, b.timeout(b.e2e.Logs)); err != nil {
		return 0, 0, "", fmt.Errorf("%s: %w", name, err)
	}
	_, last := tr.span()
	u, err := p.stop(30 * time.Second)
	if err != nil {
		return 0, 0, "", err
	}
	if miss := tr.missing(b.opts.seed, perShardCounts(b.e2e.Logs, b.e2e.Shards)); miss != 0 {
		return 0, 0, "", fmt.Errorf("%s: %d events lost", name, miss)
	}
	unique, _, _ := tr.counts()
	return float64(unique) / last.Sub(t0).Seconds(), u.CPU.Seconds() / (float64(b.e2e.RawBytes) / 1e9), c.DataDir, nil
}

func (b *bench) runArchive(ctx context.Context, run int) (archiveResult, error) {
	var res archiveResult
	off := fmt.Sprintf("archive-off-%d", run)
	on := fmt.Sprintf("archive-on-%d", run)
	defer os.RemoveAll(filepath.Join(b.work, off))
	defer os.RemoveAll(filepath.Join(b.work, on))
	var err error
	if res.OffEventsPerSec, res.OffCPUPerGB, _, err = b.runLive(ctx, off, false); err != nil {
		return res, err
	}
	var dataDir string
	if res.OnEventsPerSec, res.OnCPUPerGB, dataDir, err = b.runLive(ctx, on, true); err != nil {
		return res, err
	}
	st, err := spool.InspectArchive(filepath.Join(dataDir, "spool", "hec"))
	if err != nil {
		return res, err
	}
	res.ArchiveBytes, res.ArchiveSegments, res.ArchivedEvents = st.Bytes, st.Segments, st.Events
	if st.Events == 0 {
		return res, fmt.Errorf("%s: nothing archived (%d events relayed in %s segments)", on, b.e2e.Logs, archiveSegmentBytes)
	}

	// Replay everything archived into a fresh receiver; the window ends at
	// "now", in whole seconds: let the current second pass.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)) + 20*time.Millisecond)
	tr := newTracker()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	dir := filepath.Join(b.work, on)
	cfg, err := relayConfig{
		DataDir: dataDir, SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: b.e2e.Logstore, Group: b.nextGroup(on + "-replay"), HECURL: hec.URL(), HECExtra: b.opts.hecExtra,
		SegmentBytes: archiveSegmentBytes, SinkSpool: "{retain: 24h}",
	}.write(dir, "replay")
	if err != nil {
		return res, err
	}
	before := b.sls.Stats().Pulls
	p, err := startProcess(b.relayBin, []string{"replay", "--config", cfg, "--from-spool", "--sink", "hec",
		"--from", "-24h", "--to", "now"}, filepath.Join(dir, "replay.log"), 250*time.Millisecond)
	if err != nil {
		return res, err
	}
	defer p.kill()
	if err := waitAll(ctx, p, tr, int(st.Events), b.timeout(int(st.Events))); err != nil && !exitedCleanly(p) {
		return res, fmt.Errorf("%s replay: %w", on, err)
	}
	_, last := tr.span()
	if _, err := p.wait(2 * time.Minute); err != nil {
		return res, fmt.Errorf("%s replay: %w\n%s", on, err, tailFile(p.log, 20))
	}
	if pulls := b.sls.Stats().Pulls - before; pulls != 0 {
		return res, fmt.Errorf("%s replay: %d pulls from SLS, want none", on, pulls)
	}
	res.ReplayEvents, res.ReplayDups, _ = tr.counts()
	if int64(res.ReplayEvents) != st.Events {
		return res, fmt.Errorf("%s replay: %d events received, %d archived", on, res.ReplayEvents, st.Events)
	}
	res.ReplayElapsed = last.Sub(p.started)
	res.ReplayEventsPerSec = float64(res.ReplayEvents) / res.ReplayElapsed.Seconds()
	raw := float64(b.e2e.RawBytes) * float64(st.Events) / float64(b.e2e.Logs)
	res.ReplayRawMBps = raw / 1e6 / res.ReplayElapsed.Seconds()
	return res, nil
}

func (r *report) archiveReplayRate() float64 {
	return median(pluck(r.archive, func(x archiveResult) float64 { return x.ReplayEventsPerSec }))
}

func (r *report) renderArchive(p printer) {
	if len(r.archive) == 0 {
		return
	}
	p("## 9. Archive: the cost of `spool.retain` on the live figure, and `slsrelay replay --from-spool`")
	p("")
	p("Benchmark 1's end-to-end run twice in a row, with `segment_bytes: %s` in both, the sink's archive off", archiveSegmentBytes)
	p("and then on (`spool: {retain: 24h}`); then everything the second run archived (every segment but the last,")
	p("still being written) replayed from the relay's disk into a fresh receiver, `--from -24h --to now`, with no SLS")
	p("pull (checked). Replay rate is over *process start → last event received*; raw MB/s counts the archived")
	p("share of the logstore's raw bytes.")
	p("")
	p("| | archive off | archive on |")
	p("| --- | --- | --- |")
	two := func(name, f string, off, on func(archiveResult) float64) {
		p("| %s | %s | %s |", name, cell(pluck(r.archive, off), f), cell(pluck(r.archive, on), f))
	}
	two("live end to end, events/s", "%.0f", func(x archiveResult) float64 { return x.OffEventsPerSec },
		func(x archiveResult) float64 { return x.OnEventsPerSec })
	two("relay CPU s per GB raw", "%.1f", func(x archiveResult) float64 { return x.OffCPUPerGB },
		func(x archiveResult) float64 { return x.OnCPUPerGB })
	p("")
	p("| replay --from-spool | |")
	p("| --- | --- |")
	one := func(name, f string, get func(archiveResult) float64) {
		p("| %s | %s |", name, cell(pluck(r.archive, get), f))
	}
	one("archived: segments", "%.0f", func(x archiveResult) float64 { return float64(x.ArchiveSegments) })
	one("archived: MB on disk", "%.1f", func(x archiveResult) float64 { return float64(x.ArchiveBytes) / 1e6 })
	one("archived: events", "%.0f", func(x archiveResult) float64 { return float64(x.ArchivedEvents) })
	one("events/s", "%.0f", func(x archiveResult) float64 { return x.ReplayEventsPerSec })
	one("raw MB/s", "%.1f", func(x archiveResult) float64 { return x.ReplayRawMBps })
	one("elapsed, s", "%.2f", func(x archiveResult) float64 { return x.ReplayElapsed.Seconds() })
	one("duplicates", "%.0f", func(x archiveResult) float64 { return float64(x.ReplayDups) })
	p("")
}
