package slstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Defaults for zero Options fields.
const (
	DefaultListen   = "127.0.0.1:0"
	DefaultProject  = "demo-project"
	DefaultLogstore = "audit"
	DefaultShards   = 4
	DefaultAKID     = "test-ak-id"
	DefaultAKSecret = "test-ak-secret"
)

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	Listen     string            // address to listen on; default "127.0.0.1:0"
	Project    string            // first project; default "demo-project"; more via CreateProject
	Logstores  []LogstoreOptions // logstores of Project; default one "audit" with 4 shards
	AccessKeys map[string]string // AccessKey id → secret; default {"test-ak-id": "test-ak-secret"}
	Logger     *slog.Logger      // nil discards
}

// LogstoreOptions describe one logstore.
type LogstoreOptions struct {
	Name   string
	Shards int           // readwrite shards at creation; default 4
	TTL    time.Duration // retention by receive time; 0 keeps data for ever
}

// Stats count what the server did since it started. Bytes are response body
// bytes on the wire; raw bytes are the uncompressed LogGroupList bytes.
type Stats struct {
	Requests       int64 // HTTP requests received
	AuthFailures   int64 // requests rejected by authentication
	FaultsInjected int64 // requests failed by Faults.Fail
	Puts           int64 // successful PutLogs
	LogsWritten    int64 // logs stored by PutLogs and Append
	Pulls          int64 // successful PullLogs
	GroupsServed   int64
	LogsServed     int64
	RawBytesServed int64
	BytesServed    int64
}

type counters struct {
	requests, authFailures, faults, puts, logsWritten            atomic.Int64
	pulls, groupsServed, logsServed, rawBytesServed, bytesServed atomic.Int64
	stitchedPulls                                                atomic.Int64 // lz4 answers stitched from stored blocks
}

// Server is a local SLS emulator listening on a loopback port. All methods
// are safe for concurrent use.
type Server struct {
	opts         Options
	log          *slog.Logger
	ln           net.Listener
	srv          *http.Server
	served       chan struct{}
	endpointHost string
	client       *http.Client
	closeOnce    sync.Once

	mu       sync.RWMutex
	projects map[string]*project

	faultMu sync.RWMutex
	faults  map[string]*faultScope

	readMu  sync.Mutex
	readers map[string]time.Time // project, logstore, User-Agent → last GetCursor/PullLogs

	stats counters
	reqID atomic.Uint64
}

// New starts a server listening on opts.Listen. Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Project == "" {
		opts.Project = DefaultProject
	}
	if opts.Logstores == nil {
		opts.Logstores = []LogstoreOptions{{Name: DefaultLogstore, Shards: DefaultShards}}
	}
	if len(opts.AccessKeys) == 0 {
		opts.AccessKeys = map[string]string{DefaultAKID: DefaultAKSecret}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		projects: map[string]*project{},
		faults:   map[string]*faultScope{},
		readers:  map[string]time.Time{},
		served:   make(chan struct{}),
	}
	if err := s.CreateProject(opts.Project); err != nil {
		return nil, err
	}
	for _, lo := range opts.Logstores {
		if err := s.CreateLogstore(opts.Project, lo); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", opts.Listen, err)
	}
	s.ln = &gateListener{Listener: ln, s: s}
	s.endpointHost = "localhost"
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	tr := &http.Transport{
		DialContext:         s.DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     55 * time.Second,
		DisableCompression:  true,
	}
	s.client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("slstest listening", "addr", s.Addr(), "endpoint", s.Endpoint(), "project", opts.Project)
	return s, nil
}

// NewServer is New for tests: it fails t on error and closes the server
// in t.Cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("slstest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Addr is the listener's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Endpoint is the value for the SDK's Endpoint: "localhost:PORT". The SDK
// sends requests to "{project}.localhost:PORT"; HTTPClient and DialContext
// route such names to the listener (no DNS needed). Requests whose Host is
// the bare listener address carry no project.
func (s *Server) Endpoint() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return net.JoinHostPort(s.endpointHost, port)
}

// DialContext connects to the listener whatever addr says; it refuses
// when the whole server is set Unreachable.
func (s *Server) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.globallyUnreachable() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (slstest: unreachable)")}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.Addr())
}

// HTTPClient returns a client whose dialer sends every host, in
// particular "{project}.{Endpoint()}", to the listener. Pass it as
// LogHubConfig.HTTPClient or to Client.SetHTTPClient. The same client is
// returned on every call.
func (s *Server) HTTPClient() *http.Client { return s.client }

// Close stops listening, closes open connections and returns once the
// server goroutine ended. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.srv.Close()
		<-s.served
		s.client.CloseIdleConnections()
		s.mu.Lock()
		s.projects = map[string]*project{}
		s.mu.Unlock()
	})
	return err
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests: c.requests.Load(), AuthFailures: c.authFailures.Load(), FaultsInjected: c.faults.Load(),
		Puts: c.puts.Load(), LogsWritten: c.logsWritten.Load(), Pulls: c.pulls.Load(),
		GroupsServed: c.groupsServed.Load(), LogsServed: c.logsServed.Load(),
		RawBytesServed: c.rawBytesServed.Load(), BytesServed: c.bytesServed.Load(),
	}
}

// gateListener closes accepted connections while the server is Unreachable.
type gateListener struct {
	net.Listener
	s *Server
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.s.globallyUnreachable() {
			return c, nil
		}
		resetConn(c)
	}
}

// resetConn closes c so that the peer sees a reset rather than a clean EOF.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// projectFromHost extracts the project from "{project}.{endpoint}".
func (s *Server) projectFromHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil || host == s.endpointHost {
		return ""
	}
	if p, ok := strings.CutSuffix(host, "."+s.endpointHost); ok {
		return p
	}
	p, _, ok := strings.Cut(host, ".")
	if !ok {
		return ""
	}
	return p
}

func (s *Server) requestID() string {
	return fmt.Sprintf("%08X%016X", uint32(time.Now().Unix()), s.reqID.Add(1))
}

// readBody reads at most 64 MiB of request body.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	const max = 64 << 20
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, errf(http.StatusRequestEntityTooLarge, "PostBodyTooLarge", "body larger than %d bytes", max)
	}
	return b, nil
}

// noteReader records that a client with this User-Agent sent a shard read
// (GetCursor, GetCursorTime, PullLogs) for a logstore.
func (s *Server) noteReader(project, logstore, userAgent string) {
	k := project + "\x00" + logstore + "\x00" + userAgent
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if _, ok := s.readers[k]; !ok && len(s.readers) >= 4096 {
		clear(s.readers) // bounded; forgetting only delays a consumer's shards
	}
	s.readers[k] = time.Now()
}

// lastRead is when a client with this User-Agent last sent a shard read
// for a logstore; zero if never.
func (s *Server) lastRead(project, logstore, userAgent string) time.Time {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return s.readers[project+"\x00"+logstore+"\x00"+userAgent]
}
