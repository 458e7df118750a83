package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// Scenarios 10, 11, 13 and 15: flow under trouble on either side.

// missingAt counts written ids that HEC i has not received.
func (w *chaosWorld) missingAt(i int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for id := range w.written {
		if w.recvBy[i][id] == 0 {
			n++
		}
	}
	return n
}

func TestChaos_OneSinkDead(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	w := newChaosWorld(t, chaosShards, 1010, hectest.Options{}, hectest.Options{})
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	budget, budgetBytes := pick("4MiB", "64MiB"), float64(pick(4, 64)<<20)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr, SpoolMax: budget})
	log := filepath.Join(w.dir, "relay.log")
	live, dead := w.hecs[0], w.hecs[1]
	dead.SetFault(hectest.Fault{Down: true})
	stop := w.load(chaosPerGroup, chaosPeriod/4) // 10,000 events/s: fills the dead sink's spool
	p := startProc(t, bin, cfg, log)
	t0 := time.Now()
	// Stalled: the dead sink's spool is (nearly) at its budget and ingest
	// has spooled nothing for 2 s. Time to stall is when ingest last moved.
	var stalledAt time.Duration
	last, lastChange := -1.0, time.Now()
	for time.Since(t0) < pick(3*time.Minute, 10*time.Minute) && !p.exited() {
		n := metric(maddr, "slsrelay_ingest_logs_total")
		if n != last {
			last, lastChange = n, time.Now()
		} else if n > 0 && time.Since(lastChange) > 2*time.Second && sinkMetric(maddr, "slsrelay_spool_bytes", "hec1") >= 0.9*budgetBytes {
			stalledAt = lastChange.Sub(t0)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadBytes := sinkMetric(maddr, "slsrelay_spool_bytes", "hec1")
	// The live sink kept delivering: it empties its spool while the other
	// one holds ingest.
	liveKept := waitUntil(2*time.Minute, func() bool { return sinkMetric(maddr, "slsrelay_spool_records", "hec0") == 0 })
	liveGot := live.EventCount()
	stop()
	dead.SetFault(hectest.Fault{})
	ok := waitUntil(pick(3*time.Minute, 5*time.Minute), func() bool { return w.missingAt(0) == 0 && w.missingAt(1) == 0 })
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	lost0, lost1 := w.missingAt(0), w.missingAt(1)
	report(t, chaosRow{ID: 10, Name: "two sinks, one dead", Load: fmt.Sprintf("%d shards; a %d-log group every %s; two HEC sinks; %s spool budget each", chaosShards, chaosPerGroup, chaosPeriod/4, budget),
		Faults: "the second HEC refuses connections until ingest stalls on its full spool, then comes back",
		Bound:  "the live sink delivers until the dead sink's spool is full, then ingest pauses; lost 0 at both sinks",
		T:      tl,
		Figures: []string{fmt.Sprintf("time to stall: %s (dead sink's spool %.1f MiB of %s; live sink had %d events and an empty spool: %v)", stalledAt.Round(100*time.Millisecond), deadBytes/(1<<20), budget, liveGot, liveKept),
			fmt.Sprintf("missing at the end: live sink %d, revived sink %d", lost0, lost1)},
		Pass:    ok && clean && stalledAt > 0 && liveKept && lost0 == 0 && lost1 == 0,
		Notes:   "received counts ids that reached either sink; a duplicate is a second copy at the same sink",
		Elapsed: time.Since(begin),
	})
}

func TestChaos_SLSWAN(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	hold := pick(1200*time.Millisecond, 20*time.Second)
	w := newChaosWorld(t, chaosShards, 1111)
	dd := filepath.Join(w.dir, "data")
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch})
	log := filepath.Join(w.dir, "relay.log")
	w.write(400, chaosPerGroup) // a backlog so that the cap binds
	stop := w.load(chaosPerGroup, chaosPeriod)
	p := startProc(t, bin, cfg, log)
	const capBytes = 256 << 10
	phases := []struct {
		name string
		f    slstest.Faults
	}{
		{"bandwidth cap 256 KiB/s", slstest.Faults{Bandwidth: capBytes}},
		{"latency 300 ms", slstest.Faults{Latency: 300 * time.Millisecond}},
		{"30% 500/503", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail500: 0.15, slstest.Fail503: 0.15}}},
		{"20% resets", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.FailReset: 0.2}}},
		{"20% truncated or garbage bodies", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.FailTruncated: 0.1, slstest.FailGarbage: 0.1}}},
		{"unreachable", slstest.Faults{Unreachable: true}},
	}
	var figs []string
	for _, ph := range phases {
		s0 := w.sls.Stats()
		w.sls.SetFaults(testProject, testLogstore, ph.f)
		time.Sleep(hold)
		w.sls.SetFaults(testProject, testLogstore, slstest.Faults{})
		s1 := w.sls.Stats()
		figs = append(figs, fmt.Sprintf("%s: %.0f KiB/s pulled (%d logs, %d faults injected)", ph.name,
			float64(s1.BytesServed-s0.BytesServed)/1024/hold.Seconds(), s1.LogsServed-s0.LogsServed, s1.FaultsInjected-s0.FaultsInjected))
		time.Sleep(hold / 4)
	}
	stop()
	ok := w.waitAll(pick(2*time.Minute, 5*time.Minute), dd)
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	report(t, chaosRow{ID: 11, Name: "WAN trouble on the SLS side", Load: chaosLoad + "; a 20,000-event backlog",
		Faults:  fmt.Sprintf("emulator faults one after another, %s each: bandwidth cap, latency, 5xx, resets, truncated/garbage bodies, unreachable", hold),
		Bound:   "consumes at the capped rate; never checkpoints past what it spooled (so lost 0)",
		T:       tl,
		Figures: figs,
		Pass:    ok && clean && tl.Lost == 0,
		Elapsed: time.Since(begin),
	})
}

func TestChaos_SplitMerge(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	w := newChaosWorld(t, 2, 1313)
	dd := filepath.Join(w.dir, "data")
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch})
	log := filepath.Join(w.dir, "relay.log")
	stop := w.load(chaosPerGroup, chaosPeriod)
	p := startProc(t, bin, cfg, log)
	rounds := pick(1, 5)
	gap := pick(1500*time.Millisecond, 5*time.Second)
	var ops []string
	for r := 0; r < rounds; r++ {
		time.Sleep(gap)
		shs, _ := w.sls.Shards(testProject, testLogstore)
		var rw []int
		for _, sh := range shs {
			if !sh.ReadOnly {
				rw = append(rw, sh.ID)
			}
		}
		kids, err := w.sls.SplitShard(testProject, testLogstore, rw[0], "")
		if err != nil {
			t.Fatalf("split %d: %v", rw[0], err)
		}
		w.refreshShards()
		ops = append(ops, fmt.Sprintf("split %d→%v", rw[0], kids))
		time.Sleep(gap)
		merged, err := w.sls.MergeShards(testProject, testLogstore, kids[0])
		if err != nil {
			t.Fatalf("merge %v: %v", kids, err)
		}
		w.refreshShards()
		ops = append(ops, fmt.Sprintf("merge %v→%d", kids, merged))
	}
	time.Sleep(gap)
	stop()
	ok := w.waitAll(pick(2*time.Minute, 3*time.Minute), dd)
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	report(t, chaosRow{ID: 13, Name: "shard split and merge", Load: fmt.Sprintf("2 shards at start; a %d-log group every %s", chaosPerGroup, chaosPeriod),
		Faults:  fmt.Sprintf("%d split + merge rounds during consumption", rounds),
		Bound:   "lost 0 across parents and children",
		T:       tl,
		Figures: []string{"operations: " + fmt.Sprint(ops)},
		Pass:    ok && clean && tl.Lost == 0,
		Elapsed: time.Since(begin),
	})
}

func TestChaos_PacedDrain(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	const rate = 5000.0 // events/s, double the load
	outage := pick(4*time.Second, 60*time.Second)
	w := newChaosWorld(t, chaosShards, 1515)
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, RateLimit: rate, MetricsAddr: maddr})
	log := filepath.Join(w.dir, "relay.log")
	h := w.hecs[0]
	stop := w.load(chaosPerGroup, chaosPeriod)
	p := startProc(t, bin, cfg, log)
	waitUntil(2*time.Minute, func() bool { return h.EventCount() > 0 })
	h.SetFault(hectest.Fault{Down: true})
	time.Sleep(outage)
	h.SetFault(hectest.Fault{})
	drainStart := time.Now()
	drained := waitUntil(pick(2*time.Minute, 5*time.Minute), func() bool { return metric(maddr, "slsrelay_spool_records") <= 1 })
	drainEnd := time.Now()
	time.Sleep(2 * time.Second)
	stop()
	ok := w.waitAll(pick(2*time.Minute, 3*time.Minute), dd)
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)

	// Peak rate over 1 s windows during the drain, and the latency of the
	// events written during the drain.
	w.mu.Lock()
	var arrivals []int64
	var lat []time.Duration
	for id, at := range w.recvAt {
		if at >= drainStart.UnixNano() && at <= drainEnd.UnixNano() {
			arrivals = append(arrivals, at)
		}
		if wr := w.wroteAt[id]; wr >= drainStart.UnixNano() && wr <= drainEnd.UnixNano() {
			lat = append(lat, time.Duration(at-wr))
		}
	}
	w.mu.Unlock()
	slices.Sort(arrivals)
	slices.Sort(lat)
	peak, j := 0, 0
	for i := range arrivals {
		for arrivals[i]-arrivals[j] > int64(time.Second) {
			j++
		}
		peak = max(peak, i-j+1)
	}
	// The limiter's burst is one second's worth, and arrival times are
	// sampled every poll: allow one burst plus 20%.
	limit := int(2.2 * rate)
	report(t, chaosRow{ID: 15, Name: "paced drain after an outage", Load: chaosLoad,
		Faults: fmt.Sprintf("HEC down for %s, then a drain with rate_limit %.0f events/s", outage, rate),
		Bound:  fmt.Sprintf("the drain stays under the limit (peak 1 s window ≤ %d incl. the one-second burst); new events keep flowing; lost 0", limit),
		T:      tl,
		Figures: []string{fmt.Sprintf("drain took %s; peak 1 s window %d events (limit %.0f/s)", drainEnd.Sub(drainStart).Round(100*time.Millisecond), peak, rate),
			fmt.Sprintf("latency of events written during the drain: p50 %s, p99 %s (%d events)", percentile(lat, 50).Round(10*time.Millisecond), percentile(lat, 99).Round(10*time.Millisecond), len(lat))},
		Pass:    ok && clean && drained && tl.Lost == 0 && peak <= limit && len(lat) > 0,
		Notes:   "the spool is FIFO: events written during the drain wait behind the backlog, so their latency is the backlog divided by the rate",
		Elapsed: time.Since(begin),
	})
}
