package deliver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/klauspost/compress/gzip"
)

const maxResponseBytes = 64 << 10

// post sends one request body (uncompressed HEC JSON) and returns its ackId
// and whether there is one to wait for. Transient failures are retried
// inside the client until ctx ends.
func (h *HEC) post(ctx context.Context, body []byte) (id uint64, ack bool, err error) {
	payload := body
	if !h.opts.DisableGzip {
		payload = h.gz.compress(body)
	}
	status, rb, err := h.do(ctx, h.eventURL, payload, !h.opts.DisableGzip)
	if err != nil {
		return 0, false, err
	}
	if de := h.classify(status, rb); de != nil {
		return 0, false, de
	}
	if !h.opts.AckEnabled {
		return 0, false, nil
	}
	r, ok := parseHECResponse(rb)
	if !r.HasAckID {
		// Accepted with a 2xx but no ackId (the token has indexer
		// acknowledgement off, or something other than HEC answered), or
		// an answer that cannot be read: with acks on nothing is
		// confirmed until an ack says so. Transient: the data stays and
		// is sent again.
		what := "no ackId"
		if !ok {
			what = "an unreadable body"
		}
		if ok, n := h.retryLog.allow(); ok {
			h.log.Warn("hec answered "+strconv.Itoa(status)+" with "+what+" while acks are on: nothing is confirmed without ackId, sending again; is indexer acknowledgement enabled on the token?",
				slog.Int("suppressed", n))
		}
		return 0, false, &Error{Kind: Transient, Status: status, EventIndex: -1, Text: "accepted with " + what + " while acks are on (without ackId nothing is confirmed)"}
	}
	return r.AckID, true, nil
}

// classify is classifyHEC, counting and logging (rate-limited) the answers
// HEC does not list, each of which pauses the sink.
func (h *HEC) classify(status int, rb []byte) *Error {
	de := classifyHEC(status, rb)
	if de == nil {
		return nil
	}
	if r, _ := parseHECResponse(rb); !unlistedHEC(status, r.Code, r.HasCode) {
		return de
	}
	h.counts.unlisted.Add(1)
	if ok, n := h.unlistedLog.allow(); ok {
		h.log.Error("hec answered "+strconv.Itoa(status)+", not a status HEC lists as a rejection of the data (a proxy in between?): keeping the data, pausing the sink and retrying",
			slog.Int("status", status), slog.String("text", de.Text), slog.Int("suppressed", n))
	}
	return de
}

// do posts payload and returns the status and (bounded) answer body.
// Transient failures are retried inside the client; a request sleeping in
// its backoff is woken when another request of this sink gets an answer
// (see waker) and then tries again at once, its backoff reset.
func (h *HEC) do(ctx context.Context, u string, payload []byte, gzipped bool) (int, []byte, error) {
	for {
		status, rb, woken, err := h.doOnce(ctx, u, payload, gzipped)
		if !woken {
			return status, rb, err
		}
	}
}

// doOnce is one client.Do (with its retries); woken reports that it was
// cut short in a backoff by the waker.
func (h *HEC) doOnce(ctx context.Context, u string, payload []byte, gzipped bool) (int, []byte, bool, error) {
	tok, err := h.token.get()
	if err != nil {
		return 0, nil, false, err
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &wakeable{cancel: cancel}
	defer h.wake.awake(w)
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(actx, wakeKey{}, w), http.MethodPost, u, payload)
	if err != nil {
		return 0, nil, false, &Error{Kind: Config, EventIndex: -1, Text: "build request", Err: err}
	}
	req.Header.Set("Authorization", "Splunk "+string(tok))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Splunk-Request-Channel", h.opts.Channel)
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := h.client.Do(req)
	if resp != nil {
		defer resp.Body.Close()
	}
	if ctx.Err() != nil {
		return 0, nil, false, ctx.Err()
	}
	if actx.Err() != nil {
		return 0, nil, true, nil
	}
	if err != nil {
		return 0, nil, false, classifyTransport(err)
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil && resp.StatusCode/100 != 2 {
		return 0, nil, false, &Error{Kind: Transient, Status: resp.StatusCode, EventIndex: -1, Err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	return resp.StatusCode, rb, false, nil
}

// checkRetry wraps the policy's CheckRetry: a request that will retry is
// asleep until its next attempt; an answer from the SIEM that is not to be
// retried (2xx, 4xx) wakes the sleeping ones.
func (h *HEC) checkRetry(base retryablehttp.CheckRetry) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		retry, cerr := base(ctx, resp, err)
		switch {
		case retry:
			h.wake.sleep(wakeableOf(ctx))
		case err == nil && cerr == nil && resp != nil:
			h.wake.wakeAll()
		}
		return retry, cerr
	}
}

// waker wakes the sink's requests sleeping in a retry backoff once one of
// them gets an answer from the SIEM: after an outage every request had
// backed off on its own, up to retry.max_backoff (30 s by default), and a
// record's delivery waited for the last of them to wake although the SIEM
// was back. A request counts as asleep from the moment the client decides
// to retry it until its next attempt starts, so only a request that is not
// on the wire is ever cut short: waking cannot duplicate events.
type waker struct {
	mu     sync.Mutex
	asleep map[*wakeable]struct{}
}

// wakeable is one client.Do; cancel ends its context (and so its backoff).
type wakeable struct{ cancel context.CancelFunc }

type wakeKey struct{}

func wakeableOf(ctx context.Context) *wakeable {
	w, _ := ctx.Value(wakeKey{}).(*wakeable)
	return w
}

// sleep: w's client will retry after a backoff.
func (k *waker) sleep(w *wakeable) {
	if w == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.asleep == nil {
		k.asleep = map[*wakeable]struct{}{}
	}
	k.asleep[w] = struct{}{}
}

// awake: w's next attempt starts (or its Do returned).
func (k *waker) awake(w *wakeable) {
	if w == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.asleep, w)
}

// wakeAll cuts every sleeping backoff short.
func (k *waker) wakeAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for w := range k.asleep {
		w.cancel()
		delete(k.asleep, w)
	}
}

// waitAck polls the ack endpoint for id until it is acked (true), AckTimeout
// passes (false: the caller sends again), or a non-transient error.
func (h *HEC) waitAck(ctx context.Context, id uint64) (bool, error) {
	deadline := time.Now().Add(h.opts.AckTimeout)
	wait := min(50*time.Millisecond, h.opts.AckPollInterval)
	body := []byte(`{"acks":[` + strconv.FormatUint(id, 10) + `]}`)
	for {
		if err := sleepCtx(ctx, wait); err != nil {
			return false, err
		}
		wait = min(2*wait, h.opts.AckPollInterval)
		status, rb, err := h.do(ctx, h.ackURL, body, false)
		if err == nil {
			if de := h.classify(status, rb); de != nil {
				err = de
			}
		}
		if err != nil {
			if ctx.Err() != nil || KindOf(err) != Transient {
				return false, err
			}
			h.onRetry(status, err)
		} else if acked, ok := parseAckResponse(rb, id); acked {
			return true, nil
		} else if !ok {
			h.onRetry(status, fmt.Errorf("unreadable ack answer"))
		}
		if time.Now().After(deadline) {
			return false, nil
		}
	}
}

// tokenSource yields the HEC token, re-reading TokenFile when it changes.
type tokenSource struct {
	static Secret
	path   string

	mu   sync.Mutex
	tok  Secret
	mod  time.Time
	size int64
}

func newTokenSource(static Secret, path string) (*tokenSource, error) {
	t := &tokenSource{static: static, path: path}
	if _, err := t.get(); err != nil {
		return nil, fmt.Errorf("hec: %w", err)
	}
	return t, nil
}

func (t *tokenSource) get() (Secret, error) {
	if t.path == "" {
		return t.static, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", &Error{Kind: Config, EventIndex: -1, Text: "token file", Err: err}
	}
	if t.tok != "" && fi.ModTime().Equal(t.mod) && fi.Size() == t.size {
		return t.tok, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", &Error{Kind: Config, EventIndex: -1, Text: "token file", Err: err}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", &Error{Kind: Config, EventIndex: -1, Text: "token file " + t.path + " is empty"}
	}
	t.tok, t.mod, t.size = Secret(tok), fi.ModTime(), fi.Size()
	return t.tok, nil
}

// hecTransport builds the HTTP transport with the TLS options.
func hecTransport(o HECOptions, log *slog.Logger) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * o.Concurrency
	tr.ResponseHeaderTimeout = o.Timeout
	cfg, err := clientTLSConfig("hec", tlsFiles{o.CAFile, o.CertFile, o.KeyFile, o.ServerName, o.InsecureSkipVerify}, log)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = cfg
	return tr, nil
}

// gzipPool compresses request bodies with pooled writers.
type gzipPool struct {
	level int
	pool  sync.Pool
}

func (g *gzipPool) compress(body []byte) []byte {
	w, _ := g.pool.Get().(*gzip.Writer)
	buf := bytes.NewBuffer(make([]byte, 0, len(body)/4+256))
	if w == nil {
		w, _ = gzip.NewWriterLevel(buf, g.level) // level validated in NewHEC
	} else {
		w.Reset(buf)
	}
	_, _ = w.Write(body) // writes to a bytes.Buffer do not fail
	_ = w.Close()
	g.pool.Put(w)
	return buf.Bytes()
}
