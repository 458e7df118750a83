package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"slsrelay/checkpoint"
)

// handleGap deals with a shard whose cursor has aged out of the logstore's
// retention (docs/DESIGN.md, invariant 6): it names the lost range as exactly as
// SLS allows, records it durably, and returns the oldest position the
// shard still holds, from which the loop resumes. Naming the range never
// fails: what cannot be dated is recorded as unknown and said so, so there
// is nothing to retry but the begin cursor itself, without which the shard
// cannot be read at all. false: ctx ended.
func (l *shardLoop) handleGap(ctx context.Context, ce *CursorExpiredError) (string, bool) {
	w := l.w
	p, ls, shard := w.src.Project, w.src.Logstore, l.run.shard
	var begin string
	delay := 500 * time.Millisecond
	for {
		c, err := w.client.GetCursor(p, ls, shard, "begin")
		if err == nil {
			begin = c
			break
		}
		w.noteError(err)
		if ok, n := l.cpLog.allow(); ok {
			l.log.Warn("cannot get the oldest cursor of a shard whose checkpoint aged out; retrying",
				slog.Int("suppressed", n), slog.Any("err", err))
		}
		if !sleepCtx(ctx, delay) {
			return "", false
		}
		delay = min(2*delay, 30*time.Second)
	}
	g := l.nameGap(ce, begin, time.Now())
	if err := w.opts.Checkpoints.RecordGap(g); err != nil {
		// Logged below in full; the metric counts it.
		l.log.Error("recording the gap in the checkpoint store failed", slog.Any("err", err))
	}
	w.stats.gaps.Add(1)
	if err := w.opts.Checkpoints.Commit(l.key, checkpoint.Cursor{Cursor: begin, MaxTime: l.maxTime, Updated: time.Now()}); err != nil {
		l.log.Error("committing the local checkpoint failed", slog.Any("err", err))
	}
	l.durable = begin
	l.setCursor(begin)
	attrs := []any{slog.Time("lost_to", g.To), slog.String("reason", g.Reason)}
	if !g.From.IsZero() {
		attrs = append(attrs, slog.Time("lost_from", g.From), slog.Duration("lost_span", g.To.Sub(g.From)))
	}
	l.log.Error("DATA LOST: logs aged out of SLS before they were relayed; resuming at the oldest data held", attrs...)
	if err := l.commitSLS(false); err != nil {
		return "", false
	}
	return begin, true
}

// nameGap dates the lost range [From, To): To is when SLS received the
// oldest data it still holds; From when it received the log group at the
// expired cursor. SLS usually cannot date an expired cursor any more; the
// newest __time__ this relay spooled from the shard is then the best lower
// bound, if it is one (not after To). What stays unknown is zero and named
// in the reason.
func (l *shardLoop) nameGap(ce *CursorExpiredError, begin string, now time.Time) checkpoint.Gap {
	w := l.w
	p, ls, shard := w.src.Project, w.src.Logstore, l.run.shard
	g := checkpoint.Gap{Key: l.key, Detected: now,
		Reason: fmt.Sprintf("checkpoint aged out of the logstore's retention (SLS answered %s)", ce.Code)}
	var notes []string
	if t, err := w.client.GetCursorTime(p, ls, shard, begin); err == nil {
		g.To = t
	} else {
		w.noteError(err)
		g.To = now
		notes = append(notes, "end not dated by SLS, detection time used")
	}
	if t, err := w.client.GetCursorTime(p, ls, shard, ce.Cursor); err == nil && !t.After(g.To) {
		g.From = t
	} else if mt := time.Unix(l.maxTime, 0); l.maxTime > 0 && !mt.After(g.To) {
		g.From = mt
		notes = append(notes, "start is the newest log time spooled from the shard")
	} else {
		notes = append(notes, "start unknown")
	}
	if len(notes) > 0 {
		g.Reason += "; " + strings.Join(notes, "; ")
	}
	return g
}
