package main

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// Scenarios 19 and 20: HEC behind things that are not Splunk — a load
// balancer between the relay and several indexers, and proxies answering
// statuses HEC does not list.

func TestChaos_HECStickyLoadBalancer(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	const ackTimeout = time.Second
	run, kills := pick(3*time.Second, 60*time.Second), pick(1, 5)
	w := newChaosWorld(t, chaosShards, 1919, hectest.Options{AckEnabled: true}, hectest.Options{AckEnabled: true})
	lb := hectest.NewStickyProxy(t, w.hecs[0], w.hecs[1])
	dd := filepath.Join(w.dir, "data")
	sink := fmt.Sprintf("  - name: splunk-lb\n    type: hec\n    hec:\n      url: %s\n      token: %s\n      ack: {enabled: true, poll_interval: 100ms, timeout: %s}\n",
		lb.URL(), testToken, ackTimeout)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, Sinks: []int{}, ExtraSinks: sink})
	log := filepath.Join(w.dir, "relay.log")
	stop := w.load(chaosPerGroup, chaosPeriod)
	p := startProc(t, bin, cfg, log)
	// kill -9 now and then: a new process starts without the cookie and
	// must find its way back to one indexer.
	for k := 0; k < kills; k++ {
		time.Sleep(run / time.Duration(kills+1))
		p.kill()
		p = startProc(t, bin, cfg, log)
	}
	time.Sleep(run / time.Duration(kills+1))
	stop()
	ok := w.waitAll(pick(2*time.Minute, 5*time.Minute), dd)
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	b, _ := os.ReadFile(log)
	resends := strings.Count(string(b), "hec ack timed out, sending again")
	per, byCookie := lb.Served()
	var reqs, acked int
	for _, h := range w.hecs {
		for _, r := range h.Requests() {
			if r.Status == http.StatusOK {
				reqs++
				if r.Acked {
					acked++
				}
			}
		}
	}
	bound := crashBound(kills)
	report(t, chaosRow{ID: 19, Name: "HEC acks behind a sticky load balancer",
		Load:   chaosLoad + "; indexer acknowledgement on; two receivers behind a load balancer that sticks by cookie and otherwise balances by URI (event and ack paths land on different receivers)",
		Faults: fmt.Sprintf("the load balancer itself; kill -9 × %d (each new process starts without the cookie); ack timeout %s", kills, ackTimeout),
		Bound:  fmt.Sprintf("lost 0; no ack-timeout re-send (ack polls reach the receiver that took the request); dup ≤ %d (the kills)", bound),
		T:      tl,
		Figures: []string{fmt.Sprintf("requests through the load balancer per receiver: %v, %d of them routed by cookie", per, byCookie),
			fmt.Sprintf("event requests accepted %d, acked %d (the rest were in flight at a kill); ack-timeout re-sends %d", reqs, acked, resends)},
		Pass: ok && clean && tl.Lost == 0 && resends == 0 && tl.Duplicates <= bound,
		Notes: "the sink keeps one cookie jar per channel; without it (the relay before this scenario existed) the short run acked nothing: " +
			"every ack poll went to the receiver that had not taken the request, each request was re-sent every ack timeout, and the spool never drained",
		Elapsed: time.Since(begin),
	})
}

func TestChaos_HECUnknown4xx(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	hold := pick(1500*time.Millisecond, 15*time.Second)
	w := newChaosWorld(t, chaosShards, 2020)
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	// The loop's backoff capped at 2 s, so that each phase's pause ends
	// soon after the status clears.
	sink := fmt.Sprintf("  - name: hec0\n    type: hec\n    retry: {min_backoff: 100ms, max_backoff: 2s}\n    hec:\n      url: %s\n      token: %s\n      timeout: 1s\n",
		w.hecs[0].URL(), testToken)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr, Sinks: []int{}, ExtraSinks: sink})
	log := filepath.Join(w.dir, "relay.log")
	h := w.hecs[0]
	stop := w.load(chaosPerGroup, chaosPeriod)
	p := startProc(t, bin, cfg, log)
	waitUntil(2*time.Minute, func() bool { return metric(maddr, "slsrelay_delivered_events_total") > 0 })
	statuses := []int{407, 411, 414, 415, 422, 451}
	paused := func() bool { return sinkMetric(maddr, "slsrelay_sink_paused", "hec0") == 1 }
	var failed []string
	for _, st := range statuses {
		// Each phase: the status answered and the sink paused, held a
		// while, then cleared and the sink resumed (each wait bounded).
		h.SetFault(hectest.Fault{Status: st, Text: http.StatusText(st)})
		if !waitUntil(time.Minute, func() bool { return h.Stats().ByStatus[st] > 0 && paused() }) {
			failed = append(failed, fmt.Sprintf("%d: no pause", st))
		}
		time.Sleep(hold)
		h.SetFault(hectest.Fault{})
		if !waitUntil(time.Minute, func() bool { return !paused() }) {
			failed = append(failed, fmt.Sprintf("%d: no resume", st))
		}
		time.Sleep(hold / 2)
	}
	stop()
	ok := w.waitAll(pick(2*time.Minute, 5*time.Minute), dd)
	unlisted := sinkMetric(maddr, "slsrelay_sink_unlisted_status_total", "hec0")
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	b, _ := os.ReadFile(log)
	logged := strings.Count(string(b), "not a status HEC lists")
	stats := h.Stats()
	var byStatus []string
	for _, s := range slices.Sorted(maps.Keys(stats.ByStatus)) {
		byStatus = append(byStatus, fmt.Sprintf("%d: %d", s, stats.ByStatus[s]))
	}
	report(t, chaosRow{ID: 20, Name: "unknown 4xx", Load: chaosLoad,
		Faults: fmt.Sprintf("HEC answers %v (statuses HEC does not list, as a proxy in between would), each until the sink paused and %s more, good traffic between", statuses, hold),
		Bound:  "lost 0; dead-lettered 0 (an unlisted status says nothing about the data); the sink pauses and retries, counted and logged",
		T:      tl,
		Figures: []string{"HEC answers by status: " + strings.Join(byStatus, ", "),
			fmt.Sprintf("phases where the sink did not pause, or resume after: %v; slsrelay_sink_unlisted_status_total %.0f; log lines naming the unlisted status %d (rate-limited)", failed, unlisted, logged)},
		Pass:    ok && clean && tl.Lost == 0 && tl.DeadLettered == 0 && len(failed) == 0 && unlisted > 0 && logged > 0,
		Elapsed: time.Since(begin),
	})
}
