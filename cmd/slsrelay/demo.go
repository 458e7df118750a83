package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// demoPlan sizes one demo run.
type demoPlan struct {
	Shards     int
	Preloaded  int           // logs in SLS before the relay starts
	Live       int           // logs written while the relay runs
	PerGroup   int           // logs per log group
	OutageAt   float64       // fraction of Preloaded delivered when HEC goes down
	Outage     time.Duration // maintenance window
	Timeout    time.Duration // give up (and report the loss) after this
	ShowBar    bool
	KeepLogDir bool
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	p := demoPlan{Shards: 4, PerGroup: 100, OutageAt: 0.3, ShowBar: true}
	fs.IntVar(&p.Preloaded, "events", 150000, "audit logs seeded into SLS before the relay starts")
	fs.IntVar(&p.Live, "live-events", 50000, "audit logs written while the relay runs")
	fs.DurationVar(&p.Outage, "outage", 8*time.Second, "length of the HEC maintenance window")
	fs.DurationVar(&p.Timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.BoolVar(&p.KeepLogDir, "keep", false, "keep the temporary data directory and relay log")
	if err := parseFlags(fs, args, "usage: slsrelay demo [flags]\n\nRuns the relay end to end on an embedded SLS emulator and HEC receiver,\nwith a HEC outage in the middle, and reports what arrived.", stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return flagError("demo", stderr, "unexpected argument %q", fs.Arg(0))
	}
	res, err := demo(ctx, p, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: delivered %d/%d events, lost %d, duplicates %d\n", res.unique, res.total, res.total-res.unique, res.dups)
	if res.unique != res.total {
		return fmt.Errorf("%d events lost", res.total-res.unique)
	}
	return nil
}

type demoResult struct{ total, unique, dups int }

func demo(ctx context.Context, p demoPlan, out io.Writer) (demoResult, error) {
	var res demoResult
	dir, err := os.MkdirTemp("", "slsrelay-demo-")
	if err != nil {
		return res, err
	}
	if !p.KeepLogDir {
		defer os.RemoveAll(dir)
	}
	logFile, err := os.Create(filepath.Join(dir, "relay.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	const project, logstore, akID, akSecret = "demo-project", "actiontrail", "demo-ak-id", "demo-ak-secret"
	sls, err := slstest.New(slstest.Options{
		Project:    project,
		Logstores:  []slstest.LogstoreOptions{{Name: logstore, Shards: p.Shards}},
		AccessKeys: map[string]string{akID: akSecret},
	})
	if err != nil {
		return res, fmt.Errorf("start SLS emulator: %w", err)
	}
	defer sls.Close()
	if _, err := slstest.Seed(sls, project, logstore, slstest.KindAudit, p.Preloaded, p.PerGroup, 1); err != nil {
		return res, fmt.Errorf("seed emulator: %w", err)
	}
	const token = "11111111-2222-3333-4444-555555555555"
	hec, err := hectest.New(hectest.Options{Token: token})
	if err != nil {
		return res, fmt.Errorf("start HEC receiver: %w", err)
	}
	defer hec.Close()

	cfg := &Config{
		DataDir: filepath.Join(dir, "data"),
		SLS: SLSConfig{Endpoint: sls.Endpoint(), ConnectTo: sls.Addr(),
			AccessKeyID: akID, AccessKeySecret: Secret(akSecret)},
		Sources: []Source{{Project: project, Logstore: logstore,
			HeartbeatInterval: Duration(2 * time.Second), FetchInterval: Duration(100 * time.Millisecond)}},
		Spool: SpoolConfig{MaxBytes: 1 << 30, MinFreeBytes: 64 << 20},
		Sinks: []SinkConfig{{Type: "hec", HEC: &HECConfig{URL: hec.URL(), Token: token}}},
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return res, fmt.Errorf("demo config: %w", err)
	}
	total := p.Preloaded + p.Live
	res.total = total
	fmt.Fprintf(out, "SLS emulator at %s (project %s, logstore %s, %d shards, %d audit logs preloaded, %d more arriving live)\n",
		sls.Addr(), project, logstore, p.Shards, p.Preloaded, p.Live)
	fmt.Fprintf(out, "HEC receiver at %s; relay data in %s, its log in %s\n", hec.URL(), cfg.DataDir, logFile.Name())

	r, err := openRelay(cfg, log)
	if err != nil {
		return res, err
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var runErr error
	wg.Add(2)
	go func() { defer wg.Done(); runErr = r.Run(rctx) }()
	go func() { defer wg.Done(); writeLive(rctx, sls, project, logstore, p) }()

	c := newIDCounter()
	bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(out), progressbar.OptionSetDescription("delivered"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetWidth(30),
		progressbar.OptionSetVisibility(p.ShowBar))
	deadline := time.After(p.Timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	phase := "before"
	var outageEnd time.Time
loop:
	for c.unique() < total {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			fmt.Fprintf(out, "\ndemo: timed out after %s\n", p.Timeout)
			break loop
		case <-tick.C:
		}
		c.scan(hec)
		_ = bar.Set(c.unique())
		switch {
		case phase == "before" && float64(c.unique()) >= p.OutageAt*float64(p.Preloaded):
			hec.SetFault(hectest.Fault{Down: true})
			phase, outageEnd = "down", time.Now().Add(p.Outage)
			bar.Clear()
			fmt.Fprintf(out, "\nHEC maintenance window: receiver down for %s (the relay keeps pulling into its spool)\n", p.Outage)
		case phase == "down" && time.Now().After(outageEnd):
			st := r.spools[0].Stats()
			hec.SetFault(hectest.Fault{})
			phase = "after"
			bar.Clear()
			fmt.Fprintf(out, "\nHEC back: %d records (%d MiB) waiting in the spool drain now\n", st.Depth, st.Bytes>>20)
		}
	}
	_ = bar.Finish()
	fmt.Fprintln(out)
	stop()
	wg.Wait()
	if err := r.Close(); err != nil && runErr == nil {
		runErr = err
	}
	c.scan(hec)
	res.unique, res.dups = c.unique(), c.dups
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return res, runErr
	}
	return res, nil
}

// writeLive appends p.Live logs over a few seconds while the relay runs.
func writeLive(ctx context.Context, sls *slstest.Server, project, logstore string, p demoPlan) {
	gen := slstest.NewGenerator(slstest.KindAudit, 2)
	groups := (p.Live + p.PerGroup - 1) / p.PerGroup
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	written := 0
	for i := 0; i < groups; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := min(p.PerGroup, p.Live-written)
		if err := sls.Append(project, logstore, i%p.Shards, gen.LogGroup(n)); err != nil {
			return
		}
		written += n
	}
}

// idCounter counts distinct event_id values received by the HEC receiver.
type idCounter struct {
	seen map[string]int
	next int // events already scanned
	dups int
}

func newIDCounter() *idCounter { return &idCounter{seen: map[string]int{}} }

func (c *idCounter) unique() int { return len(c.seen) }

func (c *idCounter) scan(hec *hectest.Server) {
	evs := hec.Events()
	for _, ev := range evs[c.next:] {
		var body struct {
			ID string `json:"event_id"`
		}
		if json.Unmarshal(ev.Event, &body) != nil || body.ID == "" {
			continue
		}
		c.seen[body.ID]++
		if c.seen[body.ID] > 1 {
			c.dups++
		}
	}
	c.next = len(evs)
}
