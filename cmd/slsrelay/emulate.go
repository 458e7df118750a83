package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"slsrelay/ingest/slstest"
)

const emulateUsage = `usage: slsrelay emulate [flags]

Serves a local SLS emulator (package ingest/slstest) until SIGINT/SIGTERM.
Point an SLS SDK at the printed endpoint; requests for "{project}.{endpoint}"
must reach the printed address (the relay's sls.connect_to setting, or a
custom dialer).

--seed takes audit, web or odd (generated logs, --seed-count of them) or the
path of a JSON-lines file: one log per line, an object whose values become
the log's fields (strings as they are, other JSON values as their JSON
text); an optional "__time__" number sets the log time (unix seconds).
Seeded logs are spread round robin over the shards, --seed-per-group a group.

flags:
`

// emulateFlags are the emulate subcommand's settings.
type emulateFlags struct {
	listen, project, logstore string
	shards                    int
	ttl                       time.Duration
	akID, akSecret            string
	seed                      string
	seedCount, perGroup       int
}

func parseEmulateFlags(args []string, stdout, stderr io.Writer) (emulateFlags, error) {
	var f emulateFlags
	fs := flag.NewFlagSet("emulate", flag.ContinueOnError)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	fs.StringVar(&f.project, "project", slstest.DefaultProject, "project name")
	fs.StringVar(&f.logstore, "logstore", slstest.DefaultLogstore, "logstore name; several separated by commas")
	fs.IntVar(&f.shards, "shards", slstest.DefaultShards, "readwrite shards per logstore")
	fs.DurationVar(&f.ttl, "ttl", 0, "retention by receive time, e.g. 72h (0 keeps data for ever)")
	fs.StringVar(&f.akID, "access-key-id", slstest.DefaultAKID, "AccessKey id accepted")
	fs.StringVar(&f.akSecret, "access-key-secret", slstest.DefaultAKSecret, "AccessKey secret accepted (never printed)")
	fs.StringVar(&f.seed, "seed", "", "preload logs: audit, web, odd, or a JSON-lines file")
	fs.IntVar(&f.seedCount, "seed-count", 10000, "logs to generate with --seed audit|web|odd")
	fs.IntVar(&f.perGroup, "seed-per-group", 100, "logs per seeded log group")
	if err := parseFlags(fs, args, strings.TrimSuffix(strings.TrimRight(emulateUsage, "\n"), "flags:"), stdout, stderr); err != nil {
		return f, err
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if f.shards < 1 || f.shards > 256 {
		problems = append(problems, fmt.Sprintf("--shards %d: must be within 1..256", f.shards))
	}
	if f.ttl < 0 {
		problems = append(problems, "--ttl: must not be negative")
	}
	if f.seedCount < 0 || f.perGroup < 1 {
		problems = append(problems, "--seed-count must be >= 0 and --seed-per-group >= 1")
	}
	if f.akID == "" || f.akSecret == "" || f.project == "" || f.logstore == "" {
		problems = append(problems, "--project, --logstore, --access-key-id and --access-key-secret must not be empty")
	}
	if len(problems) > 0 {
		return f, flagError("emulate", stderr, "%s", strings.Join(problems, "; "))
	}
	return f, nil
}

// runEmulate serves the emulator until ctx is cancelled.
func runEmulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseEmulateFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	names := strings.Split(f.logstore, ",")
	var stores []slstest.LogstoreOptions
	for _, n := range names {
		stores = append(stores, slstest.LogstoreOptions{Name: strings.TrimSpace(n), Shards: f.shards, TTL: f.ttl})
	}
	srv, err := slstest.New(slstest.Options{
		Listen:     f.listen,
		Project:    f.project,
		Logstores:  stores,
		AccessKeys: map[string]string{f.akID: f.akSecret},
		Logger:     slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	seeded := 0
	for _, st := range stores {
		n, err := seedEmulator(srv, f, st.Name)
		if err != nil {
			return err
		}
		seeded += n
	}
	fmt.Fprintf(stdout, "slstest listening on %s endpoint=%s project=%s logstores=%s shards=%d ttl=%s access-key-id=%s seeded=%d\n",
		srv.Addr(), srv.Endpoint(), f.project, strings.Join(names, ","), f.shards, f.ttl, f.akID, seeded)
	<-ctx.Done()
	return srv.Close()
}

// seedEmulator preloads one logstore as --seed says; it returns the logs added.
func seedEmulator(srv *slstest.Server, f emulateFlags, logstore string) (int, error) {
	switch k := slstest.Kind(f.seed); k {
	case "":
		return 0, nil
	case slstest.KindAudit, slstest.KindWeb, slstest.KindOdd:
		ids, err := slstest.Seed(srv, f.project, logstore, k, f.seedCount, f.perGroup, 1)
		return len(ids), err
	}
	file, err := os.Open(f.seed)
	if err != nil {
		return 0, fmt.Errorf("--seed: %w", err)
	}
	defer file.Close()
	return seedJSONLines(srv, f.project, logstore, file, f.perGroup)
}

// seedJSONLines appends one log per JSON-object line of r.
func seedJSONLines(srv *slstest.Server, project, logstore string, r io.Reader, perGroup int) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lg := &sls.LogGroup{Topic: proto.String("seed"), Source: proto.String("slsrelay-emulate")}
	total, line := 0, 0
	flush := func() error {
		if len(lg.Logs) == 0 {
			return nil
		}
		err := srv.Append(project, logstore, -1, lg)
		lg.Logs = nil
		return err
	}
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		l, err := jsonLog(text)
		if err != nil {
			return total, fmt.Errorf("--seed line %d: %w", line, err)
		}
		lg.Logs = append(lg.Logs, l)
		total++
		if len(lg.Logs) >= perGroup {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return total, fmt.Errorf("--seed: %w", err)
	}
	return total, flush()
}

func jsonLog(text string) (*sls.Log, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	now := time.Now()
	l := &sls.Log{Time: proto.Uint32(uint32(now.Unix())), TimeNs: proto.Uint32(uint32(now.Nanosecond()))}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := obj[k]
		if k == "__time__" {
			var t float64
			if err := json.Unmarshal(v, &t); err != nil || t < 0 {
				return nil, fmt.Errorf("__time__ must be a unix time in seconds")
			}
			l.Time, l.TimeNs = proto.Uint32(uint32(t)), proto.Uint32(uint32((t-float64(uint32(t)))*1e9))
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			s = string(v)
		}
		l.Contents = append(l.Contents, &sls.LogContent{Key: proto.String(k), Value: proto.String(s)})
	}
	return l, nil
}
