package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version, commit and date are stamped at build time with
// -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234 -X main.date=2026-12-07T00:00:00Z".
// Left empty, buildVersion falls back to what the Go toolchain recorded
// (debug.ReadBuildInfo: the module version and the VCS revision and time).
var (
	version = ""
	commit  = ""
	date    = ""
)

// buildVersion returns the version, commit and build date, each "unknown"
// when neither -ldflags nor the build info tells it.
func buildVersion() (v, c, d string) {
	v, c, d = version, commit, date
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.time":
				if d == "" {
					d = s.Value
				}
			case "vcs.modified":
				if s.Value == "true" && c != "" && commit == "" {
					c += "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return v, c, d
}

// versionLine is what --version and the version command print.
func versionLine() string {
	v, c, d := buildVersion()
	return fmt.Sprintf("slsrelay %s (commit %s, built %s, %s %s/%s)", v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, versionLine())
	return nil
}
