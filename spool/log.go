package spool

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	diskqueue "github.com/nsqio/go-diskqueue"
)

// Log attribute keys.
const (
	logKeyErr     = "err"
	logKeySeq     = "seq"
	logKeySegment = "segment"
	logKeyOffset  = "offset"
	logKeyReason  = "reason"
)

// dqEvent is something go-diskqueue only reports through its log callback
// and that the spool must act on.
type dqEvent struct {
	kind   dqEventKind
	file   string // segment path
	offset int64
	err    string
}

type dqEventKind int

const (
	// evReadError: diskqueue could not read a frame at file:offset and
	// has renamed the file to .bad and skipped the rest of it.
	evReadError dqEventKind = iota + 1
	// evSyncError: diskqueue's own fsync failed; pages may be lost.
	evSyncError
	// evDiverged: diskqueue moved its write position on its own.
	evDiverged
)

// dqLogger adapts go-diskqueue's printf callback to slog: INFO becomes
// Debug, repeated WARN/ERROR messages of one kind are rate-limited, and the
// messages the spool must act on are turned into events.
type dqLogger struct {
	log     *slog.Logger
	onEvent func(dqEvent)
	every   time.Duration

	mu   sync.Mutex
	last map[string]time.Time
	supp map[string]int
}

func newDQLogger(log *slog.Logger, onEvent func(dqEvent)) *dqLogger {
	return &dqLogger{log: log, onEvent: onEvent, every: 10 * time.Second,
		last: map[string]time.Time{}, supp: map[string]int{}}
}

func (l *dqLogger) logf(lvl diskqueue.LogLevel, f string, args ...any) {
	l.classify(f, args)
	level := slog.LevelDebug
	switch lvl {
	case diskqueue.WARN:
		level = slog.LevelWarn
	case diskqueue.ERROR, diskqueue.FATAL:
		level = slog.LevelError
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []any{}
	if level >= slog.LevelWarn {
		l.mu.Lock()
		now := time.Now()
		if t, ok := l.last[f]; ok && now.Sub(t) < l.every {
			l.supp[f]++
			l.mu.Unlock()
			return
		}
		l.last[f] = now
		if n := l.supp[f]; n > 0 {
			attrs = append(attrs, "suppressed", n)
			delete(l.supp, f)
		}
		l.mu.Unlock()
	}
	msg := strings.TrimPrefix(fmt.Sprintf(f, args...), "DISKQUEUE(")
	if i := strings.Index(msg, ")"); i >= 0 && len(args) > 0 {
		msg = strings.TrimLeft(msg[i+1:], " :")
	}
	l.log.Log(context.Background(), level, "diskqueue: "+msg, attrs...)
}

// classify recognises the go-diskqueue messages (pinned version) that carry
// state the spool must know about.
func (l *dqLogger) classify(f string, args []any) {
	if l.onEvent == nil {
		return
	}
	switch {
	case strings.Contains(f, "reading at %d of %s"):
		ev := dqEvent{kind: evReadError}
		if len(args) >= 4 {
			ev.offset, _ = args[1].(int64)
			ev.file, _ = args[2].(string)
			ev.err = fmt.Sprint(args[3])
		}
		l.onEvent(ev)
	case strings.Contains(f, "failed to sync"):
		ev := dqEvent{kind: evSyncError}
		if len(args) >= 2 {
			ev.err = fmt.Sprint(args[1])
		}
		l.onEvent(ev)
	case strings.Contains(f, "skipping to next writeFileNum"),
		strings.Contains(f, "skipping to new file"),
		strings.Contains(f, "jump to next file"):
		l.onEvent(dqEvent{kind: evDiverged})
	}
}
