package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// hecBody is one pre-built request: gzip-compressed HEC JSON as the relay's
// HEC sink sends it.
type hecBody struct {
	gz     []byte
	events int
	raw    int // uncompressed bytes
}

// buildBodies renders n workload logs through the relay's own HEC sink
// (deliver.HEC, default options: gzip level 1, 1 MiB requests) into a
// capturing server, so the ceiling replays exactly the relay's wire format.
func buildBodies(n int, seed int64) ([]hecBody, error) {
	var (
		mu     sync.Mutex
		bodies []hecBody
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gz, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, events, err := countEvents(gz)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		bodies = append(bodies, hecBody{gz: gz, events: events, raw: raw})
		mu.Unlock()
		w.Header().Set("Content-Type", hectest.ContentTypeHEC)
		io.WriteString(w, `{"text":"Success","code":0}`)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	h, err := deliver.NewHEC(deliver.HECOptions{URL: "http://" + ln.Addr().String(), Token: benchToken,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	g := slstest.NewGenerator(slstest.KindAudit, genSeed(seed, 900))
	for done := 0; done < n; {
		// One record as ingest builds it: a pull of 100 groups.
		lgl := &sls.LogGroupList{}
		k := 0
		for ; k < 100*perGroup && done+k < n; k += perGroup {
			lgl.LogGroups = append(lgl.LogGroups, g.LogGroup(min(perGroup, n-done-k)))
		}
		payload, err := lgl.Marshal()
		if err != nil {
			return nil, err
		}
		rec := &spool.Record{Seq: 1, Project: benchProject, Logstore: "e2e", Shard: 0, Count: k, Payload: payload}
		evs, err := deliver.Decode(rec)
		if err != nil {
			return nil, err
		}
		if err := h.Send(context.Background(), &deliver.Batch{Seq: 1, Events: evs}); err != nil {
			return nil, err
		}
		done += len(evs)
	}
	return bodies, nil
}

// countEvents decompresses a body and counts its JSON objects.
func countEvents(gz []byte) (raw, events int, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return 0, 0, err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return 0, 0, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var m json.RawMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return 0, 0, err
		}
		events++
	}
	return len(b), events, nil
}

// ceilingResult is one run of the sender that does nothing but post.
type ceilingResult struct {
	Events       int
	Requests     int
	Elapsed      time.Duration
	EventsPerSec float64
	WireMBps     float64 // gzip bytes per second
	BodyMBps     float64 // HEC JSON bytes per second
}

// runCeiling posts bodies round robin over conns connections until at least
// n events were accepted by a fresh receiver.
func runCeiling(ctx context.Context, bodies []hecBody, n, conns int) (ceilingResult, error) {
	var res ceilingResult
	var got atomic.Int64
	hec, err := hectest.New(hectest.Options{Token: benchToken, Consume: func(evs []hectest.Event) {
		got.Add(int64(len(evs)))
	}})
	if err != nil {
		return res, err
	}
	defer hec.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	url := hec.URL() + hectest.PathEvent
	var (
		next    atomic.Int64
		sent    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		sendErr error
	)
	start := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				body := bodies[int(i)%len(bodies)]
				if sent.Add(int64(body.events))-int64(body.events) >= int64(n) {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body.gz))
				req.Header.Set("Authorization", "Splunk "+benchToken)
				req.Header.Set("Content-Encoding", "gzip")
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errOnce.Do(func() { sendErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if sendErr != nil {
		return res, fmt.Errorf("ceiling sender: %w", sendErr)
	}
	st := hec.Stats()
	res.Events, res.Requests = int(got.Load()), st.Requests
	if res.Events < n {
		return res, fmt.Errorf("ceiling: receiver counted %d of %d events", res.Events, n)
	}
	res.EventsPerSec = float64(res.Events) / res.Elapsed.Seconds()
	res.WireMBps = float64(st.WireBytes) / 1e6 / res.Elapsed.Seconds()
	res.BodyMBps = float64(st.BodyBytes) / 1e6 / res.Elapsed.Seconds()
	return res, nil
}

// ceilingConns is the sender's parallelism: enough requests in flight to
// keep both cores busy on the receiver's side.
const ceilingConns = 4

func (b *bench) benchCeiling(ctx context.Context, rep *report) error {
	poolEvents := min(b.opts.events, 100_000)
	bodies, err := buildBodies(poolEvents, b.opts.seed)
	if err != nil {
		return fmt.Errorf("build HEC bodies: %w", err)
	}
	var gz, raw, events int
	for _, bd := range bodies {
		gz += len(bd.gz)
		raw += bd.raw
		events += bd.events
	}
	rep.ceilingPool = fmt.Sprintf("%d requests, %d events, %.0f B of HEC JSON and %.0f B gzip per event (%.1f×)",
		len(bodies), events, float64(raw)/float64(events), float64(gz)/float64(events), float64(raw)/float64(gz))
	b.logf("ceiling: built %s", rep.ceilingPool)
	for i := 0; i < b.opts.runs; i++ {
		r, err := runCeiling(ctx, bodies, b.opts.events, ceilingConns)
		if err != nil {
			return err
		}
		b.logf("ceiling run %d: %d events in %s: %.0f events/s, %.1f MB/s of HEC JSON", i+1, r.Events,
			r.Elapsed.Round(time.Millisecond), r.EventsPerSec, r.BodyMBps)
		rep.ceiling = append(rep.ceiling, r)
	}
	return nil
}
