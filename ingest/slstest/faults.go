package slstest

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// FailMode names one way a request can fail.
type FailMode string

// Failure modes for Faults.Fail.
const (
	Fail500       FailMode = "500"       // 500 InternalServerError JSON (the SDK retries)
	Fail503       FailMode = "503"       // 503 ServerBusy JSON (the SDK retries)
	Fail403       FailMode = "403"       // 403 ReadQuotaExceed / WriteQuotaExceed JSON
	FailReset     FailMode = "reset"     // connection reset before any answer
	FailTruncated FailMode = "truncated" // headers promise a longer body; connection closes midway
	FailGarbage   FailMode = "garbage"   // 200 with a random body and no x-log-cursor
)

// Faults are injected into requests for one logstore, one project or the
// whole server. The zero value injects nothing.
type Faults struct {
	Latency     time.Duration        // added before each answer
	Bandwidth   int64                // bytes/s cap on response bodies, shared by the scope's requests; 0 = none
	Fail        map[FailMode]float64 // fraction of requests failing each way, 0..1
	Unreachable bool                 // connections are refused (dialer) or closed unanswered
}

// faultScope is the installed Faults of one scope plus its bandwidth pacer.
type faultScope struct {
	f     Faults
	pacer *pacer
}

func faultKey(project, logstore string) string { return project + "\x00" + logstore }

// SetFaults installs faults for a logstore; logstore "" covers the whole
// project and project "" (with logstore "") the whole server. The most
// specific scope set wins. A zero Faults removes the scope. Safe for
// concurrent use, effective for the next request.
func (s *Server) SetFaults(project, logstore string, f Faults) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	k := faultKey(project, logstore)
	if f.Latency == 0 && f.Bandwidth == 0 && len(f.Fail) == 0 && !f.Unreachable {
		delete(s.faults, k)
		return
	}
	fail := make(map[FailMode]float64, len(f.Fail))
	for m, p := range f.Fail {
		fail[m] = p
	}
	f.Fail = fail
	sc := &faultScope{f: f}
	if f.Bandwidth > 0 {
		sc.pacer = &pacer{rate: f.Bandwidth}
	}
	s.faults[k] = sc
}

// faultsFor returns the scope applying to a request, or nil.
func (s *Server) faultsFor(project, logstore string) *faultScope {
	s.faultMu.RLock()
	defer s.faultMu.RUnlock()
	for _, k := range []string{faultKey(project, logstore), faultKey(project, ""), faultKey("", "")} {
		if sc, ok := s.faults[k]; ok {
			return sc
		}
	}
	return nil
}

func (s *Server) globallyUnreachable() bool {
	sc := s.faultsFor("", "")
	return sc != nil && sc.f.Unreachable
}

// roll picks the failure mode for one request, or "".
func (sc *faultScope) roll() FailMode {
	if sc == nil || len(sc.f.Fail) == 0 {
		return ""
	}
	x := rand.Float64()
	for _, m := range []FailMode{Fail500, Fail503, Fail403, FailReset, FailTruncated, FailGarbage} {
		p := sc.f.Fail[m]
		if x < p {
			return m
		}
		x -= p
	}
	return ""
}

// pacer spreads writes so that a scope's responses share rate bytes/s.
type pacer struct {
	mu   sync.Mutex
	rate int64
	next time.Time
}

// wait blocks until n more bytes may be sent, or ctx ends.
func (p *pacer) wait(ctx context.Context, n int) error {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(int64(n) * int64(time.Second) / p.rate))
	until := p.next
	p.mu.Unlock()
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeBody writes b, paced when the scope caps bandwidth.
func writeBody(ctx context.Context, w http.ResponseWriter, b []byte, sc *faultScope) {
	if sc == nil || sc.pacer == nil {
		w.Write(b)
		return
	}
	const chunk = 16 << 10
	for len(b) > 0 {
		n := min(chunk, len(b))
		if sc.pacer.wait(ctx, n) != nil {
			return
		}
		if _, err := w.Write(b[:n]); err != nil {
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		b = b[n:]
	}
}
