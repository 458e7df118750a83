package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"slsrelay/checkpoint"
	"slsrelay/spool"
)

// slsrelay replay re-reads a time range of a logstore from SLS (by receive
// time, through cursors by time, no consumer group) into the config's
// sinks, through the same spools, delivery loops, retries, rate limits and
// dead letters as run. Its progress and spools live in a data directory of
// its own, locked like a relay's, so it runs beside a live relay on the
// same config. The same command continues a job that was interrupted.

const replayUsage = `usage: slsrelay replay --config relay.yaml --source PROJECT/LOGSTORE --from FROM --to TO
         [--sink NAME] [--data-dir DIR] [--rate EVENTS_PER_S] [--query SPL] [--log-time] [--tag]
       slsrelay replay --config relay.yaml --from-spool --sink NAME --from FROM --to TO
         [--to-sink OTHER] [--source PROJECT/LOGSTORE] [--data-dir DIR] [--rate EVENTS_PER_S] [--tag]

With --from-spool the events come from the archive of sink NAME (its
spool.retain), not from SLS: those whose own log time is in [FROM, TO), sent
to NAME again or to OTHER.

FROM and TO are RFC 3339 times (2026-12-01T00:00:00Z) or relative to now
(-24h, -90m, now); the range [FROM, TO) is by SLS receive time, to the second.
The same command resumes an interrupted job. Exit status: 0 when every event
of the range was delivered or dead-lettered, 3 when that holds but part of
the range had aged out of the logstore's retention, 1 on errors or when
interrupted, 2 on usage errors.`

// replayArgs are the replay command's flags, checked.
type replayArgs struct {
	config            string
	project, logstore string
	fromArg, toArg    string
	from, to          time.Time
	sink              string
	dataDir           string
	rate              float64
	query             string
	logTime, tag      bool
	progressEvery     time.Duration
	progressJSON      bool   // JSON progress lines even on a terminal
	parallel          int    // shards read at once
	fromSpool         bool   // read the archive of sink (replay_spool.go)
	toSink            string // with fromSpool: deliver there instead of sink
}

// deliverTo is the sink the job delivers to ("" for every sink).
func (a *replayArgs) deliverTo() string {
	if a.fromSpool && a.toSink != "" {
		return a.toSink
	}
	return a.sink
}

// exitError carries an exit status other than 1 (see main.go's dispatch):
// replay's 3 when the job finished but part of the range had aged out.
type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a, err := parseReplayArgs(args, stderr, time.Now())
	if err != nil {
		return err
	}
	cfg, err := LoadConfig(a.config)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log).With(slog.String("component", "replay"))
	return replay(ctx, cfg, a, stdout, log)
}

func parseReplayArgs(args []string, stderr io.Writer, now time.Time) (*replayArgs, error) {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	a := &replayArgs{}
	var source string
	fs.StringVar(&a.config, "config", "", "path to the relay's YAML config file (required): SLS access and sinks")
	fs.StringVar(&source, "source", "", "PROJECT/LOGSTORE to replay (required)")
	fs.StringVar(&a.fromArg, "from", "", "start of the range (inclusive): RFC 3339, or relative to now such as -24h (required)")
	fs.StringVar(&a.toArg, "to", "", "end of the range (exclusive): RFC 3339, relative such as -1h, or now (required)")
	fs.StringVar(&a.sink, "sink", "", "deliver to this sink of the config only (default: every sink)")
	fs.StringVar(&a.dataDir, "data-dir", "", "the job's spools and progress (default: <data_dir>/replay/<job>)")
	fs.Float64Var(&a.rate, "rate", 0, "cap delivery at this many events per second per sink (default: the sink's rate_limit)")
	fs.StringVar(&a.query, "query", "", "server-side SLS filter (SPL), e.g. \"* | where action = 'login'\"")
	fs.BoolVar(&a.logTime, "log-time", false, "also keep only logs whose own __time__ is inside the range")
	fs.BoolVar(&a.tag, "tag", false, "mark every event with replay=<job>: a HEC (and file json) indexed field, an RFC 5424 SD parameter in [sls@PEN]")
	fs.DurationVar(&a.progressEvery, "progress-interval", 5*time.Second, "how often progress is reported")
	fs.BoolVar(&a.progressJSON, "progress-json", false, "report progress as JSON lines even on a terminal")
	fs.IntVar(&a.parallel, "parallel", 4, "shards read at once (1..64)")
	fs.BoolVar(&a.fromSpool, "from-spool", false, "replay from the archive of --sink's spool (sinks[].spool.retain), by log time, not from SLS")
	fs.StringVar(&a.toSink, "to-sink", "", "with --from-spool: deliver to this sink of the config instead of --sink")
	// -h prints the usage on stderr's writer: dispatch hands stdout there
	// for help (parseFlags).
	if err := parseFlags(fs, args, replayUsage, stderr, stderr); err != nil {
		return nil, err
	}
	var missing []string
	required := []struct{ name, v string }{{"--config", a.config}, {"--source", source}, {"--from", a.fromArg}, {"--to", a.toArg}}
	if a.fromSpool {
		required[1] = struct{ name, v string }{"--sink", a.sink}
	}
	for _, f := range required {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, flagError("replay", stderr, "%s required", strings.Join(missing, ", "))
	}
	if fs.NArg() > 0 {
		return nil, flagError("replay", stderr, "unexpected argument %q", fs.Arg(0))
	}
	var err error
	switch {
	case a.toSink != "" && !a.fromSpool:
		return nil, fmt.Errorf("--to-sink needs --from-spool (a replay from SLS delivers to --sink)")
	case a.fromSpool && a.query != "":
		return nil, fmt.Errorf("--query filters on the SLS side: it does not apply to --from-spool")
	case !a.fromSpool || source != "":
		if a.project, a.logstore, err = parseSource(source); err != nil {
			return nil, err
		}
	}
	if a.fromSpool {
		a.logTime = true // the archive is replayed by the logs' own time
	}
	if a.from, err = parseReplayTime(a.fromArg, now); err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	if a.to, err = parseReplayTime(a.toArg, now); err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	switch {
	case a.to.After(now):
		return nil, fmt.Errorf("--to %s is in the future (now is %s): SLS has not received that data yet", a.to.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case !a.from.Before(a.to):
		return nil, fmt.Errorf("--from %s is not before --to %s: the range is empty or inverted", a.from.Format(time.RFC3339), a.to.Format(time.RFC3339))
	case a.rate < 0:
		return nil, fmt.Errorf("--rate %v: must not be negative", a.rate)
	case a.parallel < 1 || a.parallel > 64:
		return nil, fmt.Errorf("--parallel %d: want 1..64", a.parallel)
	case a.progressEvery <= 0:
		return nil, fmt.Errorf("--progress-interval %v: must be positive", a.progressEvery)
	}
	return a, nil
}

var slsName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,126}[a-z0-9]$|^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// parseSource reads PROJECT/LOGSTORE.
func parseSource(s string) (project, logstore string, err error) {
	project, logstore, ok := strings.Cut(s, "/")
	if !ok || project == "" || logstore == "" || strings.Contains(logstore, "/") ||
		!slsName.MatchString(project) || !slsName.MatchString(logstore) {
		return "", "", fmt.Errorf("--source %q: want PROJECT/LOGSTORE, e.g. my-project/audit-log", s)
	}
	return project, logstore, nil
}

// parseReplayTime reads an RFC 3339 time, "now", or a duration relative to
// now ("-24h", "-90m", "+0s"); the result is truncated to the second (SLS
// cursors by time have that resolution).
func parseReplayTime(s string, now time.Time) (time.Time, error) {
	var t time.Time
	switch {
	case s == "now":
		t = now
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a relative time such as -24h or -90m", s)
		}
		t = now.Add(d)
	default:
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (2026-12-01T00:00:00Z), a relative time (-24h) or now", s)
		}
	}
	return t.Truncate(time.Second).UTC(), nil
}

// jobID names a job after its source and a hash of the command's
// arguments as typed, so that the same command (relative times included)
// finds the same job again.
func (a *replayArgs) jobID() string {
	h := sha256.New()
	for _, s := range []string{a.project, a.logstore, a.fromArg, a.toArg, a.sink, a.query,
		strconv.FormatBool(a.logTime), strconv.FormatBool(a.tag)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if a.fromSpool {
		h.Write([]byte("from-spool\x00" + a.toSink))
		return archiveJobProject + "_" + a.sink + "_" + hex.EncodeToString(h.Sum(nil)[:4])
	}
	return a.project + "_" + a.logstore + "_" + hex.EncodeToString(h.Sum(nil)[:4])
}

// replayConfig derives the config the job runs with: its own data
// directory, drain-only (ingest is the replay's reader), the chosen sinks
// with the replay's rate and tag, no metrics listener (the live relay's).
func replayConfig(cfg *Config, a *replayArgs, job string) (*Config, error) {
	rc := *cfg
	rc.DataDir = a.dataDir
	if rc.DataDir == "" {
		rc.DataDir = filepath.Join(cfg.DataDir, "replay", job)
	}
	rc.DrainOnly = true
	rc.Metrics.Listen = ""
	rc.Sinks = nil
	for _, sc := range cfg.Sinks {
		if to := a.deliverTo(); to != "" && sc.Name != to {
			continue
		}
		if a.rate > 0 {
			sc.RateLimit = a.rate
		}
		if a.tag {
			tagSink(&sc, job)
		}
		sc.Spool = SinkSpoolConfig{} // a job's spool keeps no archive
		rc.Sinks = append(rc.Sinks, sc)
	}
	if len(rc.Sinks) == 0 {
		names := make([]string, len(cfg.Sinks))
		for i, sc := range cfg.Sinks {
			names[i] = sc.Name
		}
		flag := "--sink"
		if a.fromSpool && a.toSink != "" {
			flag = "--to-sink"
		}
		return nil, fmt.Errorf("%s %q: the config has no such sink (it has %s)", flag, a.deliverTo(), strings.Join(names, ", "))
	}
	return &rc, nil
}

// tagSink adds replay=<job> to the indexed fields of a hec or file sink,
// or to the structured data of a syslog sink (copies: the config's own
// maps are not touched).
func tagSink(sc *SinkConfig, job string) {
	with := func(m map[string]string) map[string]string {
		out := map[string]string{"replay": job}
		for k, v := range m {
			if k != "replay" {
				out[k] = v
			}
		}
		return out
	}
	switch {
	case sc.HEC != nil:
		h := *sc.HEC
		h.Fields = with(h.Fields)
		sc.HEC = &h
	case sc.File != nil:
		f := *sc.File
		f.Fields = with(f.Fields)
		sc.File = &f
	case sc.Syslog != nil:
		c := *sc.Syslog
		c.SDParams = with(c.SDParams)
		sc.Syslog = &c
	}
}

// replay runs one job to its end (or ctx's) and prints the summary line.
func replay(ctx context.Context, cfg *Config, a *replayArgs, stdout io.Writer, log *slog.Logger) error {
	started := time.Now()
	job := a.jobID()
	rc, err := replayConfig(cfg, a, job)
	if err != nil {
		return err
	}
	var src *replaySource
	var arch *archiveSource
	if a.fromSpool {
		if arch, err = newArchiveSource(cfg, a); err != nil {
			return err
		}
	} else {
		if src, err = newReplaySource(cfg, a); err != nil {
			return err
		}
		// Everything SLS can refuse (a bad source, credentials) is asked
		// before anything is written.
		if err := src.check(); err != nil {
			return err
		}
	}
	r, err := openRelay(rc, log)
	if err != nil {
		return err
	}
	defer r.Close()
	j, resuming, err := loadJob(r, a, job, log)
	if err != nil {
		return err
	}
	verb := "starting"
	if resuming {
		verb = "resuming"
	}
	what := a.project + "/" + a.logstore
	if arch != nil {
		what = "the archive of sink " + a.sink + " (log time)"
	}
	fmt.Fprintf(stdout, "replay: %s job %s: %s [%s, %s) into %s; data dir %s\n", verb, job, what,
		j.From.Format(time.RFC3339), j.To.Format(time.RFC3339), sinkNames(rc), rc.DataDir)

	rd := &replayRun{job: j, args: a, src: src, arch: arch, r: r, log: log, out: stdout}
	runErr := rd.run(ctx)
	sum, serr := rd.summary(time.Since(started), runErr != nil)
	if serr != nil && runErr == nil {
		runErr = serr
	}
	if runErr == nil && !sum.incomplete {
		j.Completed = time.Now()
		runErr = r.cps.PutReplayJob(j)
	}
	fmt.Fprintln(stdout, sum.String())
	switch {
	case runErr != nil:
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; run the same command again to resume")
		}
		return runErr
	case sum.missingTo.After(sum.missingFrom):
		return &exitError{fmt.Errorf("part of the range had aged out of the logstore's retention: %s", sum.missing()), 3}
	case len(sum.damaged) > 0:
		return &exitError{fmt.Errorf("part of the archive could not be replayed: %s", strings.Join(sum.damaged, "; ")), 3}
	}
	return nil
}

func sinkNames(c *Config) string {
	names := make([]string, len(c.Sinks))
	for i, s := range c.Sinks {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// loadJob finds the job in its data directory (resuming) or stores it. A
// job that had completed is started again: the same command asks for the
// range once more. (One killed after its last delivery but before it was
// marked complete resumes, finds nothing left to do, and completes.)
func loadJob(r *relay, a *replayArgs, id string, log *slog.Logger) (checkpoint.ReplayJob, bool, error) {
	j, ok, err := r.cps.ReplayJob(id)
	if err != nil {
		return j, false, err
	}
	if ok {
		if j.Completed.IsZero() {
			return j, true, nil
		}
		log.Info("the job had completed; starting it again", slog.String("job", id), slog.Time("completed", j.Completed))
		if err := r.cps.DeleteReplayJob(id); err != nil {
			return j, false, err
		}
	}
	j = checkpoint.ReplayJob{ID: id, Project: a.project, Logstore: a.logstore, From: a.from, To: a.to,
		Query: a.query, LogTime: a.logTime}
	if a.fromSpool {
		j.Project, j.Logstore = archiveJobProject, a.sink
	}
	return j, false, r.cps.PutReplayJob(j)
}

func spoolsEmpty(r *relay) bool {
	for _, sp := range r.spools {
		if sp.Stats().Depth > 0 {
			return false
		}
	}
	return true
}

// replaySummary is the job's last line.
type replaySummary struct {
	shards                 int
	events, delivered      int64
	deadLettered           int64
	skipped                int64 // outside the log-time range
	missingFrom, missingTo time.Time
	took                   time.Duration
	incomplete             bool
	unit                   string   // what the job reads: shards, or archived segments
	damaged                []string // parts of the archive that could not be read
}

func (s replaySummary) missing() string {
	if !s.missingTo.After(s.missingFrom) {
		return "none"
	}
	return fmt.Sprintf("[%s, %s)", s.missingFrom.Format(time.RFC3339), s.missingTo.Format(time.RFC3339))
}

func (s replaySummary) String() string {
	var b strings.Builder
	unit := s.unit
	if unit == "" {
		unit = "shards"
	}
	fmt.Fprintf(&b, "replay: %d %s, %d events, delivered %d, dead-lettered %d, missing %s (aged out), in %s",
		s.shards, unit, s.events, s.delivered, s.deadLettered, s.missing(), s.took.Round(time.Millisecond))
	if s.skipped > 0 {
		fmt.Fprintf(&b, "; %d outside the log-time range skipped", s.skipped)
	}
	if len(s.damaged) > 0 {
		fmt.Fprintf(&b, "; NOT REPLAYED: %s", strings.Join(s.damaged, "; "))
	}
	if s.incomplete {
		b.WriteString("; INCOMPLETE: run the same command again to resume")
	}
	return b.String()
}

// deadLettered counts the events in a sink's dead-letter queue (this job's
// own spool, so every entry is the job's).
func deadLettered(dir string) (int64, error) {
	var n int64
	for dl, err := range spool.ReadDeadLetters(dir) {
		if err != nil {
			return n, fmt.Errorf("read dead letters of %s: %w", dir, err)
		}
		if dl.Record != nil {
			n += int64(dl.Record.Count)
		}
	}
	return n, nil
}

// sortedShards returns m's keys in order.
func sortedShards[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
