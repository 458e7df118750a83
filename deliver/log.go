package deliver

import (
	"sync"
	"time"
)

// Log attribute keys used by package deliver.
const (
	attrSink     = "sink"
	attrSeq      = "seq"
	attrErr      = "err"
	attrProject  = "project"
	attrLogstore = "logstore"
	attrShard    = "shard"
)

// logEvery rate-limits a repeated log line: allow reports true at most once
// per every, with the number of calls suppressed since the last true. The
// zero every allows everything. Safe for concurrent use.
type logEvery struct {
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *logEvery) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// reset makes the next allow report true.
func (l *logEvery) reset() {
	l.mu.Lock()
	l.last, l.suppressed = time.Time{}, 0
	l.mu.Unlock()
}
