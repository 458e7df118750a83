package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"slsrelay/checkpoint"
	"slsrelay/deliver"
	"slsrelay/ingest"
	"slsrelay/spool"
)

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "path to the YAML config file (required)")
	cpuProfile := fs.String("cpuprofile", "", "debug: write a CPU profile (go tool pprof) to this file until the relay stops; off by default")
	memProfile := fs.String("memprofile", "", "debug: write a heap profile to this file when the relay stops; off by default")
	if err := parseFlags(fs, args, "usage: slsrelay run --config relay.yaml [--log-level L] [--log-format F] [--cpuprofile file] [--memprofile file]", stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return flagError("run", stderr, "unexpected argument %q", fs.Arg(0))
	case *path == "":
		return flagError("run", stderr, "--config is required")
	}
	stopProfiles, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	defer stopProfiles()
	if err := applyLogFlags(&LogConfig{}); err != nil {
		return flagError("run", stderr, "%v", err)
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		return err
	}
	_ = applyLogFlags(&cfg.Log)
	log := newLogger(stderr, cfg.Log)
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	if lim, ok := setMemoryLimit(cfg); ok {
		log.Debug("soft memory limit set", slog.Int64("bytes", lim))
	}
	r, err := openRelay(cfg, log)
	if err != nil {
		return err
	}
	r.configPath = *path
	runErr := r.Run(ctx)
	if err := r.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// relay is the wired daemon: one checkpoint store, one spool and delivery
// loop per sink, one ingest worker per source.
type relay struct {
	cfg    *Config
	log    *slog.Logger
	cps    *checkpoint.Store
	spools []*spool.Lanes
	events []*countedSpool // spools[i] counting its events
	sinks  []deliver.Sink
	loops  []*deliver.Loop
	ingest *ingest.Ingest // nil in drain-only mode
	// statusEvery is the period of the status log line.
	statusEvery time.Duration
	spoolBudget int64
	// started is when openRelay ran; configPath the file it came from.
	started    time.Time
	configPath string
}

// openRelay opens everything in dependency order: the data-directory lock
// (inside checkpoint.Open) before any file, then the spools, then sinks.
// On error it closes what it opened.
func openRelay(cfg *Config, log *slog.Logger) (_ *relay, err error) {
	r := &relay{cfg: cfg, log: log, statusEvery: 30 * time.Second, spoolBudget: spoolOptions(cfg, nil).MaxBytes, started: time.Now()}
	if r.spoolBudget == 0 {
		r.spoolBudget = spool.DefaultMaxBytes
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.cps, err = checkpoint.Open(cfg.DataDir, checkpointOptions(cfg, log.With(slog.String("component", "checkpoint")))); err != nil {
		return nil, err
	}
	if err := checkOrphanedSpools(cfg, log); err != nil {
		return nil, err
	}
	ingestSpools := make([]ingest.Spool, 0, len(cfg.Sinks))
	for _, sc := range cfg.Sinks {
		slog := log.With(slog.String("sink", sc.Name))
		// A paced sink interleaves new records with its backlog (two
		// lanes); any other is one FIFO, unless a second lane is on disk.
		var seal time.Duration
		if sc.RateLimit > 0 {
			seal = time.Duration(cfg.Spool.InterleaveAfter)
		}
		sp, err := spool.OpenLanes(spoolDir(cfg, sc.Name), sinkSpoolOptions(cfg, sc, slog), seal)
		if err != nil {
			return nil, fmt.Errorf("open spool of sink %s: %w", sc.Name, err)
		}
		r.spools = append(r.spools, sp)
		cs := newCountedSpool(sp)
		r.events = append(r.events, cs)
		ingestSpools = append(ingestSpools, cs)
		sink, err := newSink(sc, slog)
		if err != nil {
			return nil, err
		}
		r.sinks = append(r.sinks, sink)
		r.loops = append(r.loops, deliver.NewLoop(cs, sink, deliver.LoopOptions{
			Logger:       slog,
			RateLimit:    sc.RateLimit,
			BatchRecords: sc.BatchRecords,
			Retry:        retryPolicy(sc),
			StopGrace:    time.Duration(cfg.ShutdownTimeout),
		}))
	}
	if cfg.DrainOnly {
		return r, nil
	}
	sources, err := ingestSources(cfg)
	if err != nil {
		return nil, err
	}
	r.ingest, err = ingest.New(ingest.Options{
		Sources:         sources,
		Spools:          ingestSpools,
		Checkpoints:     r.cps,
		ShutdownTimeout: time.Duration(cfg.ShutdownTimeout),
		Logger:          log.With(slog.String("component", "ingest")),
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Run relays until ctx ends (nil) or a component fails (its error). On ctx's
// end ingest stops pulling and flushes checkpoints, and the delivery loops
// stop after their in-flight send or abandon it; both are bounded by
// shutdown_timeout.
func (r *relay) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if r.ingest != nil {
		g.Go(func() error { return r.ingest.Run(gctx) })
	}
	for _, l := range r.loops {
		g.Go(func() error { return l.Run(gctx) })
	}
	g.Go(func() error { r.reportStatus(gctx); return nil })
	if addr := r.cfg.Metrics.Listen; addr != "" {
		g.Go(func() error { return r.serveMetrics(gctx, addr) })
	}
	v, c, d := buildVersion()
	r.log.Info("relay started", slog.String("version", v), slog.String("commit", c), slog.String("built", d),
		slog.String("config", r.configPath), slog.Int("sources", len(r.cfg.Sources)), slog.Int("sinks", len(r.sinks)),
		slog.Bool("drain_only", r.cfg.DrainOnly), slog.String("data_dir", r.cfg.DataDir))
	go r.logStop(ctx, gctx)
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	r.log.Info("relay stopped")
	return nil
}

// logStop says, when ctx ends (a signal), what the relay waits for and
// until when; nothing when a component failed first (gctx ended alone).
func (r *relay) logStop(ctx, gctx context.Context) {
	select {
	case <-ctx.Done():
	case <-gctx.Done():
		if ctx.Err() == nil {
			return
		}
	}
	grace := time.Duration(r.cfg.ShutdownTimeout)
	why := "stop requested"
	switch s, _ := lastSignal.Load().(os.Signal); s {
	case syscall.SIGTERM:
		why = "received SIGTERM"
	case syscall.SIGINT:
		why = "received SIGINT"
	}
	r.log.Info(why+": stopping; pulls stop now, the checkpoints are flushed and sends in flight may finish (a send being retried is given up at once; it stays in the spool); a second signal exits at once",
		slog.Duration("shutdown_timeout", grace), slog.Time("until", time.Now().Add(grace).Round(time.Second)))
}

// reportStatus logs one line per sink every statusEvery.
func (r *relay) reportStatus(ctx context.Context) {
	t := time.NewTicker(r.statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.ingest != nil {
			for _, w := range r.ingest.Workers() {
				s := w.Stats()
				r.log.Info("ingest", slog.String("project", s.Project), slog.String("logstore", s.Logstore),
					slog.Int64("pulls", s.Pulls), slog.Int64("logs", s.Logs), slog.Int64("gaps", s.Gaps))
			}
		}
		status := r.status(time.Now())
		for i, sp := range r.spools {
			st := sp.Stats()
			ls := r.loops[i].Stats()
			attrs := []any{slog.String("sink", r.sinks[i].Name()), slog.String("state", status.Sinks[i].State),
				slog.Int64("spool_records", st.Depth), slog.Int64("spool_bytes", st.Bytes),
				slog.Duration("oldest", st.OldestAge.Round(time.Second)), slog.Uint64("delivered_events", ls.DeliveredEvents),
				slog.Int64("dead_letters", st.DeadLetters)}
			if reason := status.Sinks[i].Reason; reason != "" {
				attrs = append(attrs, slog.String("reason", reason))
			}
			r.log.Info("sink", attrs...)
		}
		if status.State != StateDelivering {
			r.log.Warn("relay "+status.State, slog.String("reasons", strings.Join(status.Reasons, "; ")))
		}
	}
}

// Close releases everything in reverse order; safe after a failed open.
func (r *relay) Close() error {
	var errs []error
	for _, s := range r.sinks {
		errs = append(errs, s.Close())
	}
	for _, sp := range r.spools {
		errs = append(errs, sp.Close())
	}
	if r.cps != nil {
		errs = append(errs, r.cps.Close())
	}
	return errors.Join(errs...)
}

// setMemoryLimit gives the Go runtime a soft memory limit when GOMEMLIMIT
// is not set: 200 MiB for one source and one sink, 64 MiB more for each
// further one. Without it the heap may double its live size between
// collections (GOGC=100) and the transient 10 MiB buffers of pulls and
// records pushed RSS past 400 MiB; with it the collector runs earlier
// (make bench e2e, 200k events: peak RSS 409-455 → 215-245 MiB, CPU per GB
// unchanged). It is soft: past it the runtime collects more often, never
// fails an allocation. GOMEMLIMIT (e.g. GOMEMLIMIT=1GiB or off) overrides.
func setMemoryLimit(cfg *Config) (int64, bool) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return 0, false
	}
	extra := max(0, len(cfg.Sources)-1) + max(0, len(cfg.Sinks)-1)
	lim := int64(200<<20) + int64(extra)*(64<<20)
	debug.SetMemoryLimit(lim)
	return lim, true
}
