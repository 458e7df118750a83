package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

// TestParseConfig_Bad reads testdata/config/bad/<case>.yaml; the first line of
// each is "# want: <one expected problem line>".
func TestParseConfig_Bad(t *testing.T) {
	files, err := filepath.Glob("../../testdata/config/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs found: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(raw), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: ...'", f)
			}
			_, err = ParseConfig(strings.NewReader(string(raw)), noEnv)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got error %v (%T), want a *ConfigError", err, err)
			}
			found := false
			for _, p := range ce.Problems {
				found = found || p == want
			}
			if !found {
				t.Errorf("problems:\n  %s\nwant the line:\n  %s", strings.Join(ce.Problems, "\n  "), want)
			}
			for _, secret := range []string{"topsecret-value", "hec-secret-token"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error echoes a secret: %v", err)
				}
			}
		})
	}
}

func TestParseConfig_Example(t *testing.T) {
	f, err := os.Open("../../testdata/relay.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{"SLS_ACCESS_KEY_ID": "LTAIexample", "SLS_ACCESS_KEY_SECRET": "s3cret", "HEC_TOKEN": "00000000-0000-0000-0000-000000000000"}
	c, err := ParseConfig(f, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("the example config does not parse: %v", err)
	}
	if got, want := c.Spool.MaxBytes, ByteSize(8<<30); got != want {
		t.Errorf("spool.max_bytes = %v, want %v", got, want)
	}
	if got, want := time.Duration(c.Sources[0].FetchInterval), 100*time.Millisecond; got != want {
		t.Errorf("fetch_interval = %v, want %v", got, want)
	}
	if got := c.SLS.AccessKeySecret.Reveal(); got != "s3cret" {
		t.Errorf("secret = %q after ${ENV} expansion", got)
	}
	// Every documented field is in the example: a field added to Config
	// without documentation shows up as a zero here only by accident, so
	// check the reverse too: the example sets the sink's HEC block.
	if c.Sinks[0].HEC == nil || c.Sinks[0].HEC.URL == "" {
		t.Errorf("example sink has no hec block")
	}
}

func TestSecret_NeverPrints(t *testing.T) {
	s := Secret("hunter2")
	for name, got := range map[string]string{
		"%v": fmt.Sprintf("%v", s), "%s": fmt.Sprintf("%s", s), "%#v": fmt.Sprintf("%#v", s),
		"%+v struct": fmt.Sprintf("%+v", struct{ S Secret }{s}),
	} {
		if strings.Contains(got, "hunter2") {
			t.Errorf("%s prints the secret: %s", name, got)
		}
	}
	b, _ := json.Marshal(HECConfig{Token: s})
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("JSON prints the secret: %s", b)
	}
}

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true}, {"64MiB", 64 << 20, true}, {"8GiB", 8 << 30, true},
		{"1GB", 1e9, true}, {"512 KiB", 512 << 10, true}, {"-1", 0, false}, {"1.5GiB", 3 << 29, true},
		{"8Gi", 8 << 30, true}, {"8G", 8e9, true}, {"2.5MB", 2_500_000, true}, {"1.1B", 0, false}, {"0.3KiB", 0, false},
		{"0.5KiB", 512, true}, {"99999999999999999999GiB", 0, false}, {"lots", 0, false}, {"8Xi", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseByteSize(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseByteSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseConfig_ValidateReportsEveryProblem(t *testing.T) {
	_, err := ParseConfig(strings.NewReader("sinks:\n  - type: hec\n    hec: {}\n"), noEnv)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"data_dir: is required", "sources: at least one source", "sls.access_key_id: is required", "sinks[0].hec.url: is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/config/bad/*.yaml")
	files = append(files, "../../testdata/relay.example.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseConfig(bufio.NewReader(strings.NewReader(in)), noEnv)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

// Type and decode errors name the field path, every one of them is
// reported, and the semantic checks still run on the rest of the file
// (without repeating a field already reported).
func TestParseConfig_TypeErrorsWithPaths(t *testing.T) {
	raw := `data_dir: /tmp/x
shutdown_timeout: soon
sls:
  endpoint: e.example
  access_key_id: id
  access_key_secret: topsecret-value
sources:
  - project: p
    logstore: l
    max_fetch_log_groups: lots
    heartbeat_interval: 500ms
  - project: [a]
    logstore: l2
spool:
  max_bytes: 8Gi
  min_free_bytes: 1.5GiB
  segment_bytes: big
sinks:
  - type: hec
    rate_limit: fast
    hec:
      url: ftp://x
      token: hec-secret-token
      gzip: maybe
      concurrency: 99
      frob: 1
`
	_, err := ParseConfig(strings.NewReader(raw), noEnv)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		`shutdown_timeout: "soon" is not a duration (e.g. 500ms, 30s, 5m) (line 2)`,
		`sources[0].max_fetch_log_groups: "lots" is not an integer (line 10)`,
		`sources[1].project: must be a single value, not a list (line 12)`,
		`spool.segment_bytes: "big" is not a size (e.g. 1048576, 512KiB, 64MiB, 8GiB, 1.5GiB) (line 17)`,
		`sinks[0].rate_limit: "fast" is not a number (line 20)`,
		`sinks[0].hec.gzip: "maybe" is not true or false (line 24)`,
		`sinks[0].hec.frob: unknown field (line 26)`,
		// semantic checks on what decoded
		`sources[0].heartbeat_interval: 500ms is below the SLS minimum of 1s`,
		`sinks[0].hec.url: "ftp://x" is not an http:// or https:// URL`,
		`sinks[0].hec.concurrency: 99 is outside 0..64`,
	}
	if got := ce.Problems; !slices.Equal(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("a secret is echoed: %v", err)
	}
}

// ${NAME:-default} and ${NAME-default} take a default; a bare $NAME is
// kept as written with a warning naming the field (never quoting a secret).
func TestParseConfig_EnvDefaultsAndBareWarning(t *testing.T) {
	env := map[string]string{"EMPTY": "", "HOST": "splunk.example"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	raw := `data_dir: ${DATA:-/var/lib/slsrelay}
log: {level: "${LEVEL-warn}", format: "${EMPTY:-json}"}
sls:
  endpoint: e.example
  access_key_id: $AK_ID
  access_key_secret: pa$SECRETPART
sources: [{project: p, logstore: l}]
sinks:
  - type: hec
    hec: {url: "https://${HOST}:8088", token: "t", index: "${EMPTY-unused}"}
`
	c, err := ParseConfig(strings.NewReader(raw), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/slsrelay" || c.Log.Level != "warn" || c.Log.Format != "json" ||
		c.Sinks[0].HEC.URL != "https://splunk.example:8088" || c.Sinks[0].HEC.Index != "" || c.SLS.AccessKeyID != "$AK_ID" {
		t.Errorf("expanded: data_dir %q level %q format %q url %q index %q ak %q", c.DataDir, c.Log.Level, c.Log.Format,
			c.Sinks[0].HEC.URL, c.Sinks[0].HEC.Index, c.SLS.AccessKeyID)
	}
	want := []string{
		"sls.access_key_id (line 5): $AK_ID is used literally; write ${NAME} to take the value from the environment",
		"sls.access_key_secret (line 6): a bare $NAME is used literally; write ${NAME} to take the value from the environment",
	}
	if !slices.Equal(c.Warnings, want) {
		t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(c.Warnings, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestConfig_BatchRecords(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string // "" = accepted
	}{
		{"0", ""}, {"1", ""}, {"1024", ""},
		{"-1", "sinks[0].batch_records: must be 1..1024 (0: the default, 32)"},
		{"1025", "sinks[0].batch_records: must be 1..1024 (0: the default, 32)"},
	} {
		raw := "data_dir: /tmp/d\nsls: {endpoint: e.example, access_key_id: id, access_key_secret: s}\nsources: [{project: p, logstore: l}]\nsinks:\n  - type: file\n    batch_records: " + tc.v + "\n    file: {path: /tmp/x.jsonl}\n"
		cfg, err := ParseConfig(strings.NewReader(raw), noEnv)
		var ce *ConfigError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("batch_records %s: %v", tc.v, err)
		case tc.want == "" && cfg.Sinks[0].BatchRecords != mustAtoi(t, tc.v):
			t.Errorf("batch_records %s: got %d", tc.v, cfg.Sinks[0].BatchRecords)
		case tc.want != "" && (!errors.As(err, &ce) || !slices.Contains(ce.Problems, tc.want)):
			t.Errorf("batch_records %s: got %v, want %q", tc.v, err, tc.want)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
