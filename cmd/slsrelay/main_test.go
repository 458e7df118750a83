package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.yaml")
	raw, err := os.ReadFile("../../testdata/relay.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLS_ACCESS_KEY_ID", "id")
	t.Setenv("SLS_ACCESS_KEY_SECRET", "secret")
	t.Setenv("HEC_TOKEN", "token")
	if err := os.WriteFile(good, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"no command", nil, 2, ""},
		{"unknown command", []string{"frobnicate"}, 2, ""},
		{"version", []string{"version"}, 0, "slsrelay "},
		{"validate ok", []string{"validate", "--config", good}, 0, "ok\n"},
		{"validate bad", []string{"validate", "--config", "../../testdata/config/bad/bad-url.yaml"}, 1, `sinks[0].hec.url: "ftp://x" is not an http:// or https:// URL`},
		{"validate missing file", []string{"validate", "--config", "/nonexistent.yaml"}, 1, ""},
		{"validate without flag", []string{"validate"}, 2, ""},
		{"run without flag", []string{"run"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(context.Background(), tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out.String(), tc.wantOut)
			}
		})
	}
}
