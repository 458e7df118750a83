package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"slsrelay/deliver"
	"slsrelay/ingest"
	"slsrelay/spool"
)

// Overall states of the relay and the extra sink state, as /status, the
// status page, `slsrelay status` and the slsrelay_sink_state metric say
// them. A sink is otherwise deliver.StateDelivering, StateRetrying or
// StatePaused.
const (
	StateDelivering = "delivering" // every source pulls, every sink delivers
	StateDegraded   = "degraded"   // something needs attention; data is safe
	StateStalled    = "stalled"    // data stopped moving for health.stall_after, or fsync fails
)

// Status is the relay's state as /status serves it (JSON). Times are
// RFC 3339 (empty: never), durations and ages seconds.
type Status struct {
	State   string         `json:"state"`   // delivering, degraded, stalled
	Reasons []string       `json:"reasons"` // why not delivering, one line each
	Ready   bool           `json:"ready"`   // what /readyz answers
	Live    bool           `json:"live"`    // what /healthz answers
	Version string         `json:"version"`
	Commit  string         `json:"commit"`
	Started string         `json:"started"`
	Now     string         `json:"now"`
	Config  string         `json:"config,omitempty"`
	Sources []SourceStatus `json:"sources"`
	Sinks   []SinkStatus   `json:"sinks"`
}

// SourceStatus is one logstore's consumer.
type SourceStatus struct {
	Project        string           `json:"project"`
	Logstore       string           `json:"logstore"`
	State          string           `json:"state"` // delivering, degraded, stalled
	Reason         string           `json:"reason,omitempty"`
	Consumer       bool             `json:"consumer"` // holds a place in its consumer group
	LastHeartbeat  string           `json:"last_heartbeat"`
	LastPull       string           `json:"last_pull"`
	LastError      string           `json:"last_error,omitempty"`
	LastErrorClass string           `json:"last_error_class,omitempty"`
	LastErrorAt    string           `json:"last_error_at,omitempty"`
	Errors         map[string]int64 `json:"errors"`
	Logs           int64            `json:"logs"`
	Gaps           int64            `json:"gaps"`
	Shards         []ShardStatus    `json:"shards"`
}

// ShardStatus is one shard of a source.
type ShardStatus struct {
	Shard       int     `json:"shard"`
	Held        bool    `json:"held"`
	ReadOnly    bool    `json:"read_only,omitempty"`
	LagSeconds  float64 `json:"lag_seconds"`  // -1: unknown
	BehindBytes int64   `json:"behind_bytes"` // -1: unknown
	LastPull    string  `json:"last_pull"`
}

// SinkStatus is one SIEM destination with its spool.
type SinkStatus struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	State string `json:"state"` // delivering, retrying, paused, stalled
	// Reason and Since: why and since when the sink is not delivering.
	Reason                  string            `json:"reason,omitempty"`
	Since                   string            `json:"since,omitempty"`
	Ready                   bool              `json:"ready"`
	LastSuccess             string            `json:"last_success"`
	OldestUndeliveredSecond float64           `json:"oldest_undelivered_seconds"`
	SpoolRecords            int64             `json:"spool_records"`
	SpoolBytes              int64             `json:"spool_bytes"`
	SpoolMaxBytes           int64             `json:"spool_max_bytes"`
	SpoolUsed               float64           `json:"spool_used"` // bytes / budget, 0..1
	DeadLetters             int64             `json:"dead_letters"`
	DeadLetterBytes         int64             `json:"dead_letter_bytes"`
	DeadLetterRefused       int64             `json:"dead_letter_refused"` // refused since start: the queue was full
	DeliveredEvents         uint64            `json:"delivered_events"`
	Errors                  map[string]uint64 `json:"errors"`
	SyncError               string            `json:"sync_error,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// ago is a short human duration: "3s", "4m10s", "2h5m".
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// status evaluates the relay's health at now.
func (r *relay) status(now time.Time) Status {
	h := r.cfg.Health
	v, c, _ := buildVersion()
	st := Status{State: StateDelivering, Reasons: []string{}, Live: true, Version: v, Commit: c,
		Started: rfc3339(r.started), Now: rfc3339(now), Config: r.configPath,
		Sources: []SourceStatus{}, Sinks: []SinkStatus{}}
	worst := func(s string) {
		if s == StateStalled || (s == StateDegraded && st.State == StateDelivering) {
			st.State = s
		}
	}
	if r.ingest != nil {
		for _, w := range r.ingest.Workers() {
			ss := sourceStatus(w.Stats(), now, r.started, h)
			if ss.State != StateDelivering {
				worst(ss.State)
				st.Reasons = append(st.Reasons, fmt.Sprintf("source %s/%s: %s", ss.Project, ss.Logstore, ss.Reason))
			}
			st.Sources = append(st.Sources, ss)
		}
	}
	for i, sp := range r.spools {
		ls := r.loops[i].Stats()
		ks := r.sinkStatus(i, sp.Stats(), ls, now)
		if ks.SyncError != "" {
			st.Live = false
		}
		// A send that has neither come back nor reported a retry for
		// stall_after is stuck in a way only a restart clears.
		if ls.Sending && ls.State == deliver.StateDelivering && now.Sub(ls.SendingSince) > time.Duration(r.cfg.Health.StallAfter) {
			st.Live = false
			ks.State, ks.Ready = StateStalled, false
			ks.Reason = fmt.Sprintf("a send has been in flight for %s without an answer or a retry: the delivery loop is wedged (restart)", ago(now.Sub(ls.SendingSince)))
		}
		switch {
		case ks.State == StateStalled:
			worst(StateStalled)
		case !ks.Ready:
			worst(StateDegraded)
		}
		if !ks.Ready {
			st.Reasons = append(st.Reasons, fmt.Sprintf("sink %s: %s", ks.Name, ks.Reason))
		}
		st.Sinks = append(st.Sinks, ks)
	}
	st.Ready = st.State == StateDelivering
	return st
}

func sourceStatus(s ingest.WorkerStats, now, started time.Time, h HealthConfig) SourceStatus {
	// SDK errors arrive as indented JSON: one line reads better.
	s.LastError = strings.Join(strings.Fields(s.LastError), " ")
	ss := SourceStatus{Project: s.Project, Logstore: s.Logstore, State: StateDelivering, Consumer: s.Consumer,
		LastHeartbeat: rfc3339(s.LastHeartbeat), LastPull: rfc3339(s.LastPull),
		LastError: s.LastError, LastErrorClass: s.LastErrorClass, LastErrorAt: rfc3339(s.LastErrorAt),
		Errors: map[string]int64{}, Logs: s.Logs, Gaps: s.Gaps, Shards: []ShardStatus{}}
	for _, c := range ingest.ErrorClasses {
		ss.Errors[c] = s.Errors[c]
	}
	for _, sh := range s.Shards {
		ss.Shards = append(ss.Shards, ShardStatus{Shard: sh.Shard, Held: sh.Held, ReadOnly: sh.ReadOnly,
			LagSeconds: sh.LagSeconds, BehindBytes: sh.BehindBytes, LastPull: rfc3339(sh.LastPull)})
	}
	sort.Slice(ss.Shards, func(i, j int) bool { return ss.Shards[i].Shard < ss.Shards[j].Shard })
	// Since when the source has been without a successful pull. A moved
	// checkpoint is one too (a consumer that reports no pull times).
	if s.LastPull.IsZero() && !s.LastCommit.IsZero() {
		s.LastPull = s.LastCommit
		ss.LastPull = rfc3339(s.LastPull)
	}
	ref := s.LastPull
	if ref.IsZero() {
		ref = started
	}
	quiet := now.Sub(ref)
	var why []string
	// A consumer not held yet right after the start is normal until the
	// first heartbeat, given pull_stale_after.
	starting := s.LastHeartbeat.IsZero() && now.Sub(started) <= time.Duration(h.PullStaleAfter)
	if !s.Consumer && !starting {
		why = append(why, "holds no consumer in its group")
	}
	if quiet > time.Duration(h.PullStaleAfter) {
		if s.LastPull.IsZero() {
			why = append(why, fmt.Sprintf("no successful pull since the start %s ago", ago(quiet)))
		} else {
			why = append(why, fmt.Sprintf("no successful pull for %s", ago(quiet)))
		}
	}
	if len(why) == 0 {
		return ss
	}
	if s.LastError != "" {
		cls := s.LastErrorClass
		if cls == "" {
			cls = "error"
		}
		why = append(why, fmt.Sprintf("last error (%s, %s ago): %s", cls, ago(now.Sub(s.LastErrorAt)), s.LastError))
	}
	ss.State, ss.Reason = StateDegraded, strings.Join(why, "; ")
	if quiet > time.Duration(h.StallAfter) {
		ss.State = StateStalled
	}
	return ss
}

func (r *relay) sinkStatus(i int, sp spool.Stats, l deliver.LoopStats, now time.Time) SinkStatus {
	h := r.cfg.Health
	ks := SinkStatus{Name: r.sinks[i].Name(), Type: r.cfg.Sinks[i].Type, State: l.State, Ready: true,
		LastSuccess: rfc3339(l.LastSuccess), OldestUndeliveredSecond: sp.OldestAge.Seconds(),
		SpoolRecords: sp.Depth, SpoolBytes: sp.Bytes, SpoolMaxBytes: r.spoolBudget,
		DeadLetters: sp.DeadLetters, DeadLetterBytes: sp.DeadLetterBytes, DeadLetterRefused: sp.DeadLetterRefused, DeliveredEvents: l.DeliveredEvents, Errors: l.Errors}
	if r.spoolBudget > 0 {
		ks.SpoolUsed = float64(sp.Bytes) / float64(r.spoolBudget)
	}
	if l.State != deliver.StateDelivering {
		ks.Reason, ks.Since = l.StateReason, rfc3339(l.StateSince)
	}
	// Since when the sink has delivered nothing while records wait.
	ref := l.LastSuccess
	if ref.IsZero() || ref.Before(r.started) {
		ref = r.started
	}
	quiet := now.Sub(ref)
	backlog := sp.Depth > 0
	switch {
	case sp.SyncError != nil:
		ks.State, ks.Ready = StateStalled, false
		ks.SyncError = sp.SyncError.Error()
		ks.Reason = "spool fsync failing (ingest stopped; restart once the disk is fixed): " + ks.SyncError
		return ks
	case l.State == deliver.StatePaused:
		ks.Ready = false
		ks.Reason = fmt.Sprintf("paused for %s, the SIEM refuses the configuration: %s", ago(now.Sub(l.StateSince)), l.StateReason)
		if now.Sub(l.StateSince) > time.Duration(h.StallAfter) {
			ks.State = StateStalled
		}
	case backlog && quiet > time.Duration(h.SinkStaleAfter):
		ks.Ready = false
		what := "no delivery"
		if l.State == deliver.StateRetrying {
			what = "retrying, no delivery"
		}
		ks.Reason = fmt.Sprintf("%s for %s with %d records waiting", what, ago(quiet), sp.Depth)
		if l.StateReason != "" {
			ks.Reason += ": " + l.StateReason
		}
		if quiet > time.Duration(h.StallAfter) {
			ks.State = StateStalled
		}
	}
	if ks.State != deliver.StateDelivering && ks.Since == "" {
		ks.Since = rfc3339(ref)
	}
	if ks.SpoolUsed >= h.SpoolFullRatio {
		ks.Ready = false
		full := fmt.Sprintf("spool at %.0f%% of its %s budget", 100*ks.SpoolUsed, ByteSize(r.spoolBudget))
		if ks.SpoolUsed >= 1 {
			full += " (full: ingest waits for room)"
		}
		if ks.Reason == "" {
			ks.Reason = full
		} else {
			ks.Reason = full + "; " + ks.Reason
		}
	}
	return ks
}

// healthHandlers adds /healthz, /readyz, /status and the status page.
func (r *relay) healthHandlers(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := r.status(time.Now())
		if !st.Live {
			http.Error(w, "fail: "+strings.Join(st.Reasons, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := r.status(time.Now())
		if !st.Ready {
			http.Error(w, st.State+": "+strings.Join(st.Reasons, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r.status(time.Now()))
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := statusPage.Execute(w, pageData(r.status(time.Now()))); err != nil {
			r.log.Warn("status page", "err", err)
		}
	})
}
