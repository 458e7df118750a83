package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestResolveBuild: -ldflags values win; what they leave empty comes from
// the embedded build information (go install mod@version, a VCS checkout);
// what neither knows reads dev/unknown, never an empty string.
func TestResolveBuild(t *testing.T) {
	vcs := func(main string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "slsrelay", Version: main}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tc := range []struct {
		name         string
		v, c, d      string
		read         func() (*debug.BuildInfo, bool)
		wantV, wantC string
		wantD        string
	}{
		{"ldflags", "v1.2.3", "0123abc", "2026-12-07T00:00:00Z", vcs("v9.9.9", "vcs.revision", "fff"), "v1.2.3", "0123abc", "2026-12-07T00:00:00Z"},
		{"go install at a version", "", "", "", vcs("v1.4.0"), "v1.4.0", "unknown", "unknown"},
		{"checkout", "", "", "", vcs("(devel)", "vcs.revision", "abcdef", "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "false"), "dev", "abcdef", "2026-12-01T10:00:00Z"},
		{"dirty checkout", "", "", "", vcs("(devel)", "vcs.revision", "abcdef", "vcs.modified", "true"), "dev", "abcdef-dirty", "unknown"},
		{"ldflags version only", "v2.0.0", "", "", vcs("(devel)", "vcs.revision", "abcdef", "vcs.time", "2026-12-01T10:00:00Z"), "v2.0.0", "abcdef", "2026-12-01T10:00:00Z"},
		{"nothing", "", "", "", none, "dev", "unknown", "unknown"},
		{"ldflags commit in a dirty tree", "v2.0.0", "abc", "", vcs("(devel)", "vcs.revision", "abcdef", "vcs.modified", "true"), "v2.0.0", "abc", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, c, d := resolveBuild(tc.v, tc.c, tc.d, tc.read)
			if v != tc.wantV || c != tc.wantC || d != tc.wantD {
				t.Errorf("resolveBuild = %q, %q, %q; want %q, %q, %q", v, c, d, tc.wantV, tc.wantC, tc.wantD)
			}
		})
	}
}

// TestVersionLine: the running binary's line names all three values, none
// of them empty.
func TestVersionLine(t *testing.T) {
	v, c, d := buildVersion()
	if v == "" || c == "" || d == "" {
		t.Errorf("empty build value: version %q commit %q date %q", v, c, d)
	}
	line := versionLine()
	for _, want := range []string{"slsrelay " + v + " ", "commit " + c + ",", "built " + d + ","} {
		if !strings.Contains(line, want) {
			t.Errorf("version line %q lacks %q", line, want)
		}
	}
}
