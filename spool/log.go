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

// dqLogger adapts go-diskqueue's printf callback to slog: INFO becomes
// Debug, repeated WARN/ERROR messages of one kind are rate-limited, and the
// messages the spool must act on are turned into events. onEvent returns
// true when the event is expected and harmless (a complete segment read to
// its end): the message is then logged at Debug.
type dqLogger struct {
	log     *slog.Logger
	onEvent func(dqEvent) bool
	every   time.Duration

	mu   sync.Mutex
	last map[string]time.Time
	supp map[string]int
}

func newDQLogger(log *slog.Logger, onEvent func(dqEvent) bool) *dqLogger {
	return &dqLogger{log: log, onEvent: onEvent, every: 10 * time.Second,
		last: map[string]time.Time{}, supp: map[string]int{}}
}

func (l *dqLogger) logf(lvl diskqueue.LogLevel, f string, args ...any) {
	benign := l.classify(f, args)
	level := slog.LevelDebug
	switch {
	case benign:
	case lvl == diskqueue.WARN:
		level = slog.LevelWarn
	case lvl == diskqueue.ERROR, lvl == diskqueue.FATAL:
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
