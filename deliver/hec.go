package deliver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Defaults of HECOptions.
const (
	DefaultHECMaxRequestBytes = 1 << 20
	DefaultHECTimeout         = 30 * time.Second
	DefaultHECAckPollInterval = time.Second
	DefaultHECAckTimeout      = 2 * time.Minute
	DefaultHECConcurrency     = 1
	DefaultHECHost            = "{{source}}"
	DefaultHECSource          = "sls:{{project}}:{{logstore}}"
	DefaultHECName            = "hec"
)

// HECOptions configure a Splunk HTTP Event Collector sink. Zero values mean
// the documented defaults.
type HECOptions struct {
	// Name of the sink in logs and metrics (default "hec").
	Name string
	// URL of the collector, scheme://host:port with an optional path prefix
	// (for proxies); the sink appends /services/collector/event and
	// /services/collector/ack. Required.
	URL string
	// Token is the HEC token. Exactly one of Token and TokenFile is required.
	Token Secret
	// TokenFile holds the token (surrounding space trimmed); it is re-read
	// whenever its modification time or size changes, so rewriting it fixes
	// a 401 without a restart.
	TokenFile string

	// Routing templates (see hec_format.go): Host (default "{{source}}"),
	// Source (default "sls:{{project}}:{{logstore}}"), Sourcetype and Index
	// (default empty: the token's defaults). Use "-" for an explicit empty.
	Host, Source, Sourcetype, Index string
	// Fields are indexed fields added to every event (after the sls_ ones),
	// e.g. replay=<job> so that a SIEM tells replayed events from live ones.
	Fields map[string]string

	// DisableGzip turns request compression off (default on).
	DisableGzip bool
	// GzipLevel (default BestSpeed, 1).
	GzipLevel int
	// MaxRequestBytes caps one request's uncompressed body (default 1 MiB).
	// A batch is split into requests under it; a single larger event is
	// sent alone.
	MaxRequestBytes int

	// TLS: CAFile (PEM bundle trusted instead of the system roots),
	// CertFile/KeyFile (client certificate for mTLS), ServerName (SNI and
	// verification name). InsecureSkipVerify disables verification; it is
	// honoured only when set explicitly and logs a warning.
	CAFile, CertFile, KeyFile, ServerName string
	InsecureSkipVerify                    bool

	// Timeout of one HTTP attempt (default 30 s).
	Timeout time.Duration

	// AckEnabled waits for indexer acknowledgement before Send returns.
	AckEnabled bool
	// Channel is the X-Splunk-Request-Channel GUID (generated if empty).
	Channel string
	// AckPollInterval is the longest wait between ack polls (default 1 s;
	// polling starts at 50 ms and doubles).
	AckPollInterval time.Duration
	// AckTimeout: a request not acked within it is sent again, never dropped
	// (default 2 min).
	AckTimeout time.Duration

	// Concurrency is the number of requests in flight per batch (default 1).
	// Above 1 a batch cut into several requests is pipelined and its events
	// may reach the SIEM out of order (batches themselves stay in order;
	// Splunk orders by event time). A Permanent EventIndex stays exact.
	Concurrency int
	// Retry paces transient retries (zero: DefaultRetryMin/Max).
	Retry RetryPolicy
	// Logger (default slog.Default()); a "sink" attribute is added.
	Logger *slog.Logger
	// RetryLogEvery rate-limits "retrying" warnings (default 10 s).
	RetryLogEvery time.Duration
}

// HEC is a Sink posting to Splunk's HTTP Event Collector. Safe for
// concurrent use.
type HEC struct {
	wake     waker
	opts     HECOptions
	log      *slog.Logger
	eventURL string
	ackURL   string
	format   hecFormatter
	token    *tokenSource
	client   *retryablehttp.Client
	gz       gzipPool
	retries  atomic.Uint64
	retryNote
	chunks   sync.Pool // *hecChunk
	retryLog logEvery
	closed   atomic.Bool
	counts   counters
	fmtd     formatted
	// unlistedLog rate-limits the log of answers HEC does not list.
	unlistedLog logEvery
}

var _ Sink = (*HEC)(nil)

// NewHEC validates opts and builds the sink; it opens no connection.
func NewHEC(opts HECOptions) (*HEC, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	h := &HEC{opts: opts}
	h.log = opts.Logger.With(slog.String(attrSink, opts.Name))
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hec: URL %q: want http(s)://host:port", redactedURL(opts.URL))
	}
	if u.User != nil {
		return nil, errors.New("hec: URL must not carry credentials")
	}
	base := strings.TrimSuffix(u.String(), "/")
	h.eventURL = base + "/services/collector/event"
	h.ackURL = base + "/services/collector/ack?channel=" + url.QueryEscape(opts.Channel)
	for _, t := range []struct {
		name string
		src  string
		dst  **template
	}{
		{"Host", opts.Host, &h.format.host}, {"Source", opts.Source, &h.format.source},
		{"Sourcetype", opts.Sourcetype, &h.format.sourcetype}, {"Index", opts.Index, &h.format.index},
	} {
		src := t.src
		if src == "-" {
			src = ""
		}
		if *t.dst, err = parseTemplate(src); err != nil {
			return nil, fmt.Errorf("hec: %s: %w", t.name, err)
		}
	}
	h.format.setFields(opts.Fields)
	h.token, err = newTokenSource(opts.Token, opts.TokenFile)
	if err != nil {
		return nil, err
	}
	tr, err := hecTransport(opts, h.log)
	if err != nil {
		return nil, err
	}
	// One cookie jar per sink, hence per channel: a load balancer in front
	// of several indexers sticks a client to one by cookie (Splunk asks
	// for sticky sessions with indexer acknowledgement), so the ack polls
	// of a channel reach the indexer that took its requests. Without the
	// jar they land elsewhere, are never answered true, and every request
	// is sent again each AckTimeout for ever.
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("hec: cookie jar: %w", err)
	}
	h.gz = gzipPool{level: opts.GzipLevel}
	h.retryLog = logEvery{every: opts.RetryLogEvery}
	h.unlistedLog = logEvery{every: opts.RetryLogEvery}
	h.client = &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: tr, Timeout: opts.Timeout, Jar: jar},
		Logger:       nil,
		RetryWaitMin: opts.Retry.Min,
		RetryWaitMax: opts.Retry.Max,
		RetryMax:     1<<31 - 1, // transient failures are retried until ctx ends
		CheckRetry:   h.checkRetry(opts.Retry.checkRetry(h.onRetry)),
		Backoff:      opts.Retry.backoff(),
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		RequestLogHook: func(_ retryablehttp.Logger, r *http.Request, _ int) {
			h.wake.awake(wakeableOf(r.Context()))
		},
	}
	return h, nil
}

func (o *HECOptions) setDefaults() error {
	if o.Name == "" {
		o.Name = DefaultHECName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Host == "" {
		o.Host = DefaultHECHost
	}
	if o.Source == "" {
		o.Source = DefaultHECSource
	}
	if o.GzipLevel == 0 {
		o.GzipLevel = 1
	}
	if o.GzipLevel < -2 || o.GzipLevel > 9 {
		return fmt.Errorf("hec: GzipLevel %d: want -2..9", o.GzipLevel)
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultHECMaxRequestBytes
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultHECTimeout
	}
	if o.AckPollInterval == 0 {
		o.AckPollInterval = DefaultHECAckPollInterval
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultHECAckTimeout
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultHECConcurrency
	}
	if o.RetryLogEvery == 0 {
		o.RetryLogEvery = 10 * time.Second
	}
	o.Retry = o.Retry.withDefaults()
	switch {
	case o.MaxRequestBytes < 0:
		return fmt.Errorf("hec: MaxRequestBytes %d: want > 0", o.MaxRequestBytes)
	case o.Timeout < 0, o.AckPollInterval < 0, o.AckTimeout < 0:
		return errors.New("hec: Timeout, AckPollInterval and AckTimeout must not be negative")
	case o.Concurrency < 0:
		return fmt.Errorf("hec: Concurrency %d: want > 0", o.Concurrency)
	case o.Token == "" && o.TokenFile == "":
		return errors.New("hec: Token or TokenFile is required")
	case o.Token != "" && o.TokenFile != "":
		return errors.New("hec: set Token or TokenFile, not both")
	case (o.CertFile == "") != (o.KeyFile == ""):
		return errors.New("hec: CertFile and KeyFile go together")
	}
	if o.Channel == "" {
		o.Channel = newGUID()
	}
	return nil
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// redactedURL hides userinfo and the query of a URL for error messages.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// Name implements Sink.
func (h *HEC) Name() string { return h.opts.Name }

// Counters implements CounterReporter.
func (h *HEC) Counters() Counters { return h.counts.snapshot() }

// Retries returns how many HTTP attempts failed transiently and were retried.
func (h *HEC) Retries() uint64 { return h.retries.Load() }

// Close implements Sink; it is idempotent.
func (h *HEC) Close() error {
	if h.closed.CompareAndSwap(false, true) {
		h.client.HTTPClient.CloseIdleConnections()
	}
	return nil
}

func (h *HEC) onRetry(status int, err error) {
	h.retries.Add(1)
	h.noteRetry(status, err)
	if ok, suppressed := h.retryLog.allow(); ok {
		attrs := []any{slog.Int("status", status), slog.Int("suppressed", suppressed)}
		if err != nil {
			attrs = append(attrs, slog.String(attrErr, err.Error()))
		}
		h.log.Warn("hec request failed, retrying", attrs...)
	}
}

// Send implements Sink: it formats b, cuts it into requests of at most
// MaxRequestBytes, posts up to Concurrency of them at once, and returns when
// every request was accepted (and acked, with AckEnabled). Transient failures
// are retried until ctx ends. A request answered 413, or rejected without an
// event number, is split in halves down to the offending event, which comes
// back as a Permanent *Error with its EventIndex; events before it are then
// confirmed.
//
// Requests are formatted one at a time as slots free up, so a batch holds
// at most Concurrency+1 request bodies in memory however many events it has
// (a 10 MiB pull is ~14 MB of HEC JSON). With AckEnabled, a request waiting
// for its ack lets the next one POST, as Splunk's own clients keep sending
// while acks are pending: up to ackWindow*Concurrency requests are begun at
// once, Concurrency of them on the wire, and ackWindow*Concurrency+1 bodies
// are held (a request's body is kept to send again if its ack never comes).
func (h *HEC) Send(ctx context.Context, b *Batch) error {
	if h.closed.Load() {
		return errors.New("hec: send after close")
	}
	evs := b.Events
	if len(evs) == 0 {
		return nil
	}
	fresh := h.fmtd.begin(b.Seq, len(evs))
	encode := func(i int, mc *metaCache) *hecChunk {
		before := replacements.Load()
		c := h.encodeChunk(evs, i, mc)
		if from := max(fresh, c.first); from < c.end() {
			countInvalidUTF8(&h.counts, before, evs[from:c.end()])
		}
		h.fmtd.upTo(b.Seq, len(evs), c.end())
		return c
	}
	var mc metaCache
	if h.opts.Concurrency == 1 {
		for i := 0; i < len(evs); {
			c := encode(i, &mc)
			err := h.sendRange(ctx, c, c.first, c.end(), nil)
			i = c.end()
			h.putChunk(c)
			if err != nil {
				return err
			}
		}
		return nil
	}
	live := h.opts.Concurrency // requests begun and not finished
	if h.opts.AckEnabled {
		live *= ackWindow
	}
	var (
		wg      sync.WaitGroup
		failed  atomic.Bool
		mu      sync.Mutex
		results = map[int]error{} // by request number
		sem     = make(chan struct{}, live)
		posts   = make(chan struct{}, h.opts.Concurrency) // POSTs on the wire
	)
	// The next request is formatted while the previous ones are in flight,
	// before waiting for a slot: at most Concurrency+1 bodies at once.
	c := encode(0, &mc)
	if c.end() == len(evs) { // a single request: no goroutine
		err := h.sendRange(ctx, c, c.first, c.end(), nil)
		h.putChunk(c)
		return err
	}
launch:
	for n := 0; c != nil; n++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			h.putChunk(c)
			break launch
		}
		if failed.Load() {
			h.putChunk(c)
			break
		}
		wg.Add(1)
		go func(c *hecChunk) {
			slot := &postSlot{ch: posts}
			defer func() { slot.release(); h.putChunk(c); <-sem; wg.Done() }()
			if err := h.sendRange(ctx, c, c.first, c.end(), slot); err != nil {
				mu.Lock()
				results[n] = err
				mu.Unlock()
				failed.Store(true)
			}
		}(c)
		if next := c.end(); next < len(evs) {
			c = encode(next, &mc)
		} else {
			c = nil
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The lowest failed request decides: every request before it succeeded,
	// so its EventIndex (if any) is exact.
	first, err := -1, error(nil)
	for n, e := range results {
		if first < 0 || n < first {
			first, err = n, e
		}
	}
	return err
}

// ackWindow: with acks, up to ackWindow*Concurrency requests of a batch
// may be begun at once, Concurrency of them POSTing and the others waiting
// for their acks.
const ackWindow = 4

// postSlot is a request's right to POST (one of Concurrency); a request
// gives it back while it waits for its ack. A nil postSlot is always held.
type postSlot struct {
	ch   chan struct{}
	held bool
}

func (s *postSlot) acquire(ctx context.Context) error {
	if s == nil || s.held {
		return nil
	}
	select {
	case s.ch <- struct{}{}:
		s.held = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *postSlot) release() {
	if s != nil && s.held {
		<-s.ch
		s.held = false
	}
}

// sendRange delivers events [i,j) of c in one request, splitting on 413
// or an unlocated rejection, and re-sending when an ack does not come.
// Each POST holds slot; the wait for its ack does not.
func (h *HEC) sendRange(ctx context.Context, c *hecChunk, i, j int, slot *postSlot) error {
	for {
		if err := slot.acquire(ctx); err != nil {
			return err
		}
		ackID, ack, err := h.post(ctx, c.body(i, j))
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				return err
			}
			if de.Kind == Permanent && de.EventIndex >= 0 && de.EventIndex < j-i {
				// With acks on, the events before the rejected one may
				// be indexed, but no ackId says so: send them again
				// and wait for their ack, so that "every event before
				// EventIndex is confirmed" holds (duplicates, never
				// loss).
				if h.opts.AckEnabled && de.EventIndex > 0 {
					if err := h.sendRange(ctx, c, i, i+de.EventIndex, slot); err != nil {
						return err
					}
				}
				e := *de
				e.EventIndex += i
				return &e
			}
			if de.Kind == Permanent {
				if j-i == 1 {
					e := *de
					e.EventIndex = i
					return &e
				}
				mid := i + (j-i)/2
				if err := h.sendRange(ctx, c, i, mid, slot); err != nil {
					return err
				}
				return h.sendRange(ctx, c, mid, j, slot)
			}
			return err
		}
		if !ack {
			return nil
		}
		slot.release()
		acked, err := h.waitAck(ctx, ackID)
		if err != nil || acked {
			return err
		}
		h.log.Warn("hec ack timed out, sending again", slog.Uint64("ack_id", ackID),
			slog.Int("events", j-i), slog.Duration("ack_timeout", h.opts.AckTimeout))
	}
}

// hecChunk is one request's events rendered as HEC JSON: event first+k is
// buf[offs[k]:offs[k+1]].
type hecChunk struct {
	first int
	buf   []byte
	offs  []int
}

func (c *hecChunk) end() int { return c.first + len(c.offs) - 1 }

func (c *hecChunk) body(i, j int) []byte { return c.buf[c.offs[i-c.first]:c.offs[j-c.first]] }

// encodeChunk renders events from i on into one request body of at most
// MaxRequestBytes (an event larger than that alone). mc carries the
// rendered metadata from one call to the next.
func (h *HEC) encodeChunk(evs []Event, i int, mc *metaCache) *hecChunk {
	c, _ := h.chunks.Get().(*hecChunk)
	if c == nil {
		c = &hecChunk{buf: make([]byte, 0, h.opts.MaxRequestBytes+h.opts.MaxRequestBytes/8)}
	}
	c.first, c.buf, c.offs = i, c.buf[:0], append(c.offs[:0], 0)
	for k := i; k < len(evs); k++ {
		mark := len(c.buf)
		c.buf = h.format.appendEvent(c.buf, &evs[k], mc)
		if len(c.buf) > h.opts.MaxRequestBytes && k > i {
			c.buf = c.buf[:mark] // starts the next request
			break
		}
		c.offs = append(c.offs, len(c.buf))
	}
	return c
}

// putChunk returns c's buffers for reuse, unless an oversized event grew
// them far past a request's size.
func (h *HEC) putChunk(c *hecChunk) {
	if cap(c.buf) <= 2*h.opts.MaxRequestBytes+4096 {
		h.chunks.Put(c)
	}
}
