package deliver

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// retryNote remembers that a sink's send in progress keeps failing
// transiently and is being retried inside the sink (HEC's HTTP retries,
// syslog reconnects), so that the delivery loop can report the sink as
// retrying with a reason even though Send has not returned. Embedded in a
// sink, it gives the sink the RetryingSince and ClearRetrying methods the
// loop looks for. Safe for concurrent use.
type retryNote struct {
	noteMu    sync.Mutex
	noteSince time.Time
	noteWhy   string
}

// noteRetry records one failed attempt that will be retried.
func (n *retryNote) noteRetry(status int, err error) {
	why := ""
	switch {
	case err != nil:
		why = err.Error()
	case status != 0:
		why = "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	}
	n.noteMu.Lock()
	if n.noteSince.IsZero() {
		n.noteSince = time.Now()
	}
	n.noteWhy = why
	n.noteMu.Unlock()
}

// RetryingSince reports since when the sink has been retrying failed
// attempts without a success in between, and the latest failure; the zero
// time when it is not retrying.
func (n *retryNote) RetryingSince() (time.Time, string) {
	n.noteMu.Lock()
	defer n.noteMu.Unlock()
	return n.noteSince, n.noteWhy
}

// ClearRetrying ends the retry streak (the delivery loop calls it when a
// Send returns).
func (n *retryNote) ClearRetrying() {
	n.noteMu.Lock()
	n.noteSince, n.noteWhy = time.Time{}, ""
	n.noteMu.Unlock()
}

// retryReporter is what a sink with a retryNote offers the loop.
type retryReporter interface {
	RetryingSince() (time.Time, string)
	ClearRetrying()
}
