package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// syslogTLSConfig builds the client TLS configuration of SyslogOptions.
func syslogTLSConfig(o *SyslogOptions, log *slog.Logger) (*tls.Config, error) {
	return clientTLSConfig("syslog", tlsFiles{o.CAFile, o.CertFile, o.KeyFile, o.ServerName, o.InsecureSkipVerify}, log)
}

// classifySyslog maps a connection error: TLS trust problems and a TLS alert
// from the receiver (it refused our certificate) need an operator; the rest
// is Transient.
func classifySyslog(err error) *Error {
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	e := classifyTransport(err)
	var (
		alert tls.AlertError
		op    *net.OpError
	)
	// crypto/tls reports an alert from the peer as a *net.OpError with Op
	// "remote error".
	if errors.As(err, &alert) || errors.As(err, &op) && op.Op == "remote error" {
		e.Kind = Config
	}
	return e
}

// dial connects to Address (TLS when cfg is not nil) within DialTimeout.
func (s *Syslog) dial(ctx context.Context, network string, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	if cfg != nil {
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		c, err := td.DialContext(ctx, "tcp", s.opts.Address)
		if err != nil {
			return nil, classifySyslog(fmt.Errorf("dial tls %s: %w", s.opts.Address, err))
		}
		return c, nil
	}
	c, err := d.DialContext(ctx, network, s.opts.Address)
	if err != nil {
		return nil, classifySyslog(fmt.Errorf("dial %s %s: %w", network, s.opts.Address, err))
	}
	return c, nil
}

// deadlineWriter bounds every write to the connection by timeout and
// gives up once *ctx ended (abortOnCancel covers a write already blocked).
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
	ctx     *context.Context
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	if err := (*w.ctx).Err(); err != nil {
		return 0, err
	}
	if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	if err := (*w.ctx).Err(); err != nil { // cancelled before the deadline was set
		return 0, err
	}
	return w.c.Write(p)
}

// abortOnCancel makes blocked reads and writes on c return when ctx ends;
// call the returned stop when done.
func abortOnCancel(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// streamTransport writes syslog over TCP or TLS with octet-counting or
// non-transparent framing.
type streamTransport struct {
	s     *Syslog
	tls   *tls.Config
	octet bool
	conn  net.Conn
	bw    *bufio.Writer
	ctx   context.Context // of the current try, for deadlineWriter
}

func (t *streamTransport) send(ctx context.Context, enc *encoded, n int) error {
	for attempt := 0; ; attempt++ {
		err := t.try(ctx, enc, n)
		if err == nil {
			return nil
		}
		t.drop()
		if err := t.s.retryWait(ctx, attempt, err); err != nil {
			return err
		}
	}
}

// try writes the whole batch on one connection, then checks that the
// receiver did not close or reset it.
func (t *streamTransport) try(ctx context.Context, enc *encoded, n int) error {
	if t.conn != nil {
		if err := alive(t.conn); err != nil {
			t.s.log.Info("syslog receiver closed the connection; reconnecting", slog.String(attrErr, err.Error()))
			t.drop()
		}
	}
	if t.conn == nil {
		c, err := t.s.dial(ctx, "tcp", t.tls)
		if err != nil {
			return err
		}
		if t.tls != nil {
			// Under TLS 1.3 a receiver refuses our certificate after the
			// handshake completed on our side: wait a moment for its alert.
			if err := aliveWithin(c, tlsSettle); err != nil {
				_ = c.Close()
				return classifySyslog(fmt.Errorf("tls %s: %w", t.s.opts.Address, err))
			}
		}
		t.conn = c
		t.bw = bufio.NewWriterSize(deadlineWriter{c, t.s.opts.WriteTimeout, &t.ctx}, 64<<10)
	}
	t.ctx = ctx
	stop := abortOnCancel(ctx, t.conn)
	defer stop()
	var num [24]byte
	for i := 0; i < n; i++ {
		msg := enc.body(i, i+1)
		if t.octet {
			b := strconv.AppendInt(num[:0], int64(len(msg)), 10)
			b = append(b, ' ')
			_, _ = t.bw.Write(b)
			_, _ = t.bw.Write(msg)
		} else {
			_, _ = t.bw.Write(msg)
			_ = t.bw.WriteByte('\n')
		}
	}
	err := t.bw.Flush() // bufio keeps the first write error
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return classifySyslog(fmt.Errorf("write: %w", err))
	}
	if err := alive(t.conn); err != nil {
		e := classifySyslog(fmt.Errorf("receiver closed the connection during the batch: %w", err))
		return e
	}
	return nil
}

// alive returns nil when the receiver has neither closed nor reset c:
// syslog receivers never write on the stream, so a read that does not time
// out within a millisecond means EOF, a reset or a TLS alert (a refused
// client certificate shows up so under TLS 1.3), which it returns.
func alive(c net.Conn) error { return aliveWithin(c, defaultSyslogLivenessTimeout) }

// tlsSettle is how long a new TLS connection is watched for an alert.
const tlsSettle = 100 * time.Millisecond

func aliveWithin(c net.Conn, d time.Duration) error {
	var b [64]byte
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

func (t *streamTransport) drop() {
	if t.conn != nil {
		_ = t.conn.Close()
		t.conn, t.bw = nil, nil
	}
}

func (t *streamTransport) close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn, t.bw = nil, nil
	return err
}

// udpTransport sends one datagram per message; best-effort.
type udpTransport struct {
	s    *Syslog
	conn net.Conn
}

func (t *udpTransport) send(ctx context.Context, enc *encoded, n int) error {
	from := 0
	for attempt := 0; ; attempt++ {
		var err error
		from, err = t.try(ctx, enc, from, n)
		if err == nil {
			return nil
		}
		if t.conn != nil {
			_ = t.conn.Close()
			t.conn = nil
		}
		if err := t.s.retryWait(ctx, attempt, err); err != nil {
			return err
		}
	}
}

// try sends messages [from,n) and returns where it stopped. A refused
// datagram (ICMP port unreachable reported on a later write) is retried
// from the message whose write failed.
func (t *udpTransport) try(ctx context.Context, enc *encoded, from, n int) (int, error) {
	if t.conn == nil {
		c, err := t.s.dial(ctx, "udp", nil)
		if err != nil {
			return from, err
		}
		t.conn = c
	}
	for i := from; i < n; i++ {
		if ctx.Err() != nil {
			return i, ctx.Err()
		}
		_ = t.conn.SetWriteDeadline(time.Now().Add(t.s.opts.WriteTimeout))
		if _, err := t.conn.Write(enc.body(i, i+1)); err != nil {
			return i, classifySyslog(fmt.Errorf("write udp: %w", err))
		}
	}
	return n, nil
}

func (t *udpTransport) close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}
