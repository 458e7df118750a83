package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slsrelay/checkpoint"
	"slsrelay/deliver/hectest"
)

// Scenario 3: files damaged between runs.

// corruption is one way of damaging the data directory of a stopped relay.
type corruption struct {
	name string
	// record: the damage may destroy spooled records (their loss is then
	// measured); else nothing may be lost.
	record bool
	do     func(rng *rand.Rand, dd string) (string, error)
}

var corruptions = []corruption{
	{"segment: burst of flipped bytes", true, func(rng *rand.Rand, dd string) (string, error) {
		return flipBytes(rng, pickFile(rng, dd, "spool/hec0/spool.diskqueue.0*.dat"), 1+rng.IntN(16))
	}},
	{"segment: truncated", true, func(rng *rand.Rand, dd string) (string, error) {
		return truncate(rng, pickFile(rng, dd, "spool/hec0/spool.diskqueue.0*.dat"))
	}},
	{"spool metadata (diskqueue meta)", false, func(rng *rand.Rand, dd string) (string, error) {
		return damage(rng, filepath.Join(dd, "spool/hec0/spool.diskqueue.meta.dat"))
	}},
	{"spool state (acked seq)", false, func(rng *rand.Rand, dd string) (string, error) {
		return damage(rng, filepath.Join(dd, "spool/hec0/spool.state"))
	}},
	{"checkpoint database", false, func(rng *rand.Rand, dd string) (string, error) {
		return damage(rng, filepath.Join(dd, checkpoint.DBFile))
	}},
}

func pickFile(rng *rand.Rand, dd, glob string) string {
	m, _ := filepath.Glob(filepath.Join(dd, glob))
	var nonEmpty []string
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			nonEmpty = append(nonEmpty, p)
		}
	}
	if len(nonEmpty) == 0 {
		return ""
	}
	return nonEmpty[rng.IntN(len(nonEmpty))]
}

// damage flips a burst of bytes, truncates or (rarely) deletes path.
func damage(rng *rand.Rand, path string) (string, error) {
	switch rng.IntN(5) {
	case 0, 1, 2:
		return flipBytes(rng, path, 1+rng.IntN(16))
	case 3:
		return truncate(rng, path)
	default:
		return "deleted " + filepath.Base(path), os.Remove(path)
	}
}

func flipBytes(rng *rand.Rand, path string, n int) (string, error) {
	if path == "" {
		return "no file", nil
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "no data", err
	}
	off := rng.IntN(len(b))
	for i := off; i < min(off+n, len(b)); i++ {
		b[i] ^= byte(1 + rng.IntN(255))
	}
	return fmt.Sprintf("flipped %d bytes at %d of %s", n, off, filepath.Base(path)), os.WriteFile(path, b, 0o600)
}

func truncate(rng *rand.Rand, path string) (string, error) {
	if path == "" {
		return "no file", nil
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 {
		return "no data", err
	}
	to := rng.Int64N(st.Size())
	return fmt.Sprintf("truncated %s from %d to %d bytes", filepath.Base(path), st.Size(), to), os.Truncate(path, to)
}

func TestChaos_Corruption(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	rounds := pick(len(corruptions), 200)
	if n, err := strconv.Atoi(os.Getenv("CHAOS_CORRUPT_ROUNDS")); err == nil && n > 0 && chaosFull {
		rounds = n // a shorter full run
	}
	const groupsPerRound = 40
	w := newChaosWorld(t, chaosShards, 303)
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr})
	log := filepath.Join(w.dir, "relay.log")
	rng := rand.New(rand.NewPCG(3, uint64(rounds)))
	maxLoss := map[string]int{}
	count := map[string]int{}
	refused, stuck := 0, 0
	prevLost := 0
	ingested := func() float64 { return metric(maddr, "slsrelay_ingest_logs_total") }
	spooled := func() float64 { return metric(maddr, "slsrelay_spool_records") }
	// One relay runs from one round's restart to the next round's kill:
	// each round is one kill -9, one corruption and one start.
	h := w.hecs[0]
	h.SetFault(hectest.Fault{Down: true})
	p := startProc(t, bin, cfg, log)
	for r := 0; r < rounds; r++ {
		c := corruptions[r%len(corruptions)]
		// Spool a batch with the SIEM down, then crash. Wait until the
		// relay is idle first (a re-pull after checkpoint damage settled)
		// so that the batch is what the spool holds.
		h.SetFault(hectest.Fault{Down: true})
		var m0 float64
		waitUntil(time.Minute, func() bool {
			a := ingested()
			time.Sleep(100 * time.Millisecond)
			m0 = ingested()
			return a >= 0 && m0 == a
		})
		n := w.write(groupsPerRound, chaosPerGroup)
		if !waitUntil(2*time.Minute, func() bool { return p.exited() || ingested() >= m0+float64(n) }) || p.exited() {
			t.Fatalf("round %d: the batch was not spooled within 2 minutes (relay exited: %v):\n%s", r, p.exited(), tail(log, 5))
		}
		p.kill()
		what, err := c.do(rng, dd)
		if err != nil {
			t.Fatalf("round %d: corrupt: %v", r, err)
		}
		// Restart with the SIEM up: the relay must start and deliver the
		// rest. Done when nothing is missing, or when the spool is empty
		// (what is missing then was in the damaged records).
		h.SetFault(hectest.Fault{})
		p = startProc(t, bin, cfg, log)
		done := waitUntil(2*time.Minute, func() bool {
			return p.exited() || w.missing() == 0 || spooled() == 0
		})
		if p.exited() {
			refused++
			t.Errorf("round %d (%s: %s): the relay did not start (%v):\n%s", r, c.name, what, p.state, tail(log, 5))
			p = startProc(t, bin, cfg, log)
			continue
		}
		if !done {
			stuck++
			t.Errorf("round %d (%s: %s): the spool did not drain within 2 minutes", r, c.name, what)
		}
		tl := w.reconcile(dd)
		loss := tl.Lost - prevLost
		prevLost = tl.Lost
		count[c.name]++
		maxLoss[c.name] = max(maxLoss[c.name], loss)
		if loss > 0 {
			t.Logf("round %d (%s: %s): %d events lost", r, c.name, what, loss)
		}
	}
	if !waitUntil(2*time.Minute, func() bool { return w.missing() == 0 || spooled() == 0 }) {
		stuck++
	}
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	var figs []string
	pass := refused == 0 && stuck == 0 && clean
	recordEvents := chaosMaxFetch * chaosPerGroup
	for _, c := range corruptions {
		figs = append(figs, fmt.Sprintf("%s: %d events, max loss per corruption %d events (%.1f records of %d)",
			c.name, count[c.name], maxLoss[c.name], float64(maxLoss[c.name])/float64(recordEvents), recordEvents))
		switch {
		case !c.record && maxLoss[c.name] > 0:
			pass = false
		case strings.Contains(c.name, "flipped") && maxLoss[c.name] > 2*recordEvents:
			pass = false
		}
	}
	figs = append(figs, fmt.Sprintf("restarts refused: %d; spools that did not drain: %d", refused, stuck))
	slices.Sort(figs[:len(corruptions)])
	report(t, chaosRow{ID: 3, Name: "corruption between runs", Load: fmt.Sprintf("%d events spooled with the SIEM down per round, then kill -9", groupsPerRound*chaosPerGroup),
		Faults: fmt.Sprintf("%d rounds: burst of 1–16 flipped bytes or truncation of a spool segment; flip/truncate/delete of the spool metadata, the spool state file and the checkpoint database", rounds),
		Bound:  fmt.Sprintf("always starts; metadata/state/checkpoint damage loses 0; a flipped burst loses ≤ the 1–2 records it hits (≤ %d events); truncation loses what was cut", 2*recordEvents),
		T:      tl, Figures: figs, Pass: pass,
		Notes:   "the events of a quarantined record cannot be named (raw bytes): they count as lost here; the dead-letter queue holds their bytes",
		Elapsed: time.Since(begin),
	})
}
