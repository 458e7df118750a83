package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver/hectest"
)

// TestRelay_OrphanedSpoolRefusesStart: a sink renamed in the config leaves
// its spool behind with undelivered records. The relay refuses to start,
// naming the spool, its record count and how to drain it; drain_only with
// the old name delivers it all; then the new config starts.
func TestRelay_OrphanedSpoolRefusesStart(t *testing.T) {
	const logs = 400
	w := newWorld(t, 2, logs, 50, hectest.Options{})
	w.hec.SetFault(hectest.Fault{Down: true})
	old := w.config()
	old.Sinks[0].Name = "splunk-old"
	rr := startRelay(t, old, nil)
	waitFor(t, time.Minute, "every log spooled", func() bool {
		n := int64(0)
		for _, wk := range rr.r.ingest.Workers() {
			n += wk.Stats().Logs
		}
		return n >= logs
	})
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}

	renamed := w.config()
	renamed.Sinks[0].Name = "splunk"
	if err := renamed.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := openRelay(renamed, slog.New(slog.DiscardHandler))
	if err == nil {
		r.Close()
		t.Fatal("the relay started with the spool of a removed sink still holding records")
	}
	for _, want := range []string{`"splunk-old"`, "undelivered records", "drain_only"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	t.Log(err)

	w.hec.SetFault(hectest.Fault{})
	drain := w.config()
	drain.Sinks[0].Name = "splunk-old"
	drain.Sources, drain.DrainOnly = nil, true
	rd := startRelay(t, drain, nil)
	waitFor(t, time.Minute, "the old spool drained", func() bool { u, _, _ := received(w.hec); return u >= logs })
	waitFor(t, time.Minute, "the old spool empty", func() bool { return rd.r.spools[0].Stats().Depth == 0 })
	if err := rd.stop(); err != nil {
		t.Fatal(err)
	}
	startRelay(t, renamed, nil)
}
