// Command slsrelay ships logs from Alibaba Cloud Log Service (SLS) to a SIEM
// without losing any: SLS consumer group → durable on-disk spool → Splunk HEC.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: its name, a one-line summary and its entry point.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the relay from a config file", runRun},
		{"validate", "check a config file and print ok or every problem", runValidate},
		{"replay", "re-send a time range of a logstore from SLS to the sinks, resumable", runReplay},
		{"spool", "inspect spools, dump dead letters, requeue them (stat|dump|requeue)", runSpool},
		{"emulate", "serve a local SLS emulator (for tests and experiments)", runEmulate},
		{"demo", "run the relay end to end on an embedded emulator and HEC receiver", runDemo},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks an error whose message is a usage text (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signalContext()
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// signalContext is cancelled by the first SIGINT/SIGTERM; a second one exits
// at once, which the relay's invariants make safe.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "slsrelay: second signal, exiting now")
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "slsrelay %s: %v\n", c.name, err)
			var ec interface{ ExitCode() int }
			if errors.As(err, &ec) {
				return ec.ExitCode()
			}
			return 1
		}
	}
	fmt.Fprintf(stderr, "slsrelay: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: slsrelay <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}
