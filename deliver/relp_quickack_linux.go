//go:build linux

package deliver

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
)

// quickAckReader re-arms TCP_QUICKACK after every read (Linux clears it as
// it sees fit), so that the receiver learns at once that its answers
// arrived. rsyslog's imrelp writes answers with Nagle's algorithm on: an
// answer written while an earlier one is unacknowledged waits for our ACK,
// and a delayed ACK (up to 40 ms) stalls the whole window.
type quickAckReader struct {
	r  io.Reader
	rc syscall.RawConn
}

func withQuickAck(r io.Reader, c net.Conn) io.Reader {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return r
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return r
	}
	q := &quickAckReader{r: r, rc: rc}
	q.arm()
	return q
}

func (q *quickAckReader) arm() {
	_ = q.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (q *quickAckReader) Read(p []byte) (int, error) {
	n, err := q.r.Read(p)
	q.arm()
	return n, err
}
