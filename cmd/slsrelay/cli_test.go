package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command-line conventions: help on stdout with exit 0 however it is
// asked for, printed once; version with commit and date; a mistake is one
// line on stderr and exit 2; shell completion is there.
func TestCLI_Conventions(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, tc := range []struct {
		args []string
		once string // appears exactly once on stdout
	}{
		{[]string{"--help"}, "Available Commands:"},
		{[]string{"-h"}, "Available Commands:"},
		{[]string{"help"}, "Available Commands:"},
		{[]string{"help", "run"}, "usage: slsrelay run --config relay.yaml"},
		{[]string{"run", "--help"}, "usage: slsrelay run --config relay.yaml"},
		{[]string{"run", "-h"}, "usage: slsrelay run --config relay.yaml"},
		{[]string{"help", "validate"}, "usage: slsrelay validate"},
		{[]string{"validate", "--help"}, "usage: slsrelay validate"},
		{[]string{"status", "--help"}, "usage: slsrelay status"},
		{[]string{"help", "spool"}, "usage: slsrelay spool"},
		{[]string{"spool", "dump", "--help"}, "usage: slsrelay spool"},
		{[]string{"emulate", "--help"}, "usage: slsrelay emulate"},
		{[]string{"demo", "--help"}, "usage: slsrelay demo"},
		{[]string{"replay", "--help"}, "usage: slsrelay replay"},
		{[]string{"help", "replay"}, "usage: slsrelay replay"},
	} {
		code, out, errs := run(tc.args...)
		if code != 0 || strings.Count(out, tc.once) != 1 || errs != "" {
			t.Errorf("%v: exit %d, %d× %q on stdout, stderr %q; want 0, once, nothing\n%s", tc.args, code, strings.Count(out, tc.once), tc.once, errs, out)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, _ := run(args...)
		if code != 0 || !strings.HasPrefix(out, "slsrelay ") || !strings.Contains(out, "commit ") || !strings.Contains(out, "built ") || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d %q; want one line with version, commit and build date", args, code, out)
		}
	}
	for _, args := range [][]string{{"frobnicate"}, {"--frobnicate"}, {"run", "--frobnicate"}, {"validate"}, {"replay", "--config", "x"},
		{"status", "--addr", "x", "-o", "xml"}, {"run", "--log-level"}} {
		code, out, errs := run(args...)
		if code != 2 || out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "slsrelay") {
			t.Errorf("%v: exit %d stdout %q stderr %q; want 2 and one line on stderr", args, code, out, errs)
		}
	}
	if code, out, _ := run(); code != 2 || out != "" {
		t.Errorf("no command: exit %d stdout %q; want 2 and the help on stderr", code, out)
	}
	if code, out, _ := run("completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: exit %d", code)
	}
}

// Shell completion offers command names and each command's own flags.
func TestCLI_Completion(t *testing.T) {
	complete := func(args ...string) string {
		var out, errb bytes.Buffer
		dispatch(context.Background(), append([]string{"__complete"}, args...), &out, &errb)
		return out.String()
	}
	if out := complete("sta"); !strings.Contains(out, "status\t") {
		t.Errorf("commands: %q", out)
	}
	out := complete("spool", "stat", "-")
	for _, want := range []string{"--config\n", "--data-dir\n", "-o\n", "--log-level"} {
		if !strings.Contains(out, want) {
			t.Errorf("spool flags: %q lacks %q", out, want)
		}
	}
	if out := complete("run", "--c"); !strings.Contains(out, "--config\n") || strings.Contains(out, "--data-dir") {
		t.Errorf("run --c: %q", out)
	}
}

// validate prints each warning (a bare $NAME) before "ok".
func TestCLI_ValidateWarnings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	raw := "data_dir: /tmp/x\ndrain_only: true\nsinks:\n  - type: hec\n    hec: {url: \"https://splunk:8088\", token: \"$HEC_TOKEN\", index: \"$INDEX\"}\n"
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), []string{"validate", "--config", path}, &out, &errb)
	want := "warning: sinks[0].hec.token (line 5): a bare $NAME is used literally; write ${NAME} to take the value from the environment\n" +
		"warning: sinks[0].hec.index (line 5): $INDEX is used literally; write ${NAME} to take the value from the environment\nok\n"
	if code != 0 || out.String() != want {
		t.Errorf("exit %d\n%s\nwant\n%s", code, out.String(), want)
	}
}

// spool stat, spool dump and status read a config whose secrets are not
// in the environment (an operator's shell, not the service's).
func TestCLI_InspectWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	raw := "data_dir: " + dir + "\nsls:\n  endpoint: e.example\n  access_key_id: id\n  access_key_secret: ${SLSRELAY_TEST_UNSET_SECRET}\n" +
		"sources: [{project: p, logstore: l}]\nsinks:\n  - name: a\n    type: hec\n    hec: {url: \"https://splunk:8088\", token: \"${SLSRELAY_TEST_UNSET_TOKEN}\"}\n" +
		"metrics: {listen: \"127.0.0.1:1\"}\n"
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), args, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("validate", "--config", path); code != 1 || !strings.Contains(out, "SLSRELAY_TEST_UNSET_SECRET is referenced but not set") {
		t.Errorf("validate still needs them: %d %s", code, out)
	}
	if code, out := run("spool", "stat", "--config", path, "-o", "json"); code != 0 || !strings.Contains(out, `"sink": "a"`) {
		t.Errorf("spool stat: %d %s", code, out)
	}
	// Nothing listens on port 1: "not reachable" (3), not a config error.
	if code, out := run("status", "--config", path); code != statusExitUnknown || !strings.Contains(out, "not reachable") {
		t.Errorf("status: %d %s", code, out)
	}
}
