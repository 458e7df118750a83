package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Defaults of RetryPolicy.
const (
	DefaultRetryMin = 200 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
)

// RetryPolicy is the one retry policy of package deliver: exponential backoff
// with jitter between Min and Max, for ever (until the context ends). The HEC
// transport gets it as go-retryablehttp's CheckRetry and Backoff; the loop
// uses it to pace its own retries (paused sink, transient errors a sink
// returns). The zero value means the defaults. Safe for concurrent use.
type RetryPolicy struct {
	// Min is the first wait (default DefaultRetryMin).
	Min time.Duration
	// Max caps every wait, also a server's Retry-After (default DefaultRetryMax).
	Max time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Min <= 0 {
		p.Min = DefaultRetryMin
	}
	if p.Max <= 0 {
		p.Max = DefaultRetryMax
	}
	if p.Max < p.Min {
		p.Max = p.Min
	}
	return p
}

// Backoff returns the wait before retry number attempt (0-based): Min·2^attempt
// capped at Max, with the upper half jittered ("equal jitter"), so that many
// relays do not retry in step.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	p = p.withDefaults()
	d := p.Max
	if attempt < 40 {
		if e := p.Min << uint(attempt); e > 0 && e < p.Max {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// TransientStatus reports whether an HTTP status is worth retrying as is:
// 408, 429 and every 5xx (Splunk 503 code 9 "server is busy" included).
func TransientStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || (status >= 500 && status <= 599)
}

// classifyTransport maps an error without an HTTP response: TLS trust and
// URL problems need an operator (Config); everything else — timeouts, resets,
// refused connections, DNS hiccups — is Transient.
func classifyTransport(err error) *Error {
	kind := Transient
	var (
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		certErr    x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		urlErr     *url.Error
		invalidURL bool
	)
	if errors.As(err, &urlErr) && urlErr.Op == "parse" {
		invalidURL = true
	}
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certErr),
		errors.As(err, &verifyErr), errors.As(err, &recordErr), invalidURL:
		kind = Config
	}
	return &Error{Kind: kind, EventIndex: -1, Err: err}
}

// checkRetry adapts the policy to go-retryablehttp: retry every transient
// transport error and transient status, for ever; stop when ctx ends.
// onRetry (may be nil) is told about each failed attempt that will be retried.
func (p RetryPolicy) checkRetry(onRetry func(status int, err error)) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			if classifyTransport(err).Kind != Transient {
				return false, nil
			}
			if onRetry != nil {
				onRetry(0, err)
			}
			return true, nil
		}
		if TransientStatus(resp.StatusCode) {
			if onRetry != nil {
				onRetry(resp.StatusCode, nil)
			}
			return true, nil
		}
		return false, nil
	}
}

// backoff adapts the policy to go-retryablehttp; a Retry-After header on 429
// and 503 is honoured up to Max.
func (p RetryPolicy) backoff() retryablehttp.Backoff {
	return func(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
		p := p.withDefaults()
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				d := time.Duration(s) * time.Second
				if d > p.Max {
					d = p.Max
				}
				return d
			}
		}
		return p.Backoff(attempt)
	}
}

// sleepCtx waits d or until ctx ends (then it returns ctx.Err()).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
