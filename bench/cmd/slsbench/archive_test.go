package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSlsbench_Archive runs benchmark 9 alone on a workload large enough
// for 1MiB segments to roll (the smoke test's 4,000 logs fit in one): the
// report has the section and the summary the archive replay's rate. The
// tool itself fails a run whose replay pulled from SLS or did not deliver
// every archived event. It asserts no speed.
func TestSlsbench_Archive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary three times")
	}
	bin := relayBin(t)
	dir := t.TempDir()
	rep := filepath.Join(dir, "PERFORMANCE.md")
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := run(ctx, []string{"-relay", bin, "-runs", "1", "-events", "20000", "-seed", "3",
		"-work", filepath.Join(dir, "work"), "-only", "archive", "-report", rep}, &out, io.Discard)
	if err != nil {
		t.Fatalf("slsbench: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	summary := lines[len(lines)-1]
	if !strings.Contains(summary, "from archive ") || strings.Contains(summary, "from archive n/a") {
		t.Fatalf("summary %q lacks the archive replay rate", summary)
	}
	b, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## 9. Archive", "| live end to end, events/s |", "| archived: events |"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
