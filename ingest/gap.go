package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"slsrelay/checkpoint"
)

// A gap is a shard whose cursor points at data that has aged out of the
// logstore's retention. The SDK's consumer library retries such a pull for
// ever with the same cursor (DESIGN.md invariant 6), so the worker watches
// the SLS answers itself: gapDetector wraps the HTTP transport, spots a
// PullLogs answer whose error code says so, and tells the worker, which
// names the lost range and restarts the shard at the oldest data still held.

type gapEvent struct {
	shard  int
	cursor string
	code   string
}

type gapDetector struct {
	codes  []string
	events chan gapEvent

	mu      sync.Mutex
	pending map[int]bool // shards already reported, until handled
}

func newGapDetector(codes []string) *gapDetector {
	return &gapDetector{codes: codes, events: make(chan gapEvent, 64), pending: map[int]bool{}}
}

// pullPath matches ".../logstores/{logstore}/shards/{shard}" (PullLogs).
var pullPath = regexp.MustCompile(`/logstores/[^/]+/shards/(\d+)$`)

func (g *gapDetector) wrap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err != nil || resp.StatusCode < 400 || req.Method != http.MethodGet || req.URL.Query().Get("type") != "logs" {
			return resp, err
		}
		m := pullPath.FindStringSubmatch(req.URL.Path)
		if m == nil {
			return resp, err
		}
		// Read the (small) error body, then hand the SDK an identical copy.
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			return resp, nil
		}
		var e struct {
			Code string `json:"errorCode"`
		}
		if json.Unmarshal(body, &e) != nil || !slices.Contains(g.codes, e.Code) {
			return resp, nil
		}
		shard, _ := strconv.Atoi(m[1])
		g.report(gapEvent{shard: shard, cursor: req.URL.Query().Get("cursor"), code: e.Code})
		return resp, nil
	})
}

func (g *gapDetector) report(ev gapEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending[ev.shard] {
		return
	}
	select {
	case g.events <- ev:
		g.pending[ev.shard] = true
	default: // full: the next failing pull reports it again
	}
}

func (g *gapDetector) done(shard int) {
	g.mu.Lock()
	delete(g.pending, shard)
	g.mu.Unlock()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// handleGap names the lost range of one shard, records it durably, and moves
// both checkpoints to the oldest data the logstore still holds.
func (w *Worker) handleGap(ev gapEvent) error {
	defer w.gaps.done(ev.shard)
	p, l := w.src.Project, w.src.Logstore
	begin, err := w.client.GetCursor(p, l, ev.shard, "begin")
	if err != nil {
		return fmt.Errorf("get begin cursor: %w", err)
	}
	to, err := w.client.GetCursorTime(p, l, ev.shard, begin)
	if err != nil {
		return fmt.Errorf("get time of begin cursor: %w", err)
	}
	key := checkpoint.ShardKey{Project: p, Logstore: l, Shard: ev.shard}
	g := checkpoint.Gap{Key: key, To: to, Detected: time.Now(),
		Reason: fmt.Sprintf("checkpoint aged out of the logstore's retention (SLS answered %s)", ev.code)}
	// From: when SLS received the first unread log group. SLS may still
	// resolve the stale cursor's time; if not, the newest __time__ spooled
	// from the shard is the best lower bound there is.
	if t, err := w.client.GetCursorTime(p, l, ev.shard, ev.cursor); err == nil {
		g.From = t
	} else if cs, err := w.opts.Checkpoints.Cursors(p, l); err == nil {
		if c, ok := cs[ev.shard]; ok && c.MaxTime > 0 {
			g.From = time.Unix(c.MaxTime, 0)
		}
	}
	if err := w.opts.Checkpoints.RecordGap(g); err != nil {
		return fmt.Errorf("record gap: %w", err)
	}
	if err := w.opts.Checkpoints.Commit(key, checkpoint.Cursor{Cursor: begin, Updated: time.Now()}); err != nil {
		return fmt.Errorf("commit local checkpoint: %w", err)
	}
	if err := w.client.UpdateCheckpoint(p, l, w.src.ConsumerGroup, w.src.ConsumerName, ev.shard, begin, true); err != nil {
		return fmt.Errorf("move SLS checkpoint to the oldest data: %w", err)
	}
	w.stats.gaps.Add(1)
	attrs := []any{slog.Int("shard", ev.shard), slog.Time("lost_to", g.To), slog.String("reason", g.Reason)}
	if !g.From.IsZero() {
		attrs = append(attrs, slog.Time("lost_from", g.From), slog.Duration("lost_span", g.To.Sub(g.From)))
	}
	w.log.Error("DATA LOST: logs aged out of SLS before they were relayed; resuming at the oldest data held", attrs...)
	return nil
}
