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
	// evJump: diskqueue renamed its read segment .bad and jumped to the
	// next one (always right after an evReadError); it moved its write
	// position too unless the segment was complete.
	evJump
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

// classify recognises the go-diskqueue messages (pinned version) that carry
// state the spool must know about, and reports whether onEvent found the
// message benign.
func (l *dqLogger) classify(f string, args []any) bool {
	if l.onEvent == nil {
		return false
	}
	switch {
	case strings.Contains(f, "reading at %d of %s"):
		ev := dqEvent{kind: evReadError}
		if len(args) >= 4 {
			ev.offset, _ = args[1].(int64)
			ev.file, _ = args[2].(string)
			ev.err = fmt.Sprint(args[3])
		}
		return l.onEvent(ev)
	case strings.Contains(f, "failed to sync"):
		ev := dqEvent{kind: evSyncError}
		if len(args) >= 2 {
			ev.err = fmt.Sprint(args[1])
		}
		return l.onEvent(ev)
	case strings.Contains(f, "jump to next file"):
		return l.onEvent(dqEvent{kind: evJump})
	case strings.Contains(f, "skipping to next writeFileNum"),
		strings.Contains(f, "skipping to new file"):
		return l.onEvent(dqEvent{kind: evDiverged})
	}
	return false
}
