package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// e2eResult is one end-to-end run: emulator (loaded beforehand) → relay
// binary → HEC receiver.
type e2eResult struct {
	Ack          bool
	Events       int
	Dups         int
	Startup      time.Duration // relay start → its first pull
	Elapsed      time.Duration // first pull → last event received
	EventsPerSec float64
	RawMBps      float64 // raw bytes (serialized LogGroups) per second, 1e6
	CPU          time.Duration
	CPUPerGB     float64 // relay CPU seconds per 1e9 raw bytes
	PeakRSS      int64
	PullWire     int64 // SLS response bytes (compressed) during the run
	PullRaw      int64 // x-log-bodyrawsize summed
	HECBody      int64 // HEC JSON bytes received (uncompressed)
	HECWire      int64 // HEC bytes on the wire (gzip)
	Requests     int
}

// newReceiver starts a HEC receiver that counts workload ids into t.
func newReceiver(t *tracker, ack bool) (*hectest.Server, error) {
	return hectest.New(hectest.Options{Token: benchToken, AckEnabled: ack, Consume: func(evs []hectest.Event) {
		now := time.Now()
		ids := make([]string, len(evs))
		for i := range evs {
			ids[i] = eventID(evs[i].Event)
		}
		t.add(ids, now)
	}})
}

// runE2E relays the whole e2e logstore once, with a fresh consumer group and
// data directory, and checks that every event arrived.
func (b *bench) runE2E(ctx context.Context, ack bool, run int) (e2eResult, error) {
	res := e2eResult{Ack: ack}
	tr := newTracker()
	hec, err := newReceiver(tr, ack)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	name := fmt.Sprintf("e2e-ack%t-%d", ack, run)
	dir := filepath.Join(b.work, name)
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	cfg, err := relayConfig{
		DataDir: filepath.Join(dir, "data"), SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: b.e2e.Logstore, Group: b.nextGroup(name), HECURL: hec.URL(), HECExtra: b.opts.hecExtra, SourceExtra: b.opts.sourceExtra, Ack: ack,
	}.write(dir, "relay")
	if err != nil {
		return res, err
	}
	before := b.sls.Stats()
	p, err := startRelay(b.relayBin, cfg, filepath.Join(dir, "relay.log"), 250*time.Millisecond, b.profileArgs(name)...)
	if err != nil {
		return res, err
	}
	defer p.kill()
	t0, err := b.waitFirstPull(ctx, p, before.Pulls)
	if err != nil {
		return res, err
	}
	res.Startup = t0.Sub(p.started)
	if err := waitAll(ctx, p, tr, b.e2e.Logs, b.timeout(b.e2e.Logs)); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	_, last := tr.span()
	after := b.sls.Stats()
	u, err := p.stop(30 * time.Second)
	if err != nil {
		return res, err
	}
	if miss := tr.missing(b.opts.seed, perShardCounts(b.e2e.Logs, b.e2e.Shards)); miss != 0 {
		return res, fmt.Errorf("%s: %d events lost", name, miss)
	}
	unique, dups, _ := tr.counts()
	st := hec.Stats()
	res.Events, res.Dups = unique, dups
	res.Elapsed = last.Sub(t0)
	res.EventsPerSec = float64(unique) / res.Elapsed.Seconds()
	res.RawMBps = float64(b.e2e.RawBytes) / 1e6 / res.Elapsed.Seconds()
	res.CPU, res.PeakRSS = u.CPU, u.PeakRSS
	res.CPUPerGB = u.CPU.Seconds() / (float64(b.e2e.RawBytes) / 1e9)
	res.PullWire = after.BytesServed - before.BytesServed
	res.PullRaw = after.RawBytesServed - before.RawBytesServed
	res.HECBody, res.HECWire, res.Requests = st.BodyBytes, st.WireBytes, st.Requests
	return res, nil
}

// waitFirstPull polls the emulator until it served a pull after before, and
// returns when.
func (b *bench) waitFirstPull(ctx context.Context, p *relayProc, before int64) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b.sls.Stats().Pulls > before {
			return time.Now(), nil
		}
		if done, err := p.exited(); done {
			return time.Time{}, fmt.Errorf("relay exited: %v\n%s", err, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("relay made no pull in 2 minutes\n%s", tailFile(p.log, 20))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitAll polls until the tracker counted want distinct ids, the relay
// died, ctx ended or timeout passed.
func waitAll(ctx context.Context, p *relayProc, tr *tracker, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		u, _, bad := tr.counts()
		if u >= want {
			return nil
		}
		if done, err := p.exited(); done {
			return fmt.Errorf("relay exited with %d of %d events delivered: %v\n%s", u, want, err, tailFile(p.log, 20))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d events arrived within %s (%d without an id); relay log %s:\n%s",
				u, want, timeout, bad, p.log, tailFile(p.log, 10))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// delayPercentiles returns the p50, p99 and max of delays, and the p99 of
// those whose event was written (writtenAt, unix ns) at settle or later (0
// if none was). It sorts copies.
func delayPercentiles(delays []time.Duration, writtenAt []int64, settle time.Time) (p50, p99, mx, settledP99 time.Duration) {
	if len(delays) == 0 {
		return 0, 0, 0, 0
	}
	d := slices.Clone(delays)
	var settled []time.Duration
	for i, at := range writtenAt {
		if at >= settle.UnixNano() {
			settled = append(settled, delays[i])
		}
	}
	slices.Sort(d)
	p50, p99, mx = d[len(d)/2], d[len(d)*99/100], d[len(d)-1]
	if len(settled) > 0 {
		slices.Sort(settled)
		settledP99 = settled[len(settled)*99/100]
	}
	return p50, p99, mx, settledP99
}

// latencyGroups builds n serialized log groups of perGroup audit logs,
// group i for shard i%shards from that shard's generator, and returns them
// with each shard's event_id prefix.
func latencyGroups(seed int64, shards, n int) ([][]byte, []string, error) {
	gens := make([]*slstest.Generator, shards)
	prefixes := make([]string, shards)
	for sh := range gens {
		s := genSeed(seed, sh) + 500
		gens[sh] = slstest.NewGenerator(slstest.KindAudit, s)
		prefixes[sh] = fmt.Sprintf("%s-%d-", slstest.KindAudit, s)
	}
	groups := make([][]byte, n)
	for i := range groups {
		raw, err := gens[i%shards].LogGroup(perGroup).Marshal()
		if err != nil {
			return nil, nil, err
		}
		groups[i] = raw
	}
	return groups, prefixes, nil
}

// latencyResult is the delay from SLS receipt to HEC receipt under a steady
// live load.
type latencyResult struct {
	TargetPerSec float64
	Achieved     float64 // events written per second
	Events       int
	P50, P99     time.Duration
	Max          time.Duration
	// SettledP99 is the p99 of the events written from settleAfter on,
	// once the relay has absorbed the step from idle to this load (the
	// first pulls find up to idle_fetch_interval of data, the process is
	// cold); shown beside P99, which stays the figure of record.
	SettledP99 time.Duration
	PeakRSS    int64
}

// settleAfter is how long into the latency run SettledP99 starts counting.
const settleAfter = 2 * time.Second

// runLatency writes live into a fresh logstore at rate events/s for dur,
// with a relay consuming it, and measures each event's delay from its write
// into the emulator (Append stamps the receive time) to its arrival at the
// receiver.
func (b *bench) runLatency(ctx context.Context, rate float64, dur time.Duration, run int) (latencyResult, error) {
	res := latencyResult{TargetPerSec: rate}
	logstore := fmt.Sprintf("live-%d", run)
	const shards = 8
	if err := b.sls.CreateLogstore(benchProject, slstest.LogstoreOptions{Name: logstore, Shards: shards}); err != nil {
		return res, err
	}
	tr := newTracker()
	tr.trackWrites()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	name := fmt.Sprintf("latency-%d", run)
	dir := filepath.Join(b.work, name)
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	group := b.nextGroup(name)
	cfg, err := relayConfig{
		DataDir: filepath.Join(dir, "data"), SLSEndpoint: b.sls.Endpoint(), SLSAddr: b.sls.Addr(),
		Logstore: logstore, Group: group, HECURL: hec.URL(), HECExtra: b.opts.hecExtra, SourceExtra: b.opts.sourceExtra,
	}.write(dir, "relay")
	if err != nil {
		return res, err
	}
	p, err := startRelay(b.relayBin, cfg, filepath.Join(dir, "relay.log"), 250*time.Millisecond, b.profileArgs(name)...)
	if err != nil {
		return res, err
	}
	defer p.kill()
	// Write only once the relay works on every shard, so that the delays
	// are the steady state's, not the consumer's start: held, as its
	// heartbeats report, not merely assigned (the emulator's table assigns
	// every shard at once, but hands a new consumer its shards over two
	// heartbeats, up to a second apart).
	deadline := time.Now().Add(time.Minute)
	for len(b.sls.Held(benchProject, logstore, group)) < shards {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%s: shards not held within a minute\n%s", name, tailFile(p.log, 10))
		}
		if done, err := p.exited(); done {
			return res, fmt.Errorf("%s: relay exited: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The log groups are built and serialized before the clock starts: on
	// this machine the generator competes with the relay for the two
	// cores, while a real SLS's producers run elsewhere. What is timed
	// stays the same: from the emulator's receipt to the receiver's.
	groups, prefixes, err := latencyGroups(b.opts.seed+1+int64(run), shards, int(rate*dur.Seconds())/perGroup+1)
	if err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond) // the shard workers' first (empty) pulls
	next := make([]int, shards)
	start := time.Now()
	written := 0
	for time.Since(start) < dur {
		due := min(int(time.Since(start).Seconds()*rate), len(groups)*perGroup)
		for written+perGroup <= due {
			i := written / perGroup
			sh := i % shards
			if err := b.sls.AppendRaw(benchProject, logstore, sh, groups[i]); err != nil {
				return res, err
			}
			groups[i] = nil
			tr.noteWrite(prefixes[sh], next[sh], perGroup, time.Now())
			next[sh] += perGroup
			written += perGroup
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	res.Achieved = float64(written) / time.Since(start).Seconds()
	if err := waitAll(ctx, p, tr, written, time.Minute); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	u, err := p.stop(30 * time.Second)
	if err != nil {
		return res, err
	}
	res.PeakRSS = u.PeakRSS
	tr.mu.Lock()
	n := len(tr.delays)
	res.P50, res.P99, res.Max, res.SettledP99 = delayPercentiles(tr.delays, tr.delayAt, start.Add(settleAfter))
	tr.mu.Unlock()
	if n < written {
		return res, fmt.Errorf("%s: %d delays for %d events", name, n, written)
	}
	res.Events = n
	return res, nil
}
