package deliver

// The client side of RELP, the Reliable Event Logging Protocol of rsyslog
// (https://www.rsyslog.com/doc/relp.html, librelp's doc/relp.html). Every
// frame is
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// The client opens a session ("open" with relp_version, relp_software and
// commands=syslog; the server answers "rsp" "200 OK" with its offers), sends
// each message as a "syslog" command with the next transaction number
// (1..999999999, then 1 again), and the server answers every one with
// "rsp" and "200 OK" once it took the message, or "500 text" when it refused
// it. The client keeps up to RELPWindow messages unanswered (pipelining),
// resends the unanswered ones on a new session after a broken connection,
// and ends with "close". The server may announce "serverclose" (txnr 0).

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	relpMaxTxnr      = 999_999_999
	relpMaxFrameData = 128 << 10
	relpOffer        = "relp_version=0\nrelp_software=slsrelay,1,https://github.com/slsrelay\ncommands=syslog"
)

// relpFrame is one parsed frame.
type relpFrame struct {
	txnr int
	cmd  string
	data string
}

// relpTransport sends syslog messages over RELP (optionally over TLS).
type relpTransport struct {
	s    *Syslog
	tls  *tls.Config
	conn *relpConn
}

// relpConn is one RELP session: the writer is the sending goroutine (the
// caller of Send), a reader goroutine parses answers into frames.
type relpConn struct {
	c      net.Conn
	bw     *bufio.Writer
	ctx    context.Context
	frames chan relpFrame
	quit   chan struct{}
	done   chan struct{}
	err    error // why the reader stopped; read after done is closed
	txnr   int   // last transaction number used
}

func (t *relpTransport) send(ctx context.Context, enc *encoded, n int) error {
	acked := make([]bool, n)
	for attempt := 0; ; attempt++ {
		err := t.try(ctx, enc, n, acked)
		if err == nil {
			return nil
		}
		var de *Error
		if errors.As(err, &de) && de.Kind == Permanent {
			return err // the session is fine; the receiver refused one message
		}
		t.drop()
		if err := t.s.retryWait(ctx, attempt, err); err != nil {
			return err
		}
	}
}

// try sends every message not yet acked, keeping at most RELPWindow
// unanswered, and waits for all answers.
func (t *relpTransport) try(ctx context.Context, enc *encoded, n int, acked []bool) error {
	if t.conn == nil {
		c, err := t.open(ctx)
		if err != nil {
			return err
		}
		t.conn = c
	}
	c := t.conn
	c.ctx = ctx
	stop := abortOnCancel(ctx, c.c)
	defer stop()

	type pending struct{ txnr, idx int }
	var (
		window   = t.s.opts.RELPWindow
		out      = make([]pending, 0, window) // in txnr order
		next     = 0
		rejected = -1
		reason   string
		timer    = time.NewTimer(t.s.opts.RELPAckTimeout)
	)
	defer timer.Stop()
	handle := func(f relpFrame) error {
		switch f.cmd {
		case "rsp":
		case "serverclose":
			return &Error{Kind: Transient, EventIndex: -1, Text: "relp receiver closed the session"}
		default:
			return &Error{Kind: Transient, EventIndex: -1, Text: "relp: unexpected command " + strconv.Quote(f.cmd)}
		}
		k := 0
		for k < len(out) && out[k].txnr != f.txnr {
			k++
		}
		if k == len(out) {
			return &Error{Kind: Transient, EventIndex: -1, Text: "relp: answer to unknown txnr " + strconv.Itoa(f.txnr)}
		}
		idx := out[k].idx
		if k == 0 { // the usual case: answers come in order
			out = out[1:]
		} else {
			out = append(out[:k], out[k+1:]...)
		}
		if code, text := relpStatus(f.data); code == 200 {
			acked[idx] = true
		} else if rejected < 0 || idx < rejected {
			rejected, reason = idx, strconv.Itoa(code)+" "+text
		}
		return nil
	}
	// refill writes unacked messages while the window has room, in one
	// flush.
	refill := func() error {
		wrote := false
		for len(out) < window && next < n && rejected < 0 {
			if !acked[next] {
				txnr := c.nextTxnr()
				c.writeFrame(txnr, "syslog", enc.body(next, next+1))
				out = append(out, pending{txnr, next})
				wrote = true
			}
			next++
		}
		if !wrote {
			return nil
		}
		if err := c.bw.Flush(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classifySyslog(fmt.Errorf("relp write: %w", err))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(t.s.opts.RELPAckTimeout)
		return nil
	}
	for {
		// Refill once a quarter of the window is free, so that a write
		// carries many frames, not one per answer. (Waiting for half the
		// window was once measured 4x slower: rsyslog writes answers with
		// Nagle on and our delayed ACKs held them; quickAckReader fixes
		// that.)
		if len(out) == 0 || window-len(out) >= relpRefill(window) {
			if err := refill(); err != nil {
				return err
			}
		}
		if len(out) == 0 {
			break
		}
		// Wait for one answer, then take every answer already there
		// before writing more.
		select {
		case f := <-c.frames:
			if err := handle(f); err != nil {
				return err
			}
		case <-c.done:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return classifySyslog(fmt.Errorf("relp read: %w", c.err))
		case <-timer.C:
			return &Error{Kind: Transient, EventIndex: -1,
				Text: fmt.Sprintf("relp: no answer within %s for %d messages", t.s.opts.RELPAckTimeout, len(out))}
		case <-ctx.Done():
			return ctx.Err()
		}
	drain:
		for {
			select {
			case f := <-c.frames:
				if err := handle(f); err != nil {
					return err
				}
			default:
				break drain
			}
		}
	}
	if rejected >= 0 {
		return &Error{Kind: Permanent, EventIndex: rejected, Text: "relp receiver answered " + reason}
	}
	return nil
}

// relpRefill is how many window slots must be free before more messages
// are written: writing many frames per syscall, not one per answer.
func relpRefill(window int) int { return max(1, window/4) }

// relpStatus splits "200 OK\n…" into 200 and "OK".
func relpStatus(data string) (int, string) {
	line, _, _ := strings.Cut(data, "\n")
	code, text, _ := strings.Cut(line, " ")
	n, err := strconv.Atoi(code)
	if err != nil {
		return 0, line
	}
	return n, text
}

// open connects and runs the "open" handshake within DialTimeout.
func (t *relpTransport) open(ctx context.Context) (*relpConn, error) {
	nc, err := t.s.dial(ctx, "tcp", t.tls)
	if err != nil {
		return nil, err
	}
	c := &relpConn{c: nc, ctx: ctx, frames: make(chan relpFrame, t.s.opts.RELPWindow+8),
		quit: make(chan struct{}), done: make(chan struct{})}
	c.bw = bufio.NewWriterSize(deadlineWriter{nc, t.s.opts.WriteTimeout, &c.ctx}, 64<<10)
	go c.read()
	hctx, cancel := context.WithTimeout(ctx, t.s.opts.DialTimeout)
	defer cancel()
	stop := abortOnCancel(hctx, nc)
	defer stop()
	txnr := c.nextTxnr()
	c.writeFrame(txnr, "open", []byte(relpOffer))
	fail := func(err error) (*relpConn, error) {
		c.shutdown()
		return nil, err
	}
	hint := ""
	if t.tls != nil && len(t.tls.Certificates) == 0 {
		// rsyslog's imrelp closes a TLS session without a client
		// certificate silently, no alert: say what is likely.
		hint = " (the receiver closed the TLS session: does it require a client certificate?)"
	}
	if err := c.bw.Flush(); err != nil {
		return fail(classifySyslog(fmt.Errorf("relp open: %w%s", err, hint)))
	}
	select {
	case f := <-c.frames:
		code, text := relpStatus(f.data)
		if f.cmd != "rsp" || f.txnr != txnr {
			return fail(&Error{Kind: Transient, EventIndex: -1, Text: fmt.Sprintf("relp open: unexpected answer %d %s", f.txnr, f.cmd)})
		}
		if code != 200 {
			return fail(&Error{Kind: Config, EventIndex: -1, Text: "relp receiver refused the session: " + strconv.Itoa(code) + " " + text})
		}
		if !strings.Contains(f.data, "commands=syslog") {
			return fail(&Error{Kind: Config, EventIndex: -1, Text: "relp receiver does not offer the syslog command"})
		}
	case <-c.done:
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(classifySyslog(fmt.Errorf("relp open: %w%s", c.err, hint)))
	case <-hctx.Done():
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(&Error{Kind: Transient, EventIndex: -1, Text: "relp open: no answer within " + t.s.opts.DialTimeout.String()})
	}
	return c, nil
}

func (c *relpConn) nextTxnr() int {
	c.txnr++
	if c.txnr > relpMaxTxnr {
		c.txnr = 1
	}
	return c.txnr
}

// writeFrame buffers one frame; write errors surface at Flush.
func (c *relpConn) writeFrame(txnr int, cmd string, data []byte) {
	var hdr [48]byte
	b := strconv.AppendInt(hdr[:0], int64(txnr), 10)
	b = append(b, ' ')
	b = append(b, cmd...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(data)), 10)
	if len(data) > 0 {
		b = append(b, ' ')
	}
	_, _ = c.bw.Write(b)
	_, _ = c.bw.Write(data)
	_ = c.bw.WriteByte('\n')
}

// read parses frames until the connection fails or quit is closed.
func (c *relpConn) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(withQuickAck(c.c, c.c), 16<<10)
	for {
		f, err := readRELPFrame(br)
		if err != nil {
			c.err = err
			return
		}
		select {
		case c.frames <- f:
		case <-c.quit:
			c.err = net.ErrClosed
			return
		}
	}
}

// readRELPFrame reads one frame; it accepts LF after DATALEN when there is
// no data.
func readRELPFrame(br *bufio.Reader) (relpFrame, error) {
	var f relpFrame
	tok, err := readRELPToken(br, 10)
	if err != nil {
		return f, err
	}
	if f.txnr, err = strconv.Atoi(tok); err != nil || !allBytes(tok, isDigit) || f.txnr > relpMaxTxnr {
		return f, fmt.Errorf("relp: bad txnr %q", tok)
	}
	if f.cmd, err = readRELPToken(br, 32); err != nil {
		return f, err
	}
	if !allBytes(f.cmd, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }) {
		return f, fmt.Errorf("relp: bad command %q", f.cmd)
	}
	var lenTok []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return f, err
		}
		if c == '\n' || c == ' ' {
			n, err := strconv.Atoi(string(lenTok))
			if err != nil || !allBytes(string(lenTok), isDigit) || n > relpMaxFrameData || c == '\n' && n != 0 {
				return f, fmt.Errorf("relp: bad datalen %q", lenTok)
			}
			if c == '\n' {
				return f, nil
			}
			break
		}
		if len(lenTok) >= 10 {
			return f, fmt.Errorf("relp: bad datalen %q", lenTok)
		}
		lenTok = append(lenTok, c)
	}
	n, _ := strconv.Atoi(string(lenTok))
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(br, buf); err != nil {
		return f, err
	}
	if buf[n] != '\n' {
		return f, errors.New("relp: missing frame trailer")
	}
	f.data = string(buf[:n])
	return f, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// allBytes reports whether s is not empty and ok holds for each byte.
func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return s != ""
}

// readRELPToken reads 1..maxLen bytes up to a space.
func readRELPToken(br *bufio.Reader, maxLen int) (string, error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if c == ' ' && len(b) > 0 {
			return string(b), nil
		}
		if c == ' ' {
			return "", errors.New("relp: empty frame header field")
		}
		if len(b) >= maxLen || c == '\n' {
			return "", fmt.Errorf("relp: bad frame header %q", b)
		}
		b = append(b, c)
	}
}

// shutdown closes the connection and waits for the reader.
func (c *relpConn) shutdown() {
	close(c.quit)
	_ = c.c.Close()
	<-c.done
}

func (t *relpTransport) drop() {
	if t.conn != nil {
		t.conn.shutdown()
		t.conn = nil
	}
}

// close ends the session politely ("close", waiting up to a second for its
// answer), then closes the connection.
func (t *relpTransport) close() error {
	c := t.conn
	if c == nil {
		return nil
	}
	t.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.ctx = ctx
	stop := abortOnCancel(ctx, c.c)
	defer stop()
	txnr := c.nextTxnr()
	c.writeFrame(txnr, "close", nil)
	if c.bw.Flush() == nil {
	wait:
		for {
			select {
			case f := <-c.frames:
				if f.txnr == txnr {
					break wait
				}
			case <-c.done:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	c.shutdown()
	return nil
}
