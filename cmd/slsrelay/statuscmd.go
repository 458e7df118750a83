package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// statusExit ends the status command with an exit status of its own,
// after it printed what it had to say (msg, when set, goes to stderr).
type statusExit struct {
	code int
	msg  string // printed to stderr when not empty
}

func (e *statusExit) Error() string { return e.msg }

// Exit statuses of `slsrelay status`.
const (
	statusExitDelivering = 0
	statusExitDegraded   = 1
	statusExitStalled    = 2
	statusExitUnknown    = 3 // the relay could not be asked
)

const statusUsage = `usage: slsrelay status (--config relay.yaml | --addr host:port) [-o table|json]

Asks a running relay for its state (GET /status on metrics.listen) and prints
it; exit status 0 delivering, 1 degraded, 2 stalled, 3 relay not reachable.
Works without the config's secrets set.`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	path := fs.String("config", "", "the relay's YAML config file (its metrics.listen is asked)")
	addr := fs.String("addr", "", "host:port the relay serves /status on (instead of --config)")
	output := fs.String("o", "table", "output format: table or json")
	fs.StringVar(output, "output", "table", "same as -o")
	timeout := fs.Duration("timeout", 5*time.Second, "give up asking after this long")
	if err := parseFlags(fs, args, statusUsage, stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return flagError("status", stderr, "unexpected argument %q", fs.Arg(0))
	case (*path == "") == (*addr == ""):
		return flagError("status", stderr, "give either --config or --addr")
	case *output != "table" && *output != "json":
		return flagError("status", stderr, "-o %q: want table or json", *output)
	}
	if *path != "" {
		cfg, err := LoadConfigForInspection(*path)
		if err != nil {
			return &statusExit{statusExitUnknown, err.Error()}
		}
		if cfg.Metrics.Listen == "" {
			return &statusExit{statusExitUnknown, *path + ": metrics.listen is not set, so the relay serves no status; set it or use --addr"}
		}
		*addr = cfg.Metrics.Listen
	}
	st, raw, err := fetchStatus(ctx, *addr, *timeout)
	if err != nil {
		return &statusExit{statusExitUnknown, err.Error()}
	}
	if *output == "json" {
		stdout.Write(raw)
	} else {
		printStatus(stdout, st, time.Now())
	}
	switch st.State {
	case StateDelivering:
		return nil
	case StateDegraded:
		return &statusExit{code: statusExitDegraded}
	case StateStalled:
		return &statusExit{code: statusExitStalled}
	}
	return &statusExit{statusExitUnknown, fmt.Sprintf("unknown state %q", st.State)}
}

func fetchStatus(ctx context.Context, addr string, timeout time.Duration) (*Status, []byte, error) {
	// A relay listening on every address is asked on loopback.
	host := addr
	if h, p, err := net.SplitHostPort(addr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		host = net.JoinHostPort("127.0.0.1", p)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/status", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("relay at %s not reachable: %w", host, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read status from %s: %w", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s/status answered %s", host, resp.Status)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, nil, fmt.Errorf("%s/status is not a relay status: %w", host, err)
	}
	return &st, raw, nil
}

// printStatus writes st as a few tables for a terminal.
func printStatus(w io.Writer, st *Status, now time.Time) {
	sinceAt := func(ts string) string {
		if ts == "" {
			return "never"
		}
		t, err := time.Parse(time.RFC3339, ts)
		if err != nil {
			return ts
		}
		return ago(now.Sub(t)) + " ago"
	}
	fmt.Fprintf(w, "slsrelay %s: %s\n", st.Version, strings.ToUpper(st.State))
	for _, r := range st.Reasons {
		fmt.Fprintf(w, "  - %s\n", r)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSINK\tSTATE\tSINCE\tOLDEST\tSPOOL\tDEAD\tDELIVERED\tLAST SUCCESS\tREASON")
	for _, s := range st.Sinks {
		since := "-"
		if s.Since != "" {
			since = sinceAt(s.Since)
		}
		oldest := "-"
		if s.OldestUndeliveredSecond > 0 {
			oldest = ago(time.Duration(s.OldestUndeliveredSecond * float64(time.Second)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s (%.0f%%)\t%d\t%d\t%s\t%s\n", s.Name, s.State, since, oldest,
			humanBytes(s.SpoolBytes), humanBytes(s.SpoolMaxBytes), 100*s.SpoolUsed, s.DeadLetters, s.DeliveredEvents,
			sinceAt(s.LastSuccess), s.Reason)
	}
	tw.Flush()
	if len(st.Sources) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSOURCE\tSHARD\tHELD\tLAG\tBEHIND\tLAST PULL\tSTATE")
	for _, s := range st.Sources {
		held := "no consumer"
		if s.Consumer {
			held = "consumer"
		}
		fmt.Fprintf(tw, "%s/%s\t*\t%s\t\t\t%s\t%s %s\n", s.Project, s.Logstore, held, sinceAt(s.LastPull), s.State, s.Reason)
		for _, sh := range s.Shards {
			fmt.Fprintf(tw, "\t%d\t%v\t%s\t%s\t%s\t\n", sh.Shard, sh.Held, lag(sh.LagSeconds), bytesOrUnknown(sh.BehindBytes), sinceAt(sh.LastPull))
		}
	}
	tw.Flush()
}
