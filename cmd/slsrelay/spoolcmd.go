package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"slsrelay/deliver"
	"slsrelay/spool"
)

const spoolUsage = `usage: slsrelay spool <stat|dump|requeue> (--config relay.yaml | --data-dir DIR) [flags]

  stat      every sink's spool: records waiting, bytes, budget, oldest, dead letters
            (reads the files; works while the relay runs, as a snapshot)
            [--sink NAME] [-o table|json]
  dump      the dead-letter queue of one sink as JSON lines, oldest first
            [--sink NAME] [--events] [--limit N] [-o jsonl|json]
  requeue   put dead-lettered records back into the spool, to be delivered again
            once the cause is fixed; the relay must be stopped
            [--sink NAME] [--reason TEXT] [--timeout 30s]

--config works without the config's secrets set.`

func runSpool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		args = append([]string{"stat"}, args...)
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return flagError("spool", stderr, "a subcommand is required: stat, dump or requeue")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "stat", "dump", "requeue":
	default:
		return flagError("spool", stderr, "unknown subcommand %q: want stat, dump or requeue", sub)
	}
	fs := flag.NewFlagSet("spool "+sub, flag.ContinueOnError)
	path := fs.String("config", "", "the relay's YAML config file")
	dataDir := fs.String("data-dir", "", "the relay's data directory (instead of --config)")
	sink := fs.String("sink", "", "sink name (default: the only sink)")
	events := fs.Bool("events", false, "dump: include each dead-lettered record's events")
	limit := fs.Int("limit", 0, "dump: at most this many entries (0: all)")
	reason := fs.String("reason", "", "requeue: only dead letters whose reason contains this text")
	timeout := fs.Duration("timeout", 30*time.Second, "requeue: give up waiting for room in a full spool after this")
	output := fs.String("o", "table", "stat: table or json; dump: jsonl (one JSON object a line) or json (one array)")
	fs.StringVar(output, "output", "table", "same as -o")
	if err := parseFlags(fs, args, spoolUsage, stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return flagError("spool "+sub, stderr, "unexpected argument %q", fs.Arg(0))
	case (*path == "") == (*dataDir == ""):
		return flagError("spool "+sub, stderr, "give either --config or --data-dir")
	}
	format, err := spoolFormat(sub, *output)
	if err != nil {
		return flagError("spool "+sub, stderr, "%v", err)
	}
	t, err := spoolTarget(*path, *dataDir)
	if err != nil {
		return err
	}
	switch sub {
	case "stat":
		if format == "json" {
			return t.statJSON(stdout, *sink)
		}
		return t.stat(stdout, *sink)
	case "dump":
		dir, err := t.dir(*sink)
		if err != nil {
			return err
		}
		return dumpDeadLetters(stdout, dir, *events, *limit, format == "json")
	case "requeue":
		dir, err := t.dir(*sink)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return t.requeue(rctx, stdout, dir, *reason)
	}
	return nil
}

// spoolFormat checks -o for sub: stat prints a table (default) or json,
// dump JSON lines (jsonl, default) or one json array.
func spoolFormat(sub, o string) (string, error) {
	switch {
	case sub == "stat" && (o == "table" || o == "json"):
		return o, nil
	case sub == "dump" && (o == "table" || o == "jsonl"):
		return "jsonl", nil
	case sub == "dump" && o == "json":
		return o, nil
	case sub == "requeue" && o == "table":
		return o, nil
	}
	return "", fmt.Errorf("-o %q is not an output of spool %s (stat: table, json; dump: jsonl, json)", o, sub)
}

// spoolStatJSON is one sink's spool in spool stat -o json.
type spoolStatJSON struct {
	Sink          string  `json:"sink"`
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	BudgetBytes   int64   `json:"budget_bytes"`
	OldestSeconds float64 `json:"oldest_seconds"`
	DeadLetters   int64   `json:"dead_letters"`
	// DeadLettersDamaged are damaged entries kept in the dead-letter file.
	DeadLettersDamaged int64 `json:"dead_letters_damaged"`
	// The archive of delivered records (sinks[].spool.retain), if any.
	ArchivedBytes    int64  `json:"archived_bytes"`
	ArchivedSegments int64  `json:"archived_segments"`
	ArchivedEvents   int64  `json:"archived_events"`
	ArchiveOldest    string `json:"archive_oldest,omitempty"`
	ArchiveNewest    string `json:"archive_newest,omitempty"`
	Dir              string `json:"dir"`
	Created          bool   `json:"created"`
}

func (t *spoolSet) statJSON(w io.Writer, only string) error {
	out := []spoolStatJSON{}
	budget := int64(spool.DefaultMaxBytes)
	if t.cfg != nil && t.cfg.Spool.MaxBytes > 0 {
		budget = int64(t.cfg.Spool.MaxBytes)
	}
	var errs []error
	for _, name := range t.sinks {
		if only != "" && name != only {
			continue
		}
		dir := filepath.Join(t.root, name)
		e := spoolStatJSON{Sink: name, BudgetBytes: budget, Dir: dir}
		st, err := spool.Inspect(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("sink %s: %w", name, err))
			continue
		default:
			e.Created, e.Records, e.Bytes, e.DeadLetters = true, st.Depth, st.Bytes, st.DeadLetters
			e.DeadLettersDamaged = st.DeadLetterDamaged
			a := st.Archive
			e.ArchivedBytes, e.ArchivedSegments, e.ArchivedEvents = a.Bytes, a.Segments, a.Events
			e.ArchiveOldest, e.ArchiveNewest = rfc3339(a.Oldest), rfc3339(a.Newest)
			e.OldestSeconds = st.OldestAge.Seconds()
		}
		out = append(out, e)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// spoolSet is the sinks' spools of one data directory.
type spoolSet struct {
	cfg   *Config // nil with --data-dir
	root  string  // data_dir/spool
	sinks []string
}

func spoolTarget(path, dataDir string) (*spoolSet, error) {
	t := &spoolSet{}
	if path != "" {
		cfg, err := LoadConfigForInspection(path)
		if err != nil {
			return nil, err
		}
		if cfg.DataDir == "" {
			return nil, fmt.Errorf("%s: data_dir is not set", path)
		}
		t.cfg, dataDir = cfg, cfg.DataDir
		for _, sc := range cfg.Sinks {
			t.sinks = append(t.sinks, sc.Name)
		}
	}
	t.root = filepath.Join(dataDir, "spool")
	if t.cfg == nil {
		ents, err := os.ReadDir(t.root)
		if err != nil {
			return nil, fmt.Errorf("no spools in %s: %w", dataDir, err)
		}
		for _, e := range ents {
			if e.IsDir() {
				t.sinks = append(t.sinks, e.Name())
			}
		}
	}
	return t, nil
}

// dir is the spool directory of the named sink, or of the only one.
func (t *spoolSet) dir(name string) (string, error) {
	if name == "" {
		if len(t.sinks) != 1 {
			return "", fmt.Errorf("--sink is required: there are %d sinks (%s)", len(t.sinks), strings.Join(t.sinks, ", "))
		}
		name = t.sinks[0]
	}
	if !slices.Contains(t.sinks, name) {
		return "", fmt.Errorf("no sink named %q (sinks: %s)", name, strings.Join(t.sinks, ", "))
	}
	return filepath.Join(t.root, name), nil
}

func (t *spoolSet) stat(w io.Writer, only string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tRECORDS\tBYTES\tBUDGET\tOLDEST\tDEAD-LETTERS\tARCHIVED\tARCHIVE-SEGMENTS\tARCHIVE-OLDEST\tARCHIVE-NEWEST\tDIR")
	var errs []error
	for _, name := range t.sinks {
		if only != "" && name != only {
			continue
		}
		dir := filepath.Join(t.root, name)
		st, err := spool.Inspect(dir)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(tw, "%s\t0\t0B\t%s\t-\t0\t-\t-\t-\t-\t%s (not created yet)\n", name, t.budget(), dir)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", name, err))
			continue
		}
		oldest := "-"
		if st.OldestAge > 0 {
			oldest = st.OldestAge.Round(time.Second).String()
		}
		dead := strconv.FormatInt(st.DeadLetters, 10)
		if st.DeadLetterDamaged > 0 { // kept in the file, shown by dump as corrupt entries
			dead += fmt.Sprintf(" (+%d damaged)", st.DeadLetterDamaged)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", name, st.Depth, humanBytes(st.Bytes), t.budget(), oldest, dead,
			archiveColumns(st.Archive), dir)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func (t *spoolSet) budget() string {
	if t.cfg == nil {
		return "-"
	}
	b := t.cfg.Spool.MaxBytes
	if b == 0 {
		b = ByteSize(spool.DefaultMaxBytes)
	}
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return strconv.FormatInt(n, 10) + "B"
}

func (t *spoolSet) requeue(ctx context.Context, w io.Writer, dir, reason string) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("spool %s: %w", dir, err)
	}
	opts := spool.Options{Logger: slog.New(slog.DiscardHandler)}
	if t.cfg != nil {
		opts = spoolOptions(t.cfg, opts.Logger)
	} else {
		opts.MaxBytes, opts.MinFreeBytes = spool.DefaultMaxBytes, 1
	}
	l, err := spool.OpenLanes(dir, opts, 0)
	if err != nil {
		return fmt.Errorf("%w (requeue needs the relay stopped)", err)
	}
	var match func(spool.DeadLetter) bool
	if reason != "" {
		match = func(d spool.DeadLetter) bool { return strings.Contains(d.Reason, reason) }
	}
	n, rerr := l.Requeue(ctx, match)
	st := l.Stats()
	if err := l.Close(); err != nil && rerr == nil {
		rerr = err
	}
	fmt.Fprintf(w, "requeued %d dead-lettered records into %s; %d records wait in the spool, %d entries left in the dead-letter queue\n",
		n, dir, st.Depth, st.DeadLetters)
	return rerr
}

// dumpDeadLetters writes one JSON object per dead letter.
func dumpDeadLetters(w io.Writer, dir string, events bool, limit int, array bool) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("spool %s: %w", dir, err)
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if array {
		// One JSON array: "[", the entries separated by commas, "]".
		bw.WriteString("[")
		defer bw.WriteString("]\n")
		first := true
		enc = json.NewEncoder(writerFunc(func(p []byte) (int, error) {
			if !first {
				bw.WriteString(",")
			}
			first = false
			_, err := bw.Write(bytes.TrimRight(p, "\n"))
			return len(p), err
		}))
		enc.SetEscapeHTML(false)
	}
	n := 0
	for d, err := range spool.ReadDeadLetters(dir) {
		if err != nil {
			return fmt.Errorf("dead letters of %s, after %d entries: %w", dir, n, err)
		}
		if limit > 0 && n >= limit {
			break
		}
		n++
		e := dumpEntry{Stored: d.Stored.UTC().Format(time.RFC3339Nano), Reason: d.Reason}
		if r := d.Record; r != nil {
			e.Kind = "record"
			e.Project, e.Logstore, e.Shard = r.Project, r.Logstore, &r.Shard
			e.Cursor, e.NextCursor, e.Count = r.Cursor, r.NextCursor, r.Count
			e.MinTime, e.MaxTime = r.MinTime, r.MaxTime
			if !r.ReceivedAt.IsZero() {
				e.ReceivedAt = r.ReceivedAt.UTC().Format(time.RFC3339Nano)
			}
			if events {
				evs, err := deliver.Decode(r)
				if err != nil {
					e.DecodeError = err.Error()
				}
				for _, ev := range evs {
					e.Events = append(e.Events, dumpEvent(ev))
				}
			}
		} else {
			e.Kind = "corrupt"
			e.Segment, e.Offset, e.RawBytes = d.Segment, &d.Offset, d.RawBytes
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type dumpEntry struct {
	Stored      string            `json:"stored"`
	Kind        string            `json:"kind"` // record | corrupt
	Reason      string            `json:"reason"`
	Project     string            `json:"project,omitempty"`
	Logstore    string            `json:"logstore,omitempty"`
	Shard       *int              `json:"shard,omitempty"`
	Cursor      string            `json:"cursor,omitempty"`
	NextCursor  string            `json:"next_cursor,omitempty"`
	Count       int               `json:"count,omitempty"`
	MinTime     int64             `json:"min_time,omitempty"`
	MaxTime     int64             `json:"max_time,omitempty"`
	ReceivedAt  string            `json:"received_at,omitempty"`
	Events      []json.RawMessage `json:"events,omitempty"`
	DecodeError string            `json:"decode_error,omitempty"`
	Segment     string            `json:"segment,omitempty"`
	Offset      *int64            `json:"offset,omitempty"`
	RawBytes    int64             `json:"raw_bytes,omitempty"`
}

// dumpEvent renders one event as {"time","topic","source","tags","fields"}
// with the fields in their order (a JSON object keeps it as written).
func dumpEvent(ev deliver.Event) json.RawMessage {
	b := []byte(`{"time":`)
	b = strconv.AppendQuote(b, ev.Time.UTC().Format(time.RFC3339Nano))
	str := func(b []byte, s string) []byte { v, _ := json.Marshal(s); return append(b, v...) }
	obj := func(b []byte, fs []deliver.Field) []byte {
		b = append(b, '{')
		for i, f := range fs {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, f.Key)
			b = append(b, ':')
			b = str(b, f.Value)
		}
		return append(b, '}')
	}
	if m := ev.Meta; m != nil {
		b = append(b, `,"topic":`...)
		b = str(b, m.Topic)
		b = append(b, `,"source":`...)
		b = str(b, m.Source)
		b = append(b, `,"tags":`...)
		b = obj(b, m.Tags)
	}
	b = append(b, `,"fields":`...)
	b = obj(b, ev.Fields)
	return append(b, '}')
}

// archiveColumns are spool stat's archive columns: bytes, segments, and
// the receive times of the oldest and newest archived records (spool
// retain; "-" when the sink keeps no archive).
func archiveColumns(a spool.ArchiveStats) string {
	if a.Segments == 0 {
		return "-\t-\t-\t-"
	}
	return fmt.Sprintf("%s\t%d\t%s\t%s", humanBytes(a.Bytes), a.Segments,
		a.Oldest.UTC().Format(time.RFC3339), a.Newest.UTC().Format(time.RFC3339))
}
