package hectest

import (
	"strconv"
	"sync"
	"time"
)

// acker keeps indexer-acknowledgement state: per channel, the next ack id
// and the pending ids. Like Splunk, an id answered true is then forgotten
// (a second query answers false), and ids start at 0 on each channel.
type acker struct {
	mu       sync.Mutex
	channels map[string]*ackChannel
}

type ackChannel struct {
	next    int64
	pending map[int64]pendingAck
}

type pendingAck struct {
	ready time.Time
	req   *Request
}

func (a *acker) init() { a.channels = make(map[string]*ackChannel) }

// issue allocates an ack id on channel for req, true after delay.
func (a *acker) issue(channel string, req *Request, delay time.Duration) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.channels[channel]
	if ch == nil {
		ch = &ackChannel{pending: make(map[int64]pendingAck)}
		a.channels[channel] = ch
	}
	id := ch.next
	ch.next++
	ch.pending[id] = pendingAck{ready: time.Now().Add(delay), req: req}
	req.AckID = id
	return id
}

// query answers ids on channel under fault f, and counts the trues.
func (a *acker) query(channel string, ids []int64, f *Fault) (map[string]bool, int) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(ids))
	trues := 0
	ch := a.channels[channel]
	for _, id := range ids {
		key := strconv.FormatInt(id, 10)
		out[key] = false
		if ch == nil {
			continue
		}
		p, ok := ch.pending[id]
		switch {
		case !ok:
		case f.LoseAcks:
			delete(ch.pending, id)
		case f.WithholdAcks || now.Before(p.ready):
		default:
			delete(ch.pending, id)
			p.req.Acked = true
			out[key] = true
			trues++
		}
	}
	return out, trues
}

func (a *acker) isAcked(r *Request) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return r.Acked
}

func (a *acker) snapshot(r *Request) Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return *r
}
