package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// runValidate prints "ok" (after a "warning: " line for each warning), or
// one line per problem naming the field path, and fails in the second case.
func runValidate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	path := fs.String("config", "", "path to the YAML config file (required)")
	if err := parseFlags(fs, args, "usage: slsrelay validate --config relay.yaml", stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return flagError("validate", stderr, "unexpected argument %q", fs.Arg(0))
	case *path == "":
		return flagError("validate", stderr, "--config is required")
	}
	cfg, err := LoadConfig(*path)
	var ce *ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintln(stdout, p)
		}
		return fmt.Errorf("%s: %d problem(s)", *path, len(ce.Problems))
	}
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
