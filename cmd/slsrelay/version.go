package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// The build's identity. make build, make release and the Dockerfile stamp
// them with
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=<git sha> -X main.date=<RFC 3339 UTC>"
//
// A build without them (go build, go install slsrelay/cmd/slsrelay@v1.2.3)
// gets them from the module and VCS information the Go toolchain embeds
// (debug.ReadBuildInfo): the module version, vcs.revision and vcs.time. What
// neither knows reads "dev" / "unknown". Read them through buildVersion.
var (
	version = ""
	commit  = ""
	date    = ""
)

// buildVersion returns the version, commit and build date: the -ldflags
// values, else the embedded build information, else dev/unknown.
func buildVersion() (v, c, d string) {
	return resolveBuild(version, commit, date, debug.ReadBuildInfo)
}

// resolveBuild fills what -ldflags left empty from the embedded build
// information, then from fixed placeholders.
func resolveBuild(v, c, d string, read func() (*debug.BuildInfo, bool)) (string, string, string) {
	if v != "" && c != "" && d != "" {
		return v, c, d
	}
	var modified bool
	stamped := c != "" // a commit from -ldflags is taken as it is
	if bi, ok := read(); ok && bi != nil {
		// "(devel)" is what a build inside the module's own tree reports
		// when the toolchain could not derive a version from VCS.
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
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	} else if modified && !stamped && !strings.HasSuffix(c, "-dirty") {
		c += "-dirty"
	}
	if d == "" {
		d = "unknown"
	}
	return v, c, d
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// versionLine is what `slsrelay version` prints:
//
//	slsrelay v1.2.3 (commit 0123abc, built 2026-12-07T04:00:00Z, go1.26.8 linux/amd64)
func versionLine() string {
	v, c, d := buildVersion()
	return fmt.Sprintf("slsrelay %s (commit %s, built %s, %s %s/%s)", v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
