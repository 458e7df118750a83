// Command slsrelay ships logs from Alibaba Cloud Log Service (SLS) to a SIEM
// without losing any: SLS consumer group → durable on-disk spool → Splunk HEC.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// command is one subcommand: its name, a one-line summary and its entry
// point, which parses its own flags (Go flag package: -name and --name)
// from args. Adding a subcommand is one line in commands(); dispatch
// turns each into a cobra command, so help, `help CMD`, `CMD --help`,
// errors and shell completion behave the same for all.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the relay from a config file", runRun},
		{"validate", "check a config file and print ok or every problem", runValidate},
		{"status", "ask a running relay how it is doing (exit 0 delivering, 1 degraded, 2 stalled)", runStatus},
		{"replay", "re-send a time range of a logstore from SLS to the sinks, resumable", runReplay},
		{"spool", "inspect spools, dump dead letters, requeue them (stat|dump|requeue)", runSpool},
		{"emulate", "serve a local SLS emulator (for tests and experiments)", runEmulate},
		{"demo", "run the relay end to end on an embedded emulator and HEC receiver", runDemo},
		{"version", "print the version, commit and build date", runVersion},
	}
}

// errUsage marks an error whose message is a usage text (exit status 2).
var errUsage = errors.New("usage")

// errHelp: the command printed its help as asked (exit status 0).
var errHelp = errors.New("help")

// globalFlags are the flags every command takes (before or after its name).
type globalFlags struct {
	logLevel, logFormat string
}

// cli holds the global flags of the invocation in progress.
var cli globalFlags

func main() {
	ctx, stop := signalContext()
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// lastSignal is the signal that cancelled the context of signalContext.
var lastSignal atomic.Value // os.Signal

// signalContext is cancelled by the first SIGINT/SIGTERM; a second one exits
// at once, which the relay's invariants make safe.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		lastSignal.Store(s)
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "slsrelay: second signal, exiting now (nothing is lost: undelivered data stays in the spool and SLS)")
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

const rootLong = `slsrelay ships security and audit logs from Alibaba Cloud Log Service (SLS)
to SIEMs (Splunk HEC, syslog) through a durable on-disk spool, and never
loses an event.

Start with: slsrelay validate --config relay.yaml, then slsrelay run --config relay.yaml.
While it runs: slsrelay status --config relay.yaml, or the status page on metrics.listen.`

// dispatch runs the command line args and returns the exit status: 0 done,
// 1 failed, 2 usage error (unknown command or flag, missing argument), or
// the command's own (status: 0/1/2/3).
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cli = globalFlags{}
	code := -1
	root := &cobra.Command{
		Use:           "slsrelay",
		Short:         "relay logs from Alibaba Cloud SLS to a SIEM without losing any",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       "-", // --version; the template prints versionLine
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: false,
		},
	}
	root.SetVersionTemplate(versionLine() + "\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.PersistentFlags().StringVar(&cli.logLevel, "log-level", "", "override log.level of the config: debug, info, warn, error")
	root.PersistentFlags().StringVar(&cli.logFormat, "log-format", "", "override log.format of the config: auto, text, json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q (see slsrelay --help)", args[0])}
		}
		return nil
	}
	root.RunE = func(c *cobra.Command, args []string) error {
		// No command: the help, on stderr, as a usage error.
		c.SetOut(stderr)
		_ = c.Help()
		return usageError{}
	}
	for _, cmd := range commands() {
		root.AddCommand(cobraCommand(ctx, cmd, stdout, stderr, &code))
	}
	err := root.ExecuteContext(ctx)
	var ue usageError
	switch {
	case err == nil && code >= 0:
		return code
	case err == nil:
		return 0
	case errors.As(err, &ue):
		if ue.err != nil {
			fmt.Fprintf(stderr, "slsrelay: %v\n", ue.err)
		}
		return 2
	case strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(stderr, "slsrelay: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "slsrelay: %v\n", err)
		return 1
	}
}

// usageError is a command-line mistake (exit status 2); err is printed as
// one line when set.
type usageError struct{ err error }

func (e usageError) Error() string {
	if e.err == nil {
		return "usage"
	}
	return e.err.Error()
}

// cobraCommand wraps c. Its flags are its own (parsed by c.run), so cobra
// passes the arguments through; global flags are taken out first, and a
// help flag runs c.run with -h so the command prints its own usage, on
// stdout, with exit status 0.
func cobraCommand(ctx context.Context, c command, stdout, stderr io.Writer, code *int) *cobra.Command {
	cc := &cobra.Command{
		Use:                c.name,
		Short:              c.summary,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			args, err := takeGlobalFlags(args)
			if err != nil {
				return usageError{err}
			}
			if wantsHelp(args) {
				printCommandHelp(ctx, c, stdout)
				*code = 0
				return nil
			}
			*code = runCommand(ctx, c, args, stdout, stderr)
			return nil
		},
	}
	cc.SetHelpFunc(func(*cobra.Command, []string) { printCommandHelp(ctx, c, stdout) })
	// Shell completion of the command's flags: its own flag set lists them
	// in its help.
	cc.ValidArgsFunction = func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if !strings.HasPrefix(toComplete, "-") {
			return nil, cobra.ShellCompDirectiveDefault // file names
		}
		var help strings.Builder
		_ = c.run(ctx, []string{"-h"}, &help, io.Discard)
		var out []cobra.Completion
		for _, l := range strings.Split(help.String(), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || !strings.HasPrefix(l, "  -") {
				continue
			}
			name := strings.TrimLeft(f[0], "-")
			if len(name) == 1 {
				name = "-" + name
			} else {
				name = "--" + name
			}
			if strings.HasPrefix(name, toComplete) {
				out = append(out, name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	return cc
}

// printCommandHelp prints c's summary and its usage (what c.run prints for
// -h) on w.
func printCommandHelp(ctx context.Context, c command, w io.Writer) {
	fmt.Fprintf(w, "slsrelay %s: %s\n\n", c.name, c.summary)
	_ = c.run(ctx, []string{"-h"}, w, w)
}

// runCommand runs c and maps its error to an exit status.
func runCommand(ctx context.Context, c command, args []string, stdout, stderr io.Writer) int {
	err := c.run(ctx, args, stdout, stderr)
	var ee *statusExit
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(stderr, "slsrelay %s: %s\n", c.name, ee.msg)
		}
		return ee.code
	default:
		fmt.Fprintf(stderr, "slsrelay %s: %v\n", c.name, err)
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		case "--":
			return false
		}
	}
	return false
}

// takeGlobalFlags removes --log-level and --log-format (with = or a
// separate value) from args into cli.
func takeGlobalFlags(args []string) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		for _, g := range []struct {
			name string
			dst  *string
		}{{"log-level", &cli.logLevel}, {"log-format", &cli.logFormat}} {
			for _, p := range []string{"-" + g.name, "--" + g.name} {
				if a == p {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("flag %s needs a value", p)
					}
					*g.dst = args[i+1]
					i++
					a = ""
				} else if v, ok := strings.CutPrefix(a, p+"="); ok {
					*g.dst = v
					a = ""
				}
			}
		}
		if a != "" {
			out = append(out, a)
		}
	}
	return out, nil
}

// parseFlags parses args into fs the same way for every command: -h or
// --help prints synopsis and the flags on stdout (errHelp, exit 0); a bad
// flag or argument is one line on stderr (errUsage, exit 2).
func parseFlags(fs *flag.FlagSet, args []string, synopsis string, stdout, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, strings.TrimRight(synopsis, "\n"))
		fmt.Fprintln(stdout, "\nflags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return flagError(fs.Name(), stderr, "%v", err)
	}
	return nil
}

// flagError prints one line about a command-line mistake and returns
// errUsage.
func flagError(cmd string, stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, "slsrelay %s: %s (see slsrelay %s --help)\n", cmd, fmt.Sprintf(format, args...), strings.Fields(cmd)[0])
	return errUsage
}
