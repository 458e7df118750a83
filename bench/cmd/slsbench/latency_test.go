package main

import (
	"testing"
	"time"
)

// The settled p99 counts only the events written from the settle instant
// on; the other figures count every event, and neither input is reordered.
func TestDelayPercentiles(t *testing.T) {
	start := time.Unix(1000, 0)
	var delays []time.Duration
	var at []int64
	// 100 early events with slow delays 1000..1099 ms, then 200 settled
	// ones with 1..200 ms.
	for i := range 100 {
		delays = append(delays, time.Duration(1000+i)*time.Millisecond)
		at = append(at, start.Add(time.Duration(i)*time.Millisecond).UnixNano())
	}
	for i := range 200 {
		delays = append(delays, time.Duration(200-i)*time.Millisecond)
		at = append(at, start.Add(2*time.Second+time.Duration(i)*time.Millisecond).UnixNano())
	}
	first := delays[0]
	p50, p99, mx, settled := delayPercentiles(delays, at, start.Add(2*time.Second))
	if p50 != 151*time.Millisecond || p99 != 1097*time.Millisecond || mx != 1099*time.Millisecond {
		t.Errorf("p50 %v, p99 %v, max %v; want 151ms, 1.097s, 1.099s", p50, p99, mx)
	}
	if settled != 199*time.Millisecond {
		t.Errorf("settled p99 %v, want 199ms", settled)
	}
	if delays[0] != first {
		t.Error("delays were sorted in place")
	}
	if _, _, _, s := delayPercentiles(delays[:100], at[:100], start.Add(2*time.Second)); s != 0 {
		t.Errorf("settled p99 with no settled event = %v, want 0", s)
	}
	if a, b, c, d := delayPercentiles(nil, nil, start); a+b+c+d != 0 {
		t.Error("no delays: want zeros")
	}
}
