package main

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
	"slsrelay/internal/failpoint"
)

// Scenario 4: the disk under the spool fills up or fails.

// smallDisk mounts a tmpfs of size MiB at dir (root only), unmounted when
// the test ends; it skips the test when mounting is not allowed.
func smallDisk(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("disk scenario needs a tmpfs mount (root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// fill writes a file of n bytes (or until the disk is full when n < 0).
func fill(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n < 0 || n > 0 {
		k := int64(len(buf))
		if n > 0 {
			k = min(k, n)
			n -= k
		}
		if _, err := f.Write(buf[:k]); err != nil {
			if n < 0 {
				return nil // full
			}
			return err
		}
	}
	return nil
}

func TestChaos_DiskTrouble(t *testing.T) {
	bin := chaosBinary(t)
	begin := time.Now()
	w := newChaosWorld(t, chaosShards, 404)
	disk := filepath.Join(w.dir, "disk")
	smallDisk(t, disk, 40)
	dd := filepath.Join(disk, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr, MinFree: "16MiB"})
	log := filepath.Join(w.dir, "relay.log")
	h := w.hecs[0]
	var figs []string
	pass := true
	spooled := func() float64 { return metric(maddr, "slsrelay_ingest_logs_total") }
	stalled := func(d time.Duration) bool {
		a := spooled()
		time.Sleep(d)
		return spooled()-a < chaosMaxFetch*chaosPerGroup*chaosShards
	}

	// A: the free-space floor. Another program holds 16 MiB; the spool grows
	// until the floor, ingest pauses; the program frees its file, ingest
	// resumes by itself.
	filler := filepath.Join(disk, "other-program.dat")
	if err := fill(filler, 16<<20); err != nil {
		t.Fatal(err)
	}
	h.SetFault(hectest.Fault{Down: true})
	stop := w.load(chaosPerGroup, chaosPeriod/4)
	p := startProc(t, bin, cfg, log)
	waitUntil(60*time.Second, func() bool { return metric(maddr, "slsrelay_spool_bytes") > 6<<20 })
	time.Sleep(2 * time.Second)
	pausedA := stalled(3 * time.Second)
	spoolAtFloor := metric(maddr, "slsrelay_spool_bytes")
	os.Remove(filler)
	s0 := spooled()
	resumedA := waitUntil(15*time.Second, func() bool { return spooled() > s0+5000 })
	figs = append(figs, fmt.Sprintf("floor (16 MiB floor, 40 MiB disk): ingest paused %v with %.1f MiB spooled; resumed by itself when space was freed: %v", pausedA, spoolAtFloor/(1<<20), resumedA))
	pass = pass && pausedA && resumedA

	// B: ENOSPC. Another program takes every free byte at once.
	if err := fill(filler, -1); err != nil {
		t.Fatal(err)
	}
	pausedB := stalled(3 * time.Second)
	b, _ := os.ReadFile(log)
	visible := strings.Contains(string(b), "no space left on device") || strings.Contains(string(b), "free")
	os.Remove(filler)
	s0 = spooled()
	resumedB := waitUntil(5*time.Second, func() bool { return spooled() > s0+5000 })
	alive := !p.exited()
	if !resumedB {
		// The spool's write error is sticky until it is reopened.
		p.kill()
		p = startProc(t, bin, cfg, log)
	}
	figs = append(figs, fmt.Sprintf("disk full (ENOSPC): ingest stopped %v, error in the log %v, relay alive %v, resumed by itself once space was freed %v (else restarted)", pausedB, visible, alive, resumedB))
	pass = pass && pausedB && alive && visible
	stop()
	h.SetFault(hectest.Fault{})
	okA := w.waitAll(pick(time.Minute, 3*time.Minute), dd)
	if !okA {
		t.Logf("relay log tail:\n%s", tail(log, 10))
	}
	p.term(30 * time.Second)

	// C: fsync fails with EIO from the 10th call on (a dying disk): the
	// failure is visible and no checkpoint moves after it.
	stop = w.load(chaosPerGroup, chaosPeriod)
	p = startProc(t, bin, cfg, log, fmt.Sprintf("%s=%s=10", failpoint.ErrEnvVar, failpoint.SpoolFsync))
	// Visible either as the metric or as the relay exiting with the error
	// (a failed Ack fsync stops the delivery loop, hence the relay).
	failing := waitUntil(60*time.Second, func() bool { return p.exited() || metric(maddr, "slsrelay_spool_sync_failing") == 1 })
	how := "sync_failing metric set"
	if p.exited() {
		how = fmt.Sprintf("relay exited (%v) with: %.200s", p.state, tail(log, 1))
	}
	time.Sleep(time.Second) // in-flight pulls settle
	cp0 := maps.Clone(w.sls.Checkpoints(testProject, testLogstore, "slsrelay"))
	l0 := spooled()
	time.Sleep(3 * time.Second)
	cp1 := w.sls.Checkpoints(testProject, testLogstore, "slsrelay")
	l1 := spooled()
	frozen := maps.Equal(cp0, cp1) && l1 == l0
	p.kill()
	stop()
	p = startProc(t, bin, cfg, log) // the disk was replaced
	ok := w.waitAll(pick(time.Minute, 3*time.Minute), dd)
	_, clean := p.term(30 * time.Second)
	figs = append(figs, fmt.Sprintf("fsync EIO: visible %v (%s); SLS checkpoints and spooled logs frozen for 3 s after it %v; all delivered after a restart %v", failing, how, frozen, ok))
	pass = pass && failing && frozen && ok && okA && clean
	tl := w.reconcile(dd)
	report(t, chaosRow{ID: 4, Name: "disk trouble", Load: fmt.Sprintf("%d shards; up to %d events/s; spool on a 40 MiB tmpfs, min_free_bytes 16 MiB; SIEM down in A and B", chaosShards, int(4*float64(chaosPerGroup)/chaosPeriod.Seconds())),
		Faults:  "A: the free-space floor reached, then space freed; B: the disk filled to the last byte (ENOSPC), then freed; C: every fsync fails with EIO from the 10th on (`SLSRELAY_FAILERR`), then a restart",
		Bound:   "ingest pauses and resumes by itself; errors visible; no checkpoint moves past what is durable; lost 0",
		T:       tl,
		Figures: figs,
		Pass:    pass && tl.Lost == 0,
		Notes:   "found: after ENOSPC inside go-diskqueue (its metadata write) the spool's error is sticky, so ingest stays stopped after space is freed until the relay is restarted; the floor (A) normally prevents reaching ENOSPC",
		Elapsed: time.Since(begin),
	})
}
