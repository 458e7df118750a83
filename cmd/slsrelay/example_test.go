package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"slsrelay/deliver"
	"slsrelay/ingest"
	"slsrelay/spool"
)

// codeDefaults is what the relay uses for each field left out of the
// config, taken from the code (the constants and defaulting functions the
// relay runs). The SLS SDK's own defaults (consumer_client.go of
// aliyun-log-go-sdk) are stated as the SDK states them.
func codeDefaults() map[string]any {
	var empty Config
	empty.Sources = []Source{{}}
	empty.Sinks = []SinkConfig{{Type: "hec"}}
	empty.applyDefaults()
	src, sink := empty.Sources[0], empty.Sinks[0]
	sdkHeartbeat := 20 * time.Second
	return map[string]any{
		"log.level":                        empty.Log.Level,
		"log.format":                       empty.Log.Format,
		"shutdown_timeout":                 time.Duration(empty.ShutdownTimeout),
		"drain_only":                       empty.DrainOnly,
		"sls.auth_version":                 empty.SLS.AuthVersion,
		"sls.connect_to":                   empty.SLS.ConnectTo,
		"sls.timeout":                      ingest.NewHTTPClient(ingest.HTTPOptions{}).Timeout,
		"sources[0].consumer_group":        src.ConsumerGroup,
		"sources[0].start":                 src.Start,
		"sources[0].query":                 src.Query,
		"sources[0].heartbeat_interval":    sdkHeartbeat,
		"sources[0].heartbeat_timeout":     3 * sdkHeartbeat,
		"sources[0].fetch_interval":        ingest.DefaultFetchInterval,
		"sources[0].idle_fetch_interval":   ingest.DefaultIdleFetchInterval,
		"sources[0].max_fetch_log_groups":  1000,
		"sources[0].compression":           src.Compression,
		"sources[0].checkpoint_interval":   time.Duration(src.CheckpointInterval),
		"spool.max_bytes":                  size(spool.DefaultMaxBytes),
		"spool.min_free_bytes":             size(spool.DefaultMinFreeBytes),
		"spool.segment_bytes":              size(spool.DefaultSegmentBytes),
		"spool.compression":                spool.DefaultCompression,
		"spool.dead_letter_max_bytes":      size(spool.DefaultDeadLetterMaxBytes),
		"spool.dead_letter_min_free_bytes": size(spool.DefaultMinFreeBytes), // = min_free_bytes
		"spool.interleave_after":           time.Duration(empty.Spool.InterleaveAfter),
		"sinks[0].rate_limit":              sink.RateLimit,
		"sinks[0].batch_records":           deliver.DefaultBatchRecords,
		"sinks[0].retry.min_backoff":       deliver.DefaultRetryMin,
		"sinks[0].retry.max_backoff":       deliver.DefaultRetryMax,
		"sinks[0].hec.sourcetype":          "",
		"sinks[0].hec.source":              deliver.DefaultHECSource,
		"sinks[0].hec.host":                deliver.DefaultHECHost,
		"sinks[0].hec.gzip":                true,
		"sinks[0].hec.max_request_bytes":   size(deliver.DefaultHECMaxRequestBytes),
		"sinks[0].hec.timeout":             deliver.DefaultHECTimeout,
		"sinks[0].hec.concurrency":         defaultHECConcurrency,
		"sinks[0].hec.ack.enabled":         false,
		"sinks[0].hec.ack.channel":         "",
		"sinks[0].hec.ack.poll_interval":   deliver.DefaultHECAckPollInterval,
		"sinks[0].hec.ack.timeout":         deliver.DefaultHECAckTimeout,
		"health.pull_stale_after":          time.Duration(empty.Health.PullStaleAfter),
		"health.sink_stale_after":          time.Duration(empty.Health.SinkStaleAfter),
		"health.stall_after":               time.Duration(empty.Health.StallAfter),
		"health.spool_full_ratio":          empty.Health.SpoolFullRatio,
	}
}

type size int64

// TestExampleConfig_Defaults loads testdata/relay.example.yaml and checks
// every value it marks "# default" against the code's default for that
// field, and that every default the code has is stated there.
func TestExampleConfig_Defaults(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/relay.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	claimed := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], path)
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				v := n.Content[i+1]
				if v.Kind == yaml.ScalarNode && strings.HasPrefix(strings.TrimSpace(v.LineComment), "# default") {
					claimed[p] = v
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(&doc, "")
	defaults := codeDefaults()
	for path, n := range claimed {
		want, ok := defaults[path]
		if !ok {
			t.Errorf("%s (line %d) is marked default, but the test knows no code default for it: add it to codeDefaults", path, n.Line)
			continue
		}
		if err := sameValue(n.Value, want); err != nil {
			t.Errorf("%s (line %d): the example says %q is the default, the code uses %v: %v", path, n.Line, n.Value, want, err)
		}
	}
	for path := range defaults {
		if claimed[path] == nil {
			t.Errorf("%s: the example does not state its default (a value marked # default)", path)
		}
	}
	// The example itself is a valid config.
	env := map[string]string{"SLS_ACCESS_KEY_ID": "id", "SLS_ACCESS_KEY_SECRET": "s", "HEC_TOKEN": "t"}
	if _, err := ParseConfig(strings.NewReader(string(raw)), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Errorf("the example does not validate: %v", err)
	}
}

// The quick example for the emulator validates without any environment.
func TestExampleConfig_Emulator(t *testing.T) {
	c, err := LoadConfig("../../testdata/relay.emulator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) > 0 || c.Sinks[0].Type != "syslog" {
		t.Errorf("warnings %q, sink %q", c.Warnings, c.Sinks[0].Type)
	}
}

// sameValue compares the example's text with a code default of its type.
func sameValue(text string, want any) error {
	var got any
	var err error
	switch w := want.(type) {
	case time.Duration:
		got, err = time.ParseDuration(text)
	case size:
		var n int64
		n, err = parseByteSize(text)
		got = size(n)
	case bool:
		got, err = strconv.ParseBool(text)
	case int:
		got, err = strconv.Atoi(text)
	case float64:
		got, err = strconv.ParseFloat(text, 64)
	case string:
		got = text
	default:
		return fmt.Errorf("unsupported default type %T", w)
	}
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("differs")
	}
	return nil
}
