package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startProfiles starts a CPU profile into cpuPath and arranges a heap
// profile into memPath, each only when its path is set (debug flags of
// `slsrelay run`, off by default: `make bench` profiles the relay with
// them). The returned function stops and writes them. With memPath set, the
// in-use heap is also checked every second and, whenever it reaches a new
// high, its profile is written to memPath+".peak" (what the peak RSS is made
// of; the final profile at the stop shows allocations).
func startProfiles(cpuPath, memPath string) (func(), error) {
	var cpu *os.File
	if cpuPath != "" {
		f, err := os.Create(cpuPath)
		if err != nil {
			return nil, fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("cpuprofile: %w", err)
		}
		cpu = f
	}
	quit, watched := make(chan struct{}), make(chan struct{})
	if memPath != "" {
		go watchHeapPeak(memPath+".peak", quit, watched)
	} else {
		close(watched)
	}
	return func() {
		close(quit)
		<-watched
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if memPath != "" {
			f, err := os.Create(memPath)
			if err != nil {
				fmt.Fprintln(os.Stderr, "memprofile:", err)
				return
			}
			runtime.GC()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				fmt.Fprintln(os.Stderr, "memprofile:", err)
			}
			f.Close()
		}
	}, nil
}

// watchHeapPeak writes a heap profile to path each time the in-use heap
// reaches a new high, until quit is closed.
func watchHeapPeak(path string, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var peak uint64
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse <= peak+peak/20 {
			continue
		}
		peak = ms.HeapInuse
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
}
