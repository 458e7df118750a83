package main

import (
	"path/filepath"
	"testing"
	"time"
)

// The harness stops a relay with term right after starting it, as the
// crash-loop scenario does when everything already arrived before its last
// relay started: the stop is clean. A SIGTERM that reaches the process
// before its main function installed the relay's handler (the Go runtime
// and package initialisation take tens of milliseconds) kills it with the
// default action instead, a stop that is not clean and says nothing about
// the relay; term waits until the relay says it started.
func TestChaosHarness_TermRightAfterStartIsClean(t *testing.T) {
	bin := chaosBinary(t)
	w := newChaosWorld(t, 1, 7)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: filepath.Join(w.dir, "data")})
	log := filepath.Join(w.dir, "relay.log")
	for i := range 3 {
		p := startProc(t, bin, cfg, log)
		if _, clean := p.term(time.Minute); !clean {
			t.Fatalf("stop %d right after start: not a clean exit (%v)", i+1, p.state)
		}
	}
}
