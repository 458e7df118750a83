package main

import (
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/deliver/hectest"
)

// TestRelay_StartEndAndQuery: with start: end, logs written before the relay
// started are skipped; with a query, only matching logs are delivered, and
// the filtered-out ones still move the checkpoint.
func TestRelay_StartEndAndQuery(t *testing.T) {
	const shards = 2
	w := newWorld(t, shards, 0, 0, hectest.Options{})
	old := writeLogs(t, w.sls, shards, 10, 100, 41)
	cfg := w.config()
	cfg.Sources[0].Start = "end"
	cfg.Sources[0].Query = "* | where result = 'failure'"
	rr := startRelay(t, cfg, nil)
	worker := rr.r.ingest.Workers()[0]
	// A shard's consumer fetches the end cursor once it is assigned; SLS
	// assigns shards over a few heartbeats, and nothing observable marks
	// the moment the cursor is fetched, hence the short grace period.
	waitFor(t, 30*time.Second, "every shard assigned", func() bool {
		return len(w.sls.Assignments(testProject, testLogstore, DefaultConsumerGroup)) == shards
	})
	time.Sleep(2 * time.Second)
	fresh := writeLogs(t, w.sls, shards, 20, 100, 42)
	want := 0
	for _, l := range fresh.logs {
		if logField(l, "result") == "failure" {
			want++
		}
	}
	if want == 0 {
		t.Fatal("the generator made no failures: the test proves nothing")
	}
	waitFor(t, time.Minute, "the matching fresh logs", func() bool { u, _, _ := received(w.hec); return u >= want })
	waitFor(t, 10*time.Second, "every fresh pull checkpointed", func() bool { return worker.Stats().Logs >= int64(want) })
	if err := rr.stop(); err != nil {
		t.Fatal(err)
	}
	// The filtered-out logs moved the checkpoint too: every shard's group
	// checkpoint is its end, nothing left to re-read.
	c := sls.CreateNormalInterface(w.sls.Endpoint(), testAKID, testAKSecret, "").(*sls.Client)
	c.SetHTTPClient(w.sls.HTTPClient())
	cps := w.sls.Checkpoints(testProject, testLogstore, DefaultConsumerGroup)
	for shard := range shards {
		end, err := c.GetCursor(testProject, testLogstore, shard, "end")
		if err != nil {
			t.Fatal(err)
		}
		if cps[shard] != end {
			t.Errorf("shard %d: group checkpoint %q, want its end %q (filtered-out logs must move it)", shard, cps[shard], end)
		}
	}
	u, d, byID := received(w.hec)
	if u != want || d != 0 {
		t.Errorf("delivered %d (+%d dups), want exactly the %d failures", u, d, want)
	}
	for id := range byID {
		if _, ok := old.logs[id]; ok {
			t.Fatalf("log %s written before the start with start: end was delivered", id)
		}
		if l := fresh.logs[id]; l == nil || logField(l, "result") != "failure" {
			t.Fatalf("log %s does not match the query", id)
		}
	}
}
