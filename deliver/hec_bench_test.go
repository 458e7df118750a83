package deliver_test

import (
	"context"
	"log/slog"
	"testing"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// BenchmarkHEC_SendRecord: one spool record as ingest writes it (a pull of
// 100 groups of 100 audit logs, ~10 MB raw) decoded and sent to an
// in-process receiver with the default options (gzip, 1 MiB requests,
// Concurrency 4 as the relay's config defaults to); what the delivery loop
// does per record.
func BenchmarkHEC_SendRecord(b *testing.B) {
	srv := hectest.NewServer(b, hectest.Options{Token: testToken, Consume: func([]hectest.Event) {}})
	h, err := deliver.NewHEC(deliver.HECOptions{URL: srv.URL(), Token: testToken, Concurrency: 4,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	g := slstest.NewGenerator(slstest.KindAudit, 1)
	p, err := g.Pull(100, 100)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		rec := &spool.Record{Seq: 1, Project: "p", Logstore: "l", Count: 10000, Payload: p}
		evs, err := deliver.Decode(rec)
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Send(context.Background(), &deliver.Batch{Seq: 1, Events: evs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(10000*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
