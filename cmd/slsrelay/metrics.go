package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"slsrelay/deliver"
	"slsrelay/ingest"
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
	mDLBytes      = prometheus.NewDesc("slsrelay_spool_dead_letter_bytes", "Size of the dead-letter queue, counted against spool.dead_letter_max_bytes.", []string{"sink"}, nil)
	mDLRefused    = prometheus.NewDesc("slsrelay_spool_dead_letter_refused_total", "Dead letters refused because the dead-letter queue was full (the record stayed in the spool).", []string{"sink"}, nil)
	mSpoolCorrupt = prometheus.NewDesc("slsrelay_spool_corrupt_total", "Corrupt records found (each dead-lettered).", []string{"sink"}, nil)
	mSpoolSyncErr = prometheus.NewDesc("slsrelay_spool_sync_failing", "1 while the spool's fsync fails (ingest is then stopped).", []string{"sink"}, nil)
	mDelivered    = prometheus.NewDesc("slsrelay_delivered_events_total", "Events the SIEM confirmed.", []string{"sink"}, nil)
	mDeadLettered = prometheus.NewDesc("slsrelay_dead_lettered_events_total", "Events sent to the dead-letter queue, by reason.", []string{"sink", "reason"}, nil)
	mRetries      = prometheus.NewDesc("slsrelay_delivery_retries_total", "Sends made again after a failure: the loop's re-sends of a record plus the sink's retried attempts (HEC HTTP requests, syslog reconnects and re-sends).", []string{"sink"}, nil)
	mTruncated    = prometheus.NewDesc("slsrelay_sink_truncated_events_total", "Events cut to max_message_bytes (each marked in the message).", []string{"sink"}, nil)
	mOversizeDL   = prometheus.NewDesc("slsrelay_sink_oversize_dead_lettered_events_total", "Events over max_message_bytes dead-lettered whole (oversize: dead-letter).", []string{"sink"}, nil)
	mInvalidUTF8  = prometheus.NewDesc("slsrelay_sink_invalid_utf8_events_total", "Events whose invalid UTF-8 was replaced by U+FFFD.", []string{"sink"}, nil)
	mUnlisted     = prometheus.NewDesc("slsrelay_sink_unlisted_status_total", "SIEM answers with a 4xx HEC does not list (407, 411, 414, 415…), each pausing the sink.", []string{"sink"}, nil)
	mArchBytes    = prometheus.NewDesc("slsrelay_archive_bytes", "Bytes of delivered records kept in the sink's archive (spool.retain).", []string{"sink"}, nil)
	mArchOldest   = prometheus.NewDesc("slsrelay_archive_oldest_timestamp_seconds", "Receive time of the oldest archived record.", []string{"sink"}, nil)
	mArchEvicted  = prometheus.NewDesc("slsrelay_archive_evictions_total", "Archived segments evicted (retain, retain_bytes or the free-disk floor).", []string{"sink"}, nil)
	mPaused       = prometheus.NewDesc("slsrelay_sink_paused", "1 while the sink is paused on a configuration error (401/403, bad index).", []string{"sink"}, nil)

	mBuildInfo    = prometheus.NewDesc("slsrelay_build_info", "Always 1; the labels tell the build.", []string{"version", "revision", "goversion"}, nil)
	mReady        = prometheus.NewDesc("slsrelay_ready", "1 while /readyz answers 200: every source pulls and every sink delivers (see health: in the config).", nil, nil)
	mState        = prometheus.NewDesc("slsrelay_state", "1 for the relay's current overall state (delivering, degraded, stalled), 0 for the others.", []string{"state"}, nil)
	mSinkState    = prometheus.NewDesc("slsrelay_sink_state", "1 for the sink's current state (delivering, retrying, paused, stalled), 0 for the others.", []string{"sink", "state"}, nil)
	mSinkSuccess  = prometheus.NewDesc("slsrelay_sink_last_success_timestamp_seconds", "When the SIEM last confirmed a send (Unix time); the relay's start time until the first one.", []string{"sink"}, nil)
	mDeliveryErrs = prometheus.NewDesc("slsrelay_delivery_errors_total", "Failed sends by class (transient, permanent, config; docs/CONFIG.md), the sink's own retried attempts included.", []string{"sink", "class"}, nil)
	mSpoolUsed    = prometheus.NewDesc("slsrelay_spool_used_ratio", "Spool bytes over its budget (0..1; ingest waits at 1).", []string{"sink"}, nil)
	mSpoolEvents  = prometheus.NewDesc("slsrelay_spool_events", "Undelivered events (logs) in the spool's records.", []string{"sink"}, nil)
	mIngestLag    = prometheus.NewDesc("slsrelay_ingest_lag_seconds", "How far behind the shard's newest data the relay is (0 at the end of the shard); absent while unknown.", []string{"project", "logstore", "shard"}, nil)
	mIngestBehind = prometheus.NewDesc("slsrelay_ingest_behind_bytes", "Unread bytes of the shard, where SLS tells it.", []string{"project", "logstore", "shard"}, nil)
	mIngestErrors = prometheus.NewDesc("slsrelay_ingest_errors_total", "Errors talking to SLS by class (unreachable, auth, throttled, server, cursor_expired, other).", []string{"source", "class"}, nil)
	mIngestPull   = prometheus.NewDesc("slsrelay_ingest_last_pull_timestamp_seconds", "When a pull last succeeded (empty or not), Unix time; absent before the first.", []string{"project", "logstore"}, nil)
	mIngestHeld   = prometheus.NewDesc("slsrelay_ingest_consumer_held", "1 while the source's last heartbeat to its consumer group succeeded.", []string{"project", "logstore"}, nil)
	mIngestShards = prometheus.NewDesc("slsrelay_ingest_shards_held", "Shards the consumer group assigned to this relay.", []string{"project", "logstore"}, nil)
)

// sinkStates are the values of slsrelay_sink_state's state label.
var sinkStates = []string{deliver.StateDelivering, deliver.StateRetrying, deliver.StatePaused, StateStalled}

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

// allDescs lists every metric the collector may export.
var allDescs = []*prometheus.Desc{mIngestPulls, mIngestLogs, mIngestBytes, mIngestGaps, mIngestCommit, mGapSeconds,
	mSpoolRecords, mSpoolBytes, mSpoolBudget, mSpoolOldest, mSpoolDead, mDLBytes, mDLRefused, mSpoolCorrupt, mSpoolSyncErr, mDelivered,
	mDeadLettered, mRetries, mTruncated, mOversizeDL, mInvalidUTF8, mUnlisted, mPaused, mBuildInfo, mReady, mState, mSinkState, mSinkSuccess, mDeliveryErrs,
	mSpoolUsed, mSpoolEvents, mArchBytes, mArchOldest, mArchEvicted, mIngestLag, mIngestBehind, mIngestErrors, mIngestPull, mIngestHeld, mIngestShards}

// describeAll sends every Desc of allDescs.
func (relayCollector) describeAll(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	v, c2, _ := buildVersion()
	gauge(mBuildInfo, 1, v, c2, runtime.Version())
	st := r.status(time.Now())
	gauge(mReady, b2f(st.Ready))
	for _, s := range []string{StateDelivering, StateDegraded, StateStalled} {
		gauge(mState, b2f(st.State == s), s)
	}
	if r.ingest != nil {
		for _, w := range r.ingest.Workers() {
			s := w.Stats()
			src := s.Project + "/" + s.Logstore
			for _, class := range ingest.ErrorClasses {
				counter(mIngestErrors, float64(s.Errors[class]), src, class)
			}
			if !s.LastPull.IsZero() {
				gauge(mIngestPull, float64(s.LastPull.UnixNano())/1e9, s.Project, s.Logstore)
			}
			gauge(mIngestHeld, b2f(s.Consumer), s.Project, s.Logstore)
			held := 0
			for _, sh := range s.Shards {
				shard := strconv.Itoa(sh.Shard)
				if sh.Held {
					held++
				}
				if sh.LagSeconds >= 0 {
					gauge(mIngestLag, sh.LagSeconds, s.Project, s.Logstore, shard)
				}
				if sh.BehindBytes >= 0 {
					gauge(mIngestBehind, float64(sh.BehindBytes), s.Project, s.Logstore, shard)
				}
			}
			gauge(mIngestShards, float64(held), s.Project, s.Logstore)
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
		if !r.cfg.DrainOnly {
			for _, src := range r.cfg.Sources {
				lost[[2]string{src.Project, src.Logstore}] = 0 // known labels start at 0
			}
		}
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
		gauge(mDLBytes, float64(s.DeadLetterBytes), name)
		counter(mDLRefused, float64(s.DeadLetterRefused), name)
		gauge(mSpoolSyncErr, b2f(s.SyncError != nil), name)
		gauge(mSpoolEvents, float64(r.events[i].count()), name)
		if r.spoolBudget > 0 {
			gauge(mSpoolUsed, float64(s.Bytes)/float64(r.spoolBudget), name)
		}
		if a := s.Archive; a.Segments > 0 || a.Evictions > 0 {
			gauge(mArchBytes, float64(a.Bytes), name)
			if !a.Oldest.IsZero() {
				gauge(mArchOldest, float64(a.Oldest.UnixNano())/1e9, name)
			}
			counter(mArchEvicted, float64(a.Evictions), name)
		}
		l := r.loops[i].Stats()
		for _, class := range deliver.ErrorClasses {
			counter(mDeliveryErrs, float64(l.Errors[class]), name, class)
		}
		last := l.LastSuccess
		if last.IsZero() {
			last = r.started
		}
		gauge(mSinkSuccess, float64(last.UnixNano())/1e9, name)
		for _, state := range sinkStates {
			gauge(mSinkState, b2f(st.Sinks[i].State == state), name, state)
		}
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

// handler serves /metrics (Prometheus), /healthz, /readyz, /status and the
// status page at /.
func (r *relay) handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(relayCollector{r}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	r.healthHandlers(mux)
	return mux
}

// serveMetrics serves handler on addr until ctx ends. A listen failure is
// fatal: an operator who asked for metrics wants to know.
func (r *relay) serveMetrics(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: r.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	r.log.Info("metrics and status listening", slog.String("addr", ln.Addr().String()),
		slog.String("status_page", "http://"+ln.Addr().String()+"/"))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
