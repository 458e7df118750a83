package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/internal/failpoint"
)

// Scenarios 1, 2 and 14: the relay process dies or is stopped under load.

const (
	chaosShards   = 4
	chaosPerGroup = 50
	chaosMaxFetch = 10
	chaosPeriod   = 20 * time.Millisecond // one group per period: 2,500 events/s
)

var chaosLoad = fmt.Sprintf("%d shards; a %d-log group every %s (~%d events/s)",
	chaosShards, chaosPerGroup, chaosPeriod, int(float64(chaosPerGroup)/chaosPeriod.Seconds()))

// chaosBatch is the most records a sink delivers (and a crash re-sends)
// at once: the default batch_records.
const chaosBatch = deliver.DefaultBatchRecords

// crashBound is the design's duplicate bound for kills SIGKILLs: per kill,
// one in-flight batch per sink and one pull per shard.
func crashBound(kills int) int {
	return kills * (chaosBatch + chaosShards) * chaosMaxFetch * chaosPerGroup
}

func TestChaos_CrashLoop(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	kills := pick(5, 100)
	maxAlive := pick(1200, 2500)
	w := newChaosWorld(t, chaosShards, 101)
	dd := filepath.Join(w.dir, "data")
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch})
	log := filepath.Join(w.dir, "relay.log")
	w.write(40, chaosPerGroup)
	stop := w.load(chaosPerGroup, chaosPeriod)
	rng := rand.New(rand.NewPCG(1, uint64(kills)))
	var firsts []time.Duration
	refused := 0
	for i := 0; i < kills; i++ {
		before := w.hecs[0].EventCount()
		p := startProc(t, bin, cfg, log)
		deadline := p.started.Add(time.Duration(200+rng.IntN(maxAlive)) * time.Millisecond)
		var first time.Duration
		for time.Now().Before(deadline) && !p.exited() {
			if first == 0 && w.hecs[0].EventCount() > before {
				first = time.Since(p.started)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if p.exited() {
			refused++
			t.Errorf("restart %d: relay exited by itself (%v):\n%s", i+1, p.state, tail(log, 5))
		}
		p.kill()
		if first > 0 {
			firsts = append(firsts, first)
		}
	}
	stop()
	// Often a few groups are still to deliver here; when none are, the
	// SIGTERM below follows the start at once (term waits for the relay
	// to say it started).
	behind := w.missing()
	p := startProc(t, bin, cfg, log)
	waited := pick(2*time.Minute, 5*time.Minute)
	ok := w.waitAll(waited, dd)
	if !ok {
		t.Logf("the last relay (running: %v) had not delivered everything %s after its start: %d events missing; its log's tail:\n%s",
			!p.exited(), waited, w.missing(), tail(log, 20))
	}
	drained := time.Since(p.started)
	took, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	slices.Sort(firsts)
	bound := crashBound(kills)
	report(t, chaosRow{ID: 1, Name: "crash loop (kill -9)", Load: chaosLoad + "; 2,000-event backlog",
		Faults: fmt.Sprintf("%d × kill -9 at a random instant 0.2–%.1fs after each start, restarted at once", kills, float64(200+maxAlive)/1000),
		Bound:  fmt.Sprintf("lost 0; dup ≤ kills × (1 batch of ≤ %d records + 1 pull per shard) = %d", chaosBatch, bound),
		T:      tl,
		Figures: []string{fmt.Sprintf("restart → first delivery: p50 %s, p99 %s (over the %d of %d restarts that delivered before their kill)", percentile(firsts, 50).Round(time.Millisecond), percentile(firsts, 99).Round(time.Millisecond), len(firsts), kills),
			fmt.Sprintf("last start (%d events to deliver) → everything delivered: %s (all arrived: %v); its SIGTERM: clean exit %v, in %s",
				behind, drained.Round(time.Millisecond), ok, clean, took.Round(time.Millisecond))},
		Pass:    ok && clean && refused == 0 && tl.Lost == 0 && tl.Duplicates <= bound,
		Elapsed: time.Since(begin),
	})
}

func TestChaos_Failpoints(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	reps := pick(1, 20)
	w := newChaosWorld(t, chaosShards, 202)
	dd := filepath.Join(w.dir, "data")
	// The smallest segments, so that rotation and deletion come often.
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, SegmentBytes: "1MiB"})
	log := filepath.Join(w.dir, "relay.log")
	w.write(40, chaosPerGroup)
	stop := w.load(chaosPerGroup, chaosPeriod/2)
	rng := rand.New(rand.NewPCG(2, uint64(reps)))
	reached, missed := map[string]int{}, map[string]int{}
	refused, kills := 0, 0
	for _, fp := range failpoint.Points {
		for r := 0; r < reps; r++ {
			n := 1 + rng.IntN(5)
			switch fp {
			case failpoint.SpoolMeta:
				n = 1 // written once per spool open
			case failpoint.SpoolDelete:
				n = 1 // once per segment read to its end
			case failpoint.SpoolRotate:
				n = 1 + rng.IntN(2) // every few seconds
			}
			p := startProc(t, bin, cfg, log, failpointEnv(fp, n))
			select {
			case <-p.done:
			case <-time.After(pick(8*time.Second, 15*time.Second)):
			}
			switch {
			case p.killedBySignal():
				reached[fp]++
				kills++
			case p.exited():
				refused++
				t.Errorf("failpoint %s: the restarted relay exited by itself (%v):\n%s", fp, p.state, tail(log, 5))
			default:
				missed[fp]++
				p.kill()
				kills++
			}
		}
	}
	stop()
	p := startProc(t, bin, cfg, log)
	ok := w.waitAll(pick(2*time.Minute, 5*time.Minute), dd)
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	var per []string
	allReached := true
	for _, fp := range failpoint.Points {
		per = append(per, fmt.Sprintf("`%s` %d/%d", fp, reached[fp], reps))
		// One try per point in short mode may end before a rare point.
		allReached = allReached && (reached[fp] > 0 || !chaosFull)
	}
	bound := crashBound(kills)
	report(t, chaosRow{ID: 2, Name: "crash at named failpoints", Load: fmt.Sprintf("%d shards; a %d-log group every %s; 1 MiB segments", chaosShards, chaosPerGroup, chaosPeriod/2),
		Faults: fmt.Sprintf("SIGKILL from inside the process at each of %d failpoints, %d× each at its 1st–5th hit (`-tags failpoints`, %s=name=N)",
			len(failpoint.Points), reps, failpoint.EnvVar),
		Bound:   fmt.Sprintf("every restart succeeds; lost 0; dup ≤ %d", bound),
		T:       tl,
		Figures: []string{"crashes reached per point: " + strings.Join(per, ", "), fmt.Sprintf("restarts refused: %d", refused)},
		Pass:    ok && clean && refused == 0 && allReached && tl.Lost == 0 && tl.Duplicates <= bound,
		Elapsed: time.Since(begin),
	})
}

func TestChaos_GracefulStop(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	stops := pick(2, 20)
	// The shutdown deadline, and how much longer than it the harness waits
	// before it calls a stop hung. Short runs share a loaded machine: they
	// give the relay room, so that only a stop that is not clean (or that
	// duplicates) fails them; full runs hold it to 5 s.
	deadline, grace := pick(30*time.Second, 5*time.Second), pick(30*time.Second, 5*time.Second)
	w := newChaosWorld(t, chaosShards, 1414)
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, ShutdownTimeout: deadline, MetricsAddr: maddr})
	log := filepath.Join(w.dir, "relay.log")
	stop := w.load(chaosPerGroup, chaosPeriod)
	rng := rand.New(rand.NewPCG(14, uint64(stops)))
	var took []time.Duration
	unclean := 0
	for i := 0; i < stops; i++ {
		p := startProc(t, bin, cfg, log)
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		d, clean := p.term(deadline + grace)
		took = append(took, d)
		if !clean {
			unclean++
			t.Errorf("stop %d: not a clean exit within %s (%v)", i+1, deadline+grace, p.state)
		}
	}
	stop()
	p := startProc(t, bin, cfg, log)
	ok := w.waitAll(pick(2*time.Minute, 3*time.Minute), dd)
	if _, clean := p.term(deadline + grace); !clean {
		unclean++
	}
	before := w.reconcile(dd)

	// SIEM down: whatever is ingested stays in the spool across SIGTERM,
	// and a drain-only relay (no SLS) delivers it afterwards.
	w.hecs[0].SetFault(hectest.Fault{Down: true})
	p = startProc(t, bin, cfg, log)
	n := w.write(200, chaosPerGroup)
	spooled := waitUntil(2*time.Minute, func() bool { return metric(maddr, "slsrelay_ingest_logs_total") >= float64(n) })
	d, clean := p.term(deadline + grace)
	took = append(took, d)
	if !clean || !spooled {
		unclean++
		t.Errorf("SIEM down: spooled %v, clean stop %v", spooled, clean)
	}
	w.hecs[0].SetFault(hectest.Fault{})
	dcfg := w.writeConfig("drain", chaosConfig{DataDir: dd, DrainOnly: true})
	p = startProc(t, bin, dcfg, log)
	drained := w.waitAll(pick(2*time.Minute, 3*time.Minute), dd)
	p.term(deadline + grace)
	tl := w.reconcile(dd)
	slices.Sort(took)
	report(t, chaosRow{ID: 14, Name: "graceful stop (SIGTERM)", Load: chaosLoad + fmt.Sprintf("; then %d events with the SIEM down", n),
		Faults: fmt.Sprintf("%d × SIGTERM at a random instant 0.5–3s after start; then SIGTERM with the HEC down and a `drain_only` restart", stops),
		Bound:  fmt.Sprintf("clean exit (status 0) within shutdown_timeout %s; lost 0; dup 0; SIEM down → all in the spool", deadline),
		T:      tl,
		Figures: []string{fmt.Sprintf("stop time: p50 %s, max %s", percentile(took, 50).Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond)),
			fmt.Sprintf("duplicates after the %d load stops: %d; with the SIEM down: %d events spooled, all delivered by the drain-only relay: %v", stops, before.Duplicates, n, drained)},
		Pass:    ok && drained && unclean == 0 && tl.Lost == 0 && tl.Duplicates == 0,
		Elapsed: time.Since(begin),
	})
}

// waitUntil polls cond every 50ms until it holds (true) or timeout (false).
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
