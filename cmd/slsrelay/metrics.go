package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"slsrelay/deliver"
)

// relayCollector reads every component's Stats at scrape time, so the
// components need no metrics code of their own.
type relayCollector struct{ r *relay }

var (
	mIngestPulls  = prometheus.NewDesc("slsrelay_ingest_pulls_total", "Non-empty SLS pulls spooled and checkpointed.", []string{"project", "logstore"}, nil)
	mIngestLogs   = prometheus.NewDesc("slsrelay_ingest_logs_total", "Logs spooled.", []string{"project", "logstore"}, nil)
	mIngestBytes  = prometheus.NewDesc("slsrelay_ingest_bytes_total", "Raw (decoded protobuf) bytes spooled.", []string{"project", "logstore"}, nil)
	mIngestGaps   = prometheus.NewDesc("slsrelay_ingest_gaps_total", "Checkpoints found aged out of the logstore's retention (data lost in SLS before it was relayed).", []string{"project", "logstore"}, nil)
	mIngestCommit = prometheus.NewDesc("slsrelay_ingest_last_commit_timestamp_seconds", "When a checkpoint last moved.", []string{"project", "logstore"}, nil)
	mGapSeconds   = prometheus.NewDesc("slsrelay_gap_lost_seconds_total", "Length of the recorded gaps (time ranges lost in SLS), summed.", []string{"project", "logstore"}, nil)
	mSpoolRecords = prometheus.NewDesc("slsrelay_spool_records", "Undelivered records in the spool.", []string{"sink"}, nil)
	mSpoolBytes   = prometheus.NewDesc("slsrelay_spool_bytes", "Bytes of undelivered records on disk.", []string{"sink"}, nil)
	mSpoolBudget  = prometheus.NewDesc("slsrelay_spool_max_bytes", "The spool's byte budget.", []string{"sink"}, nil)
	mSpoolOldest  = prometheus.NewDesc("slsrelay_spool_oldest_age_seconds", "Age of the oldest undelivered record.", []string{"sink"}, nil)
	mSpoolDead    = prometheus.NewDesc("slsrelay_spool_dead_letters", "Entries in the dead-letter queue.", []string{"sink"}, nil)
	mSpoolCorrupt = prometheus.NewDesc("slsrelay_spool_corrupt_total", "Corrupt records found (each dead-lettered).", []string{"sink"}, nil)
	mSpoolSyncErr = prometheus.NewDesc("slsrelay_spool_sync_failing", "1 while the spool's fsync fails (ingest is then stopped).", []string{"sink"}, nil)
	mDelivered    = prometheus.NewDesc("slsrelay_delivered_events_total", "Events the SIEM confirmed.", []string{"sink"}, nil)
	mDeadLettered = prometheus.NewDesc("slsrelay_dead_lettered_events_total", "Events sent to the dead-letter queue, by reason.", []string{"sink", "reason"}, nil)
	mRetries      = prometheus.NewDesc("slsrelay_delivery_retries_total", "Re-sent requests (loop and transport).", []string{"sink"}, nil)
	mTruncated    = prometheus.NewDesc("slsrelay_sink_truncated_events_total", "Events cut to max_message_bytes (each marked in the message).", []string{"sink"}, nil)
	mOversizeDL   = prometheus.NewDesc("slsrelay_sink_oversize_dead_lettered_events_total", "Events over max_message_bytes dead-lettered whole (oversize: dead-letter).", []string{"sink"}, nil)
	mInvalidUTF8  = prometheus.NewDesc("slsrelay_sink_invalid_utf8_events_total", "Events whose invalid UTF-8 was replaced by U+FFFD.", []string{"sink"}, nil)
	mUnlisted     = prometheus.NewDesc("slsrelay_sink_unlisted_status_total", "SIEM answers with a 4xx HEC does not list (407, 411, 414, 415…), each pausing the sink.", []string{"sink"}, nil)
	mArchBytes    = prometheus.NewDesc("slsrelay_archive_bytes", "Bytes of delivered records kept in the sink's archive (spool.retain).", []string{"sink"}, nil)
	mArchOldest   = prometheus.NewDesc("slsrelay_archive_oldest_timestamp_seconds", "Receive time of the oldest archived record.", []string{"sink"}, nil)
	mArchEvicted  = prometheus.NewDesc("slsrelay_archive_evictions_total", "Archived segments evicted (retain, retain_bytes or the free-disk floor).", []string{"sink"}, nil)
	mPaused       = prometheus.NewDesc("slsrelay_sink_paused", "1 while the sink is paused on a configuration error (401/403, bad index).", []string{"sink"}, nil)
)

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	if r.ingest != nil {
		for _, w := range r.ingest.Workers() {
			s := w.Stats()
			counter(mIngestPulls, float64(s.Pulls), s.Project, s.Logstore)
			counter(mIngestLogs, float64(s.Logs), s.Project, s.Logstore)
			counter(mIngestBytes, float64(s.Bytes), s.Project, s.Logstore)
			counter(mIngestGaps, float64(s.Gaps), s.Project, s.Logstore)
			if !s.LastCommit.IsZero() {
				gauge(mIngestCommit, float64(s.LastCommit.UnixNano())/1e9, s.Project, s.Logstore)
			}
		}
	}
	if gaps, err := r.cps.Gaps(); err == nil {
		lost := map[[2]string]float64{}
		for _, g := range gaps {
			if !g.From.IsZero() && g.To.After(g.From) {
				lost[[2]string{g.Key.Project, g.Key.Logstore}] += g.To.Sub(g.From).Seconds()
			}
		}
		for k, v := range lost {
			counter(mGapSeconds, v, k[0], k[1])
		}
	}
	for i, sp := range r.spools {
		name := r.sinks[i].Name()
		s := sp.Stats()
		gauge(mSpoolRecords, float64(s.Depth), name)
		gauge(mSpoolBytes, float64(s.Bytes), name)
		gauge(mSpoolBudget, float64(r.spoolBudget), name)
		gauge(mSpoolOldest, s.OldestAge.Seconds(), name)
		gauge(mSpoolDead, float64(s.DeadLetters), name)
		counter(mSpoolCorrupt, float64(s.Corrupt), name)
		gauge(mSpoolSyncErr, b2f(s.SyncError != nil), name)
		if a := s.Archive; a.Segments > 0 || a.Evictions > 0 {
			gauge(mArchBytes, float64(a.Bytes), name)
			if !a.Oldest.IsZero() {
				gauge(mArchOldest, float64(a.Oldest.UnixNano())/1e9, name)
			}
			counter(mArchEvicted, float64(a.Evictions), name)
		}
		l := r.loops[i].Stats()
		counter(mDelivered, float64(l.DeliveredEvents), name)
		for reason, n := range l.DeadLettered {
			counter(mDeadLettered, float64(n), name, reason)
		}
		counter(mRetries, float64(l.Retries+l.TransportRetries), name)
		gauge(mPaused, b2f(l.Paused), name)
		if cr, ok := r.sinks[i].(deliver.CounterReporter); ok {
			c := cr.Counters()
			counter(mTruncated, float64(c.Truncated), name)
			counter(mOversizeDL, float64(c.OversizeDeadLettered), name)
			counter(mInvalidUTF8, float64(c.InvalidUTF8), name)
			counter(mUnlisted, float64(c.UnlistedStatus), name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics serves /metrics (Prometheus) and /healthz on addr until ctx
// ends. A listen failure is fatal: an operator who asked for metrics wants
// to know.
func (r *relay) serveMetrics(ctx context.Context, addr string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(relayCollector{r}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	r.log.Info("metrics listening", slog.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
