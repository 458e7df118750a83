package hectest

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// StickyCookie is the cookie a StickyProxy sets to pin a client to a
// backend (the name HAProxy's "cookie SERVERID insert" uses).
const StickyCookie = "SERVERID"

// StickyProxy is a load balancer in front of several receivers, as Splunk
// asks for indexer acknowledgement behind one: a request carrying the
// StickyCookie of a backend goes to that backend; any other request goes to
// the backend chosen by a hash of its path (HAProxy's "balance uri"), and
// the answer sets the cookie for it. Without cookies a client's event
// requests and its ack polls hash to different backends (the constructor
// makes sure they do), so acks are asked of an indexer that never saw the
// request: exactly the failure stickiness exists to prevent.
type StickyProxy struct {
	backends []*url.URL
	srv      *http.Server
	ln       net.Listener
	url      string

	mu     sync.Mutex
	served []int // requests per backend
	sticky int   // requests routed by their cookie
}

// NewStickyProxy starts a proxy on loopback in front of backends (at least
// two) and closes it when the test ends.
func NewStickyProxy(t testing.TB, backends ...*Server) *StickyProxy {
	t.Helper()
	p, err := StartStickyProxy(backends...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// StartStickyProxy starts a proxy in front of backends (at least two);
// Close stops it.
func StartStickyProxy(backends ...*Server) (*StickyProxy, error) {
	if len(backends) < 2 {
		return nil, errors.New("hectest: a sticky proxy needs at least two backends")
	}
	p := &StickyProxy{served: make([]int, len(backends))}
	for _, b := range backends {
		u, err := url.Parse(b.URL())
		if err != nil {
			return nil, err
		}
		p.backends = append(p.backends, u)
	}
	if p.byPath(PathEvent) == p.byPath(PathAck) {
		// Not the case for the paths above and any backend count ≥ 2 with
		// FNV-1a; checked so that a change of hash cannot hide the failure.
		return nil, errors.New("hectest: event and ack paths hash to the same backend")
	}
	ln, err := net.Listen("tcp", DefaultListen)
	if err != nil {
		return nil, err
	}
	p.ln, p.url = ln, "http://"+ln.Addr().String()
	rp := &httputil.ReverseProxy{
		ErrorLog: log.New(io.Discard, "", 0), // a client giving up is no news
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.backends[r.In.Context().Value(backendKey{}).(int)])
		},
		ModifyResponse: func(resp *http.Response) error {
			i := resp.Request.Context().Value(backendKey{}).(int)
			if c, err := resp.Request.Cookie(StickyCookie); err != nil || c.Value != strconv.Itoa(i) {
				resp.Header.Add("Set-Cookie", (&http.Cookie{Name: StickyCookie, Value: strconv.Itoa(i), Path: "/"}).String())
			}
			return nil
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := p.route(r)
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, i)))
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

type backendKey struct{}

// route picks the backend of r and counts it.
func (p *StickyProxy) route(r *http.Request) int {
	i, sticky := -1, false
	if c, err := r.Cookie(StickyCookie); err == nil {
		if n, err := strconv.Atoi(c.Value); err == nil && n >= 0 && n < len(p.backends) {
			i, sticky = n, true
		}
	}
	if i < 0 {
		i = p.byPath(r.URL.Path)
	}
	p.mu.Lock()
	p.served[i]++
	if sticky {
		p.sticky++
	}
	p.mu.Unlock()
	return i
}

func (p *StickyProxy) byPath(path string) int {
	h := fnv.New32a()
	h.Write([]byte(path))
	return int(h.Sum32() % uint32(len(p.backends)))
}

// URL is the proxy's base URL.
func (p *StickyProxy) URL() string { return p.url }

// Served returns how many requests went to each backend, and how many of
// all were routed by their cookie.
func (p *StickyProxy) Served() (perBackend []int, byCookie int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.served...), p.sticky
}

// Close stops the proxy.
func (p *StickyProxy) Close() error { return p.srv.Close() }
