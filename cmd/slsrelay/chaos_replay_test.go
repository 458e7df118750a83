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
)

// Scenario 16: slsrelay replay is killed with SIGKILL at random instants
// and the same command is run again each time.

func TestChaos_ReplayKill9(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	kills := pick(3, 20)
	// The range outlasts the kills: a run delivers at most a second's
	// burst plus 1.7 s at the rate before its kill.
	groups := pick(1000, 6000) // of chaosPerGroup logs, in the range
	const rate = 5000          // events/s
	w := newChaosWorld(t, chaosShards, 316)

	ids := func() map[string]bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		m := make(map[string]bool, len(w.written))
		for id := range w.written {
			m[id] = true
		}
		return m
	}
	w.write(40, chaosPerGroup) // before the range
	outside := ids()
	from := nextSecond()
	w.write(groups, chaosPerGroup)
	inside := ids()
	for id := range outside {
		delete(inside, id)
	}
	to := nextSecond()
	w.write(40, chaosPerGroup) // after it

	dd := filepath.Join(w.dir, "data")
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch})
	log := filepath.Join(w.dir, "replay.log")    // stderr of every run
	outLog := filepath.Join(w.dir, "replay.out") // stdout: progress and summaries
	args := []string{"replay", "--config", cfg, "--source", testProject + "/" + testLogstore,
		"--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--rate", fmt.Sprint(rate), "--progress-interval", "500ms"}
	start := func() *exec.Cmd {
		f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		o, err := os.OpenFile(outLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = o, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(16, uint64(kills)))
	landed := 0
	for i := 0; i < kills; i++ {
		cmd := start()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("replay %d ended before its kill (%v):\n%s", i+1, err, tail(log, 10))
		case <-time.After(time.Duration(200+rng.IntN(1500)) * time.Millisecond):
		}
		_ = cmd.Process.Signal(os.Kill) // SIGKILL, by PID
		if err := <-done; err != nil && strings.Contains(err.Error(), "killed") {
			landed++
		}
	}
	cmd := start()
	ok := true
	finished := make(chan error, 1)
	go func() { finished <- cmd.Wait() }()
	select {
	case err := <-finished:
		if err != nil {
			ok = false
			t.Errorf("the last replay failed (%v):\n%s", err, tail(log, 10))
		}
	case <-time.After(pick(2*time.Minute, 10*time.Minute)):
		_ = cmd.Process.Kill()
		ok = false
		t.Errorf("the last replay did not finish:\n%s", tail(log, 10))
	}
	summary := tail(outLog, 1)
	outText, _ := os.ReadFile(outLog)
	resumed := strings.Count(string(outText), "replay: resuming job ")
	if resumed == 0 {
		ok = false
		t.Errorf("no run said it was resuming:\n%s", outText)
	}
	if !strings.HasPrefix(summary, fmt.Sprintf("replay: %d shards, %d events, delivered %d, dead-lettered 0, missing none (aged out)", chaosShards, len(inside), len(inside))) {
		ok = false
		t.Errorf("summary %q", summary)
	}

	// Reconcile over the range: everything in it received, nothing else.
	jobs, _ := filepath.Glob(filepath.Join(dd, "replay", "*"))
	dl := deadLetterIDs(jobs...)
	tl := tally{Written: len(inside)}
	w.mu.Lock()
	strays := 0
	for id, n := range w.recv {
		if !inside[id] {
			strays++
			continue
		}
		tl.Unique++
		tl.Duplicates += n - 1
	}
	for id := range inside {
		switch {
		case w.recv[id] > 0:
		case dl[id]:
			tl.DeadLettered++
		default:
			tl.Lost++
		}
	}
	w.mu.Unlock()
	bound := crashBound(kills)
	report(t, chaosRow{ID: 16, Name: "replay under kill -9",
		Load: fmt.Sprintf("%d shards; a range of %d events (%d-log groups) between %d-group backlogs outside it; --rate %d",
			chaosShards, len(inside), chaosPerGroup, 40, rate),
		Faults: fmt.Sprintf("%d × kill -9 of `slsrelay replay` at a random instant 0.2–1.7s after each start (%d landed while it ran), the same command run again each time",
			kills, landed),
		Bound: fmt.Sprintf("every event of the range delivered; none from outside it; dup ≤ kills × (1 batch of ≤ %d records + 1 pull per shard) = %d", chaosBatch, bound),
		T:     tl,
		Figures: []string{fmt.Sprintf("events from outside the range received: %d; runs that resumed the job: %d of %d", strays, resumed, kills+1),
			"last run's summary: `" + summary + "`"},
		Pass:    ok && tl.Lost == 0 && strays == 0 && tl.Duplicates <= bound,
		Elapsed: time.Since(begin),
	})
}
