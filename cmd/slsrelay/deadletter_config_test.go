package main

import (
	"log/slog"
	"os"
	"strings"
	"testing"
)

// The dead-letter budget and floor of the config reach the spool; the
// example config documents them; a negative value is refused.
func TestConfig_DeadLetterBudget(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/relay.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLS_ACCESS_KEY_ID": "LTAIexample", "SLS_ACCESS_KEY_SECRET": "s3cret", "HEC_TOKEN": "00000000-0000-0000-0000-000000000000"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	y := strings.Replace(string(raw), "dead_letter_max_bytes: 1GiB", "dead_letter_max_bytes: 64MiB", 1)
	y = strings.Replace(y, "dead_letter_min_free_bytes: 1GiB", "dead_letter_min_free_bytes: 2GiB", 1)
	c, err := ParseConfig(strings.NewReader(y), lookup)
	if err != nil {
		t.Fatal(err)
	}
	o := spoolOptions(c, slog.New(slog.DiscardHandler))
	if o.DeadLetterMaxBytes != 64<<20 || o.DeadLetterMinFreeBytes != 2<<30 {
		t.Fatalf("spool options: dead-letter budget %d, floor %d", o.DeadLetterMaxBytes, o.DeadLetterMinFreeBytes)
	}
	y = strings.Replace(string(raw), "dead_letter_max_bytes: 1GiB", "dead_letter_max_bytes: -1", 1)
	if _, err := ParseConfig(strings.NewReader(y), lookup); err == nil {
		t.Fatalf("negative budget: %v", err)
	}
}
