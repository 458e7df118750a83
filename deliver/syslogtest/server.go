package syslogtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// ServerOptions configure the in-process fake receiver.
type ServerOptions struct {
	// Protocol is "tcp" (default: plain syslog over a stream) or "relp".
	Protocol string
	// Framing of tcp: "octet-counting" (default, RFC 6587 3.4.1) or
	// "non-transparent" (one message per LF-terminated line). The fake
	// enforces it: anything else is a protocol error that closes the
	// connection.
	Framing string
	// TLS, when not nil, makes the server speak TLS with it (Certs.Server).
	TLS *tls.Config
	// RFC3164 turns off the strict RFC 5424 syntax check of every message.
	RFC3164 bool
	// Logf, when set, receives protocol errors as they happen (t.Logf).
	Logf func(format string, args ...any)
}

// Fault switches, flipped at run time with SetFault; the zero Fault is a
// healthy receiver.
type Fault struct {
	// Refuse closes the listener and every open connection: dials are
	// refused until the fault is cleared (the server listens again on the
	// same address).
	Refuse bool
	// DropAfter > 0 closes a connection when it brings its DropAfter-th
	// message, without storing or answering that message.
	DropAfter int
	// Delay is slept before each message is stored (and, for RELP, answered).
	Delay time.Duration
	// Hold (RELP) stores messages but keeps their answers back until the
	// fault is cleared.
	Hold bool
	// Reject (RELP) answers "500" to the messages it returns true for; they
	// are not stored.
	Reject func(msg string) bool
	// RefuseSession needs an operator to fix: over TLS the server demands a
	// client certificate (the client sees a TLS alert); over plain RELP it
	// answers the "open" command with "500".
	RefuseSession bool
}

// ServerStats count what the fake saw.
type ServerStats struct {
	// Conns is the number of connections accepted; Drops those closed by a
	// fault (DropAfter, Refuse).
	Conns, Drops int
	// Messages stored; Rejected answered with RELP 500.
	Messages, Rejected int
	// Sessions is the number of RELP sessions opened successfully.
	Sessions int
	// Errors lists protocol violations (bad framing, bad RFC 5424, bad
	// RELP frames or transaction numbers).
	Errors []string
}

// Server is an in-process syslog receiver (plain or RELP, optionally over
// TLS) on a loopback port, recording every message in arrival order. It is
// closed by t.Cleanup. Safe for concurrent use.
type Server struct {
	opts ServerOptions
	addr string

	mu     sync.Mutex
	cond   *sync.Cond // signalled when fault or closed change
	fault  Fault
	ln     net.Listener
	conns  map[*serverConn]struct{}
	msgs   []string
	stats  ServerStats
	closed bool
	wg     sync.WaitGroup
}

type serverConn struct {
	net.Conn
	closed bool // under Server.mu
}

// NewServer starts a fake receiver on 127.0.0.1:0.
func NewServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	if o.Protocol == "" {
		o.Protocol = "tcp"
	}
	if o.Framing == "" {
		o.Framing = "octet-counting"
	}
	if o.Protocol != "tcp" && o.Protocol != "relp" || o.Framing != "octet-counting" && o.Framing != "non-transparent" {
		t.Fatalf("syslogtest: bad ServerOptions %+v", o)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{opts: o, addr: ln.Addr().String(), conns: map[*serverConn]struct{}{}}
	s.cond = sync.NewCond(&s.mu)
	s.ln = ln
	s.wg.Add(1)
	go s.accept(ln)
	t.Cleanup(s.Close)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// SetFault replaces the fault switches (Fault{} heals everything).
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	s.cond.Broadcast()
	if s.closed {
		return
	}
	if f.Refuse && s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
		s.closeConnsLocked(true)
	}
	if !f.Refuse && s.ln == nil {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			s.stats.Errors = append(s.stats.Errors, "listen again on "+s.addr+": "+err.Error())
			return
		}
		s.ln = ln
		s.wg.Add(1)
		go s.accept(ln)
	}
}

func (s *Server) closeConnsLocked(drop bool) {
	for c := range s.conns {
		if !c.closed {
			c.closed = true
			_ = c.Close()
			if drop {
				s.stats.Drops++
			}
		}
	}
	s.cond.Broadcast()
}

// Close stops the server and waits for its goroutines; idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		if s.ln != nil {
			_ = s.ln.Close()
			s.ln = nil
		}
		s.closeConnsLocked(false)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Messages returns the stored messages (without framing) in arrival order.
func (s *Server) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Messages = len(s.msgs)
	st.Errors = append([]string(nil), s.stats.Errors...)
	return st
}

func (s *Server) currentFault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

func (s *Server) protoErr(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.stats.Errors = append(s.stats.Errors, msg)
	s.mu.Unlock()
	if s.opts.Logf != nil {
		s.opts.Logf("syslogtest: %s", msg)
	}
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := &serverConn{Conn: nc}
		s.mu.Lock()
		if s.closed || s.fault.Refuse {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.stats.Conns++
		refuse := s.fault.RefuseSession
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c, refuse)
	}
}

func (s *Server) serve(c *serverConn, refuseSession bool) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		c.closed = true
		delete(s.conns, c)
		s.cond.Broadcast()
		s.mu.Unlock()
		_ = c.Close()
	}()
	var rw io.ReadWriter = c.Conn
	if s.opts.TLS != nil {
		cfg := s.opts.TLS.Clone()
		if refuseSession {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		tc := tls.Server(c.Conn, cfg)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return // the client sees the alert
		}
		_ = tc.SetDeadline(time.Time{})
		rw = tc
		refuseSession = false
	}
	br := bufio.NewReaderSize(rw, 64<<10)
	if s.opts.Protocol == "relp" {
		s.serveRELP(c, rw, br, refuseSession)
		return
	}
	s.serveStream(br)
}

// store checks msg and records it; false means a protocol error.
func (s *Server) store(msg []byte) bool {
	if !s.opts.RFC3164 {
		if _, err := ParseRFC5424(string(msg)); err != nil {
			s.protoErr("bad RFC 5424 message (%v): %.200q", err, msg)
			return false
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, string(msg))
	s.mu.Unlock()
	return true
}

// drop reports whether the connection must close at its n-th message.
func (s *Server) drop(f Fault, n int) bool {
	if f.DropAfter > 0 && n >= f.DropAfter {
		s.mu.Lock()
		s.stats.Drops++
		s.mu.Unlock()
		return true
	}
	return false
}

func (s *Server) serveStream(br *bufio.Reader) {
	octet := s.opts.Framing == "octet-counting"
	for n := 1; ; n++ {
		var (
			msg []byte
			err error
		)
		if octet {
			msg, err = readOctetCounted(br)
		} else {
			msg, err = br.ReadBytes('\n')
			if err == nil {
				msg = msg[:len(msg)-1]
			} else if err == io.EOF && len(msg) > 0 {
				err = fmt.Errorf("unterminated line at EOF: %.80q", msg)
			}
		}
		if err != nil {
			if !isClosed(err) {
				s.protoErr("%s framing: %v", s.opts.Framing, err)
			}
			return
		}
		f := s.currentFault()
		if s.drop(f, n) {
			return
		}
		if f.Delay > 0 {
			time.Sleep(f.Delay)
		}
		if !s.store(msg) {
			return
		}
	}
}

// isClosed tells the end of a connection (EOF, also in the middle of a
// frame: a client may give up mid-write; closed by us; reset) from a
// protocol error.
func isClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// readOctetCounted reads "LEN SP MSG" (RFC 6587 3.4.1): LEN is 1-9 digits
// without a leading zero.
func readOctetCounted(br *bufio.Reader) ([]byte, error) {
	var n int
	for i := 0; ; i++ {
		c, err := br.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ' ' && i > 0 {
			break
		}
		if c < '0' || c > '9' || i == 0 && c == '0' || i >= 9 {
			return nil, fmt.Errorf("bad octet count at byte %q (digit %d)", c, i)
		}
		n = n*10 + int(c-'0')
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(br, msg); err != nil {
		return nil, fmt.Errorf("message of %d bytes: %w", n, err)
	}
	return msg, nil
}

// relpFrame is one frame the fake read.
type relpFrame struct {
	txnr int
	cmd  string
	data []byte
}

// readRELPFrame is the fake's own strict parser: TXNR SP CMD SP LEN [SP
// DATA] LF, TXNR 1..999999999, LEN ≤ 1 MiB.
func readRELPFrame(br *bufio.Reader) (relpFrame, error) {
	var f relpFrame
	tok := func(what string, max int) (string, error) {
		b, err := br.ReadSlice(' ')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = fmt.Errorf("%s too long", what)
			}
			return "", err
		}
		if len(b) < 2 || len(b) > max+1 {
			return "", fmt.Errorf("bad %s %q", what, b)
		}
		return string(b[:len(b)-1]), nil
	}
	s, err := tok("txnr", 9)
	if err != nil {
		return f, err
	}
	if f.txnr, err = strconv.Atoi(s); err != nil || f.txnr < 1 {
		return f, fmt.Errorf("bad txnr %q", s)
	}
	if f.cmd, err = tok("command", 32); err != nil {
		return f, err
	}
	var n int
	for i := 0; ; i++ {
		c, err := br.ReadByte()
		if err != nil {
			return f, err
		}
		if (c == ' ' || c == '\n') && i > 0 {
			if c == '\n' {
				if n != 0 {
					return f, fmt.Errorf("datalen %d without data", n)
				}
				return f, nil
			}
			break
		}
		if c < '0' || c > '9' || i >= 7 {
			return f, fmt.Errorf("bad datalen byte %q", c)
		}
		n = n*10 + int(c-'0')
	}
	if n > 1<<20 {
		return f, fmt.Errorf("datalen %d over 1 MiB", n)
	}
	f.data = make([]byte, n+1)
	if _, err := io.ReadFull(br, f.data); err != nil {
		return f, err
	}
	if f.data[n] != '\n' {
		return f, fmt.Errorf("frame %d: no LF after %d bytes of data", f.txnr, n)
	}
	f.data = f.data[:n]
	return f, nil
}

// relpAnswer is one "rsp" frame; Hold keeps back only answers to syslog
// commands (held is true), never the session's open and close.
type relpAnswer struct {
	frame []byte
	held  bool
}

func answer(txnr int, text string, held bool) relpAnswer {
	return relpAnswer{fmt.Appendf(nil, "%d rsp %d %s\n", txnr, len(text), text), held}
}

// serveRELP runs one RELP session: the first frame must be "open" offering
// the syslog command, transaction numbers must grow by one, every syslog
// command is answered in order by a writer goroutine (which Hold pauses).
func (s *Server) serveRELP(c *serverConn, rw io.ReadWriter, br *bufio.Reader, refuseSession bool) {
	answers := make(chan relpAnswer, 8192)
	done := make(chan struct{})
	go s.writeAnswers(c, rw, answers, done)
	defer func() { close(answers); <-done }()
	last, n := 0, 0
	for {
		f, err := readRELPFrame(br)
		if err != nil {
			if !isClosed(err) {
				s.protoErr("relp frame: %v", err)
			}
			return
		}
		if want := last%999_999_999 + 1; f.txnr != want {
			s.protoErr("relp txnr %d, want %d", f.txnr, want)
			return
		}
		last = f.txnr
		switch {
		case last == 1 && f.cmd != "open":
			s.protoErr("relp: first command %q, want open", f.cmd)
			return
		case f.cmd == "open":
			if last != 1 || !bytes.Contains(f.data, []byte("commands=syslog")) || !bytes.Contains(f.data, []byte("relp_version=")) {
				s.protoErr("relp: bad open (txnr %d) %q", f.txnr, f.data)
				return
			}
			if refuseSession {
				answers <- answer(f.txnr, "500 session refused by fault", false)
				return
			}
			s.mu.Lock()
			s.stats.Sessions++
			s.mu.Unlock()
			answers <- answer(f.txnr, "200 OK\nrelp_version=0\nrelp_software=syslogtest\ncommands=syslog", false)
		case f.cmd == "close":
			answers <- answer(f.txnr, "200 OK", false)
			return
		case f.cmd == "syslog":
			n++
			fl := s.currentFault()
			if s.drop(fl, n) {
				return
			}
			if fl.Delay > 0 {
				time.Sleep(fl.Delay)
			}
			if fl.Reject != nil && fl.Reject(string(f.data)) {
				s.mu.Lock()
				s.stats.Rejected++
				s.mu.Unlock()
				answers <- answer(f.txnr, "500 rejected by fault", true)
				continue
			}
			if !s.store(f.data) {
				answers <- answer(f.txnr, "500 malformed syslog message", true)
				continue
			}
			answers <- answer(f.txnr, "200 OK", true)
		default:
			s.protoErr("relp: unknown command %q", f.cmd)
			return
		}
	}
}

// writeAnswers writes queued answers, batching what is queued into one
// write, and waits while Hold is set.
func (s *Server) writeAnswers(c *serverConn, w io.Writer, answers <-chan relpAnswer, done chan<- struct{}) {
	defer close(done)
	bw := bufio.NewWriterSize(w, 32<<10)
	failed := false
	for a := range answers {
		if a.held {
			s.mu.Lock()
			held := s.fault.Hold && !c.closed && !s.closed
			if held {
				_ = bw.Flush() // what is already answered goes out
			}
			for s.fault.Hold && !c.closed && !s.closed {
				s.cond.Wait()
			}
			s.mu.Unlock()
		}
		if failed {
			continue
		}
		if _, err := bw.Write(a.frame); err != nil {
			failed = true
			continue
		}
		if len(answers) == 0 {
			if err := bw.Flush(); err != nil {
				failed = true
			}
		}
	}
	if !failed {
		_ = bw.Flush()
	}
}
