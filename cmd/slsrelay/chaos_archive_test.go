package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/spool"
)

// Scenario 25: archive replay. A live relay with an archive on its sink
// delivers a backlog and keeps delivering new logs; a window of log time is
// replayed from the archive (--from-spool) into a second receiver while the
// live relay runs, and the replay is killed with SIGKILL at random instants
// and run again each time.

// withRetain adds a spool.retain block to sink hec0 of a chaos config.
func withRetain(t *testing.T, path, block string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const item = "  - name: hec0\n    type: hec\n"
	if !strings.Contains(string(b), item) {
		t.Fatalf("no sink hec0 in %s", path)
	}
	b = []byte(strings.Replace(string(b), item, item+"    spool: "+block+"\n", 1))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestChaos_ArchiveReplay(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	kills := pick(3, 12)
	groups := pick(300, 3000) // of chaosPerGroup logs, in the window
	const rate = 2000         // events/s
	const retain = "{retain: 24h, retain_bytes: 256MiB}"
	w := newChaosWorld(t, chaosShards, 324, hectest.Options{}, hectest.Options{})
	dd := filepath.Join(w.dir, "data")
	liveCfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, Sinks: []int{0}})
	withRetain(t, liveCfg, retain)
	live := startProc(t, bin, liveCfg, filepath.Join(w.dir, "relay.log"))

	ids := func() map[string]bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		m := make(map[string]bool, len(w.written))
		for id := range w.written {
			m[id] = true
		}
		return m
	}
	w.write(40, chaosPerGroup) // before the window
	outside := ids()
	from := nextSecond()
	w.write(groups, chaosPerGroup)
	inside := ids()
	for id := range outside {
		delete(inside, id)
	}
	to := nextSecond()
	w.write(pick(600, 1500), chaosPerGroup) // after it: the window's segments roll into the archive
	if !w.waitAll(pick(3*time.Minute, 10*time.Minute)) {
		t.Fatalf("the live relay did not deliver the backlog (%d missing):\n%s", w.missing(), tail(filepath.Join(w.dir, "relay.log"), 10))
	}
	sdir := filepath.Join(dd, "spool", "hec0")
	waitFor(t, time.Minute, "archived segments past the window", func() bool {
		segs, err := spool.ReadArchive(sdir)
		past := 0
		for _, s := range segs {
			if s.LogMin >= to.Unix() {
				past++
			}
		}
		return err == nil && past >= 2
	})
	arch, _ := spool.InspectArchive(sdir)
	stopLoad := w.load(chaosPerGroup, chaosPeriod) // the live relay keeps working meanwhile

	replayCfg := w.writeConfig("replay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch})
	withRetain(t, replayCfg, retain)
	logPath := filepath.Join(w.dir, "replay.log")
	outPath := filepath.Join(w.dir, "replay.out")
	args := []string{"replay", "--config", replayCfg, "--from-spool", "--sink", "hec0", "--to-sink", "hec1",
		"--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--rate", fmt.Sprint(rate), "--progress-interval", "500ms"}
	start := func() *exec.Cmd {
		lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		of, err := os.OpenFile(outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer of.Close()
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = of, lf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(24, uint64(kills)))
	landed, runs := 0, 0
	ok := true
	var lastRun time.Duration
	// Kill each run at a random instant; a run that ends before its kill
	// has finished the job (running the same command again would replay
	// the window once more, by design), so the kills stop there.
	for i := 0; i <= kills; i++ {
		t0 := time.Now()
		cmd := start()
		runs++
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		wait := pick(3*time.Minute, 10*time.Minute)
		if i < kills {
			wait = time.Duration(200+rng.IntN(1000)) * time.Millisecond
		}
		select {
		case err := <-done:
			lastRun = time.Since(t0)
			if err != nil {
				ok = false
				t.Errorf("replay run %d failed (%v):\n%s", runs, err, tail(logPath, 10))
			}
			i = kills // finished
			continue
		case <-time.After(wait):
		}
		if i == kills {
			ok = false
			t.Errorf("the last replay did not finish:\n%s", tail(logPath, 10))
		}
		_ = cmd.Process.Signal(os.Kill) // SIGKILL, by PID
		if err := <-done; err != nil && strings.Contains(err.Error(), "killed") {
			landed++
		}
	}
	stopLoad()
	liveAlive := !live.exited()
	summary := tail(outPath, 1)
	outText, _ := os.ReadFile(outPath)
	resumed := strings.Count(string(outText), "replay: resuming job ")
	if landed == 0 || resumed == 0 {
		ok = false
		t.Errorf("no run said it was resuming:\n%s", outText)
	}
	if !strings.Contains(summary, fmt.Sprintf(" archived segments, %d events, delivered %d, dead-lettered 0, missing none (aged out)", len(inside), len(inside))) ||
		strings.Contains(summary, "NOT REPLAYED") {
		ok = false
		t.Errorf("summary %q", summary)
	}
	// Reconcile the window at the replay's receiver: everything in it,
	// nothing else.
	tl := tally{Written: len(inside)}
	w.mu.Lock()
	strays := 0
	for id, n := range w.recvBy[1] {
		if !inside[id] {
			strays++
			continue
		}
		tl.Unique++
		tl.Duplicates += n - 1
	}
	for id := range inside {
		if w.recvBy[1][id] == 0 {
			tl.Lost++
			if len(tl.LostIDs) < 5 {
				tl.LostIDs = append(tl.LostIDs, id)
			}
		}
	}
	w.mu.Unlock()
	// Per kill: the archived record read but not yet committed, and the
	// record in flight to the sink.
	bound := kills * 2 * chaosMaxFetch * chaosPerGroup
	report(t, chaosRow{ID: 25, Name: "archive replay",
		Load: fmt.Sprintf("%d shards; a window of %d events (%d-log groups) between backlogs outside it, delivered by a live relay with `spool: %s` and archived; the live relay keeps delivering %s during the replay",
			chaosShards, len(inside), chaosPerGroup, retain, chaosLoad),
		Faults: fmt.Sprintf("%d × kill -9 of `slsrelay replay --from-spool --sink hec0 --to-sink hec1 --rate %d` at a random instant 0.2–1.2s after each start (%d landed while it ran), the same command run again each time, beside the live relay",
			kills, rate, landed),
		Bound: fmt.Sprintf("every event of the window delivered to the second receiver; none from outside it; dup ≤ kills × 2 records = %d", bound),
		T:     tl,
		Figures: []string{fmt.Sprintf("archive when the replay started: %d segments, %s, %d events; events from outside the window received: %d; runs that resumed the job: %d of %d; last run %s",
			arch.Segments, humanBytes(arch.Bytes), arch.Events, strays, resumed, runs, lastRun.Round(time.Millisecond)),
			"last run's summary: `" + summary + "`"},
		Pass:    ok && liveAlive && tl.Lost == 0 && strays == 0 && tl.Duplicates <= bound,
		Elapsed: time.Since(begin),
	})
	if !liveAlive {
		t.Errorf("the live relay exited during the replay:\n%s", tail(filepath.Join(w.dir, "relay.log"), 10))
	}
}
