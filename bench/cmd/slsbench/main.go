// Command slsbench measures slsrelay on a fixed, realistic workload and
// writes docs/PERFORMANCE.md (run by `make bench`). It is a tool, not part
// of the relay: it embeds the SLS emulator (ingest/slstest) and the HEC test
// receiver (deliver/hectest) in its own process, runs the built relay
// binary as a subprocess with a generated config and a temporary data
// directory, and samples the relay's memory and CPU from /proc.
//
//	slsbench -relay bin/slsrelay -runs 3 -events 1000000 -report docs/PERFORMANCE.md
//
// The last line printed is the summary, also the report's first line:
//
//	bench: e2e E events/s, ceiling C events/s, syslog-ng P events/s, spool/dd R, drain D MB/s, replay Y events/s, from archive A events/s, max RSS M MiB
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"slsrelay/ingest/slstest"
)

type options struct {
	relayBin     string
	runs         int
	events       int
	seed         int64
	report       string
	plot         string
	work         string
	drainBytes   int64
	backlogBytes int64
	backlogSmall int64
	spoolBytes   int64
	only         map[string]bool
	syslogNGRoot string
	latencyFor   time.Duration
	latencyRate  float64
	memWindow    time.Duration
	profileDir   string
	selfProfile  string
	hecExtra     []string
	sourceExtra  []string
}

// The benchmarks, in the order; -only picks some.
var benchNames = []string{"e2e", "ceiling", "spool", "drain", "memory", "wan", "peer", "replay", "archive"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "slsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.selfProfile != "" {
		f, err := os.Create(o.selfProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	b, err := newBench(o, stdout)
	if err != nil {
		return err
	}
	defer b.close()
	rep, err := b.runAll(ctx)
	if err != nil {
		return err
	}
	summary := rep.summary()
	if o.report != "" {
		if err := rep.write(o.report, o.plot); err != nil {
			return err
		}
		b.logf("report written to %s", o.report)
	}
	fmt.Fprintln(stdout, summary)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("slsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	def := os.Getenv("SLSRELAY_BIN")
	if def == "" {
		def = "bin/slsrelay"
	}
	fs.StringVar(&o.relayBin, "relay", def, "the slsrelay binary (default $SLSRELAY_BIN or bin/slsrelay)")
	fs.IntVar(&o.runs, "runs", 3, "runs of each benchmark (medians and spread are over them)")
	fs.IntVar(&o.events, "events", 1_000_000, "workload logs per end-to-end run")
	fs.Int64Var(&o.seed, "seed", 1, "workload seed")
	fs.StringVar(&o.report, "report", "", "write the report (Markdown) here, e.g. docs/PERFORMANCE.md")
	fs.StringVar(&o.plot, "plot", "", "write the backlog-drain plot (PNG) here (default: beside the report, perf-drain.png)")
	fs.StringVar(&o.work, "work", "", "scratch directory for data dirs and spools (default: a new one under $TMPDIR)")
	drain := fs.String("drain-bytes", "2GB", "raw bytes of the backlog the drain benchmark fills through the relay")
	backlog := fs.String("backlog-bytes", "10GB", "raw bytes of the large backlog of the memory benchmark")
	small := fs.String("backlog-small-bytes", "1GB", "raw bytes of the small backlog it is compared with")
	spoolSz := fs.String("spool-bytes", "1GiB", "bytes the spool-vs-dd benchmark writes")
	only := fs.String("only", "", "comma-separated benchmarks to run ("+strings.Join(benchNames, ",")+"); default all")
	fs.StringVar(&o.syslogNGRoot, "syslog-ng-root", "", "syslog-ng unpack root (default $SYSLOG_NG_ROOT or .cache/syslog-ng/root)")
	fs.StringVar(&o.selfProfile, "cpuprofile", "", "write slsbench's own CPU profile (the emulator, receivers and senders) to this file")
	fs.StringVar(&o.profileDir, "profile", "", "write the relay's CPU and heap profiles of each end-to-end run into this directory")
	env := fs.String("relay-env", "", "experiments: comma-separated NAME=VALUE added to the relay's environment (e.g. GOGC=200)")
	hecExtra := fs.String("hec-extra", "", "experiments: semicolon-separated 'key: value' lines added to the sink's hec config")
	srcExtra := fs.String("source-extra", "", "experiments: semicolon-separated 'key: value' lines added to the source's config")
	fs.DurationVar(&o.memWindow, "mem-window", 8*time.Second, "how long the memory benchmark samples RSS once the shards are assigned")
	fs.DurationVar(&o.latencyFor, "latency-for", 8*time.Second, "how long the half-load latency run writes")
	fs.Float64Var(&o.latencyRate, "latency-rate", 0, "experiments: the latency run's rate in events/s instead of half the e2e median (0: half the e2e median)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *env != "" {
		relayEnv = strings.Split(*env, ",")
	}
	o.hecExtra, o.sourceExtra = splitNonEmpty(*hecExtra, ";"), splitNonEmpty(*srcExtra, ";")
	var err error
	for _, f := range []struct {
		name string
		s    string
		dst  *int64
	}{{"-drain-bytes", *drain, &o.drainBytes}, {"-backlog-bytes", *backlog, &o.backlogBytes},
		{"-backlog-small-bytes", *small, &o.backlogSmall}, {"-spool-bytes", *spoolSz, &o.spoolBytes}} {
		if *f.dst, err = parseSize(f.s); err != nil {
			return o, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	switch {
	case o.runs < 1:
		return o, fmt.Errorf("-runs %d: want at least 1", o.runs)
	case o.events < 1000:
		return o, fmt.Errorf("-events %d: want at least 1000", o.events)
	case o.backlogSmall >= o.backlogBytes:
		return o, fmt.Errorf("-backlog-small-bytes must be below -backlog-bytes")
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			known := false
			for _, k := range benchNames {
				known = known || k == n
			}
			if !known {
				return o, fmt.Errorf("-only: unknown benchmark %q (want %s)", n, strings.Join(benchNames, ","))
			}
			o.only[n] = true
		}
	}
	if o.plot == "" && o.report != "" {
		o.plot = filepath.Join(filepath.Dir(o.report), "perf-drain.png")
	}
	if _, err := os.Stat(o.relayBin); err != nil {
		return o, fmt.Errorf("relay binary: %w (build it with make build, or pass -relay)", err)
	}
	if o.relayBin, err = filepath.Abs(o.relayBin); err != nil {
		return o, err
	}
	return o, nil
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, x := range strings.Split(s, sep) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// parseSize reads 2GB (powers of ten), 1GiB (powers of two) or a number of
// bytes.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	num := strings.TrimSpace(s)
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	var n float64
	if _, err := fmt.Sscanf(num, "%g", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want e.g. 2GB, 1GiB or 1048576", s)
	}
	return int64(n * float64(mult)), nil
}

// bench is the shared state of one slsbench invocation.
type bench struct {
	opts       options
	out        io.Writer
	relayBin   string
	work       string
	ownWork    bool
	sls        *slstest.Server
	e2e        loaded // the end-to-end workload
	drainStore loaded // the drain benchmark's backlog
	groups     atomic.Int64
	began      time.Time
}

func newBench(o options, out io.Writer) (*bench, error) {
	b := &bench{opts: o, out: out, relayBin: o.relayBin, work: o.work, began: time.Now()}
	if b.work == "" {
		dir, err := os.MkdirTemp("", "slsbench-")
		if err != nil {
			return nil, err
		}
		b.work, b.ownWork = dir, true
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return nil, err
	}
	s, err := slstest.New(slstest.Options{Project: benchProject, Logstores: []slstest.LogstoreOptions{},
		AccessKeys: map[string]string{benchAKID: benchAKSec}})
	if err != nil {
		b.close()
		return nil, err
	}
	b.sls = s
	return b, nil
}

func (b *bench) close() {
	if b.sls != nil {
		b.sls.Close()
	}
	if b.ownWork {
		os.RemoveAll(b.work)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) want(name string) bool { return b.opts.only == nil || b.opts.only[name] }

// profileArgs are the relay's debug flags writing profiles of run name,
// when -profile is set.
func (b *bench) profileArgs(name string) []string {
	if b.opts.profileDir == "" {
		return nil
	}
	return []string{"--cpuprofile", filepath.Join(b.opts.profileDir, name+".cpu"),
		"--memprofile", filepath.Join(b.opts.profileDir, name+".mem")}
}

func (b *bench) nextGroup(name string) string {
	return fmt.Sprintf("%s-%d", name, b.groups.Add(1))
}

// timeout for relaying n events: generous (10k events/s), at least 2 min.
func (b *bench) timeout(n int) time.Duration {
	return max(2*time.Minute, time.Duration(n/10_000)*time.Second)
}

// runAll runs the selected benchmarks, each opts.runs times.
func (b *bench) runAll(ctx context.Context) (*report, error) {
	rep := &report{opts: b.opts, started: time.Now()}
	rep.machine = describeMachine(b.work)
	if b.want("e2e") || b.want("ceiling") || b.want("wan") || b.want("replay") || b.want("archive") {
		b.logf("loading %d audit logs over 8 shards into the emulator", b.opts.events)
		l, err := loadLogstore(b.sls, "e2e", 8, b.opts.events, b.opts.seed)
		if err != nil {
			return nil, err
		}
		b.e2e, rep.workload = l, l
		b.logf("loaded %d logs in %d groups, %.1f MB raw (%.0f B/log; %.0f B/log of keys+values) in %s",
			l.Logs, l.Groups, float64(l.RawBytes)/1e6, float64(l.RawBytes)/float64(l.Logs),
			float64(l.ContentBytes)/float64(l.Logs), l.Took.Round(time.Millisecond))
	}
	steps := []struct {
		name string
		f    func(context.Context, *report) error
	}{
		{"e2e", b.benchE2E},
		{"ceiling", b.benchCeiling},
		{"spool", b.registered("spool")},
		{"drain", b.benchDrain},
		{"memory", b.benchMemory},
		{"wan", b.benchWAN},
		{"peer", b.registered("peer")},
		{"replay", b.registered("replay")},
		{"archive", b.registered("archive")},
	}
	for _, s := range steps {
		if !b.want(s.name) {
			continue
		}
		if err := s.f(ctx, rep); err != nil {
			return nil, fmt.Errorf("benchmark %s: %w", s.name, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	rep.took = time.Since(rep.started)
	return rep, nil
}

func (b *bench) benchE2E(ctx context.Context, rep *report) error {
	for _, ack := range []bool{false, true} {
		for i := 0; i < b.opts.runs; i++ {
			r, err := b.runE2E(ctx, ack, i)
			if err != nil {
				return err
			}
			b.logf("e2e ack=%t run %d: %d events in %s: %.0f events/s, %.1f MB/s raw, %.1f CPU s/GB, peak RSS %.0f MiB, dups %d",
				ack, i+1, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerSec, r.RawMBps, r.CPUPerGB, mib(r.PeakRSS), r.Dups)
			if ack {
				rep.e2eAck = append(rep.e2eAck, r)
			} else {
				rep.e2e = append(rep.e2e, r)
			}
		}
	}
	rate := 0.5 * median(pluck(rep.e2e, func(r e2eResult) float64 { return r.EventsPerSec }))
	if b.opts.latencyRate > 0 {
		rate = b.opts.latencyRate
	}
	for i := 0; i < b.opts.runs; i++ {
		r, err := b.runLatency(ctx, rate, b.opts.latencyFor, i)
		if err != nil {
			return err
		}
		b.logf("latency run %d at %.0f events/s (%.0f written/s): p50 %s, p99 %s over %d events (p99 from %s on: %s)",
			i+1, rate, r.Achieved, r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Events,
			settleAfter, r.SettledP99.Round(time.Millisecond))
		rep.latency = append(rep.latency, r)
	}
	return nil
}

// benchFuncs holds benchmarks that register themselves from their own
// files (spooldd.go: spool; peer_syslogng.go: peer).
var benchFuncs = map[string]func(*bench, context.Context, *report) error{}

// registered returns the named benchmark, or one that notes in the report
// that this build of slsbench lacks it.
func (b *bench) registered(name string) func(context.Context, *report) error {
	return func(ctx context.Context, rep *report) error {
		f, ok := benchFuncs[name]
		if !ok {
			rep.missing = append(rep.missing, name)
			return nil
		}
		return f(b, ctx, rep)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
