//go:build !linux

package deliver

import (
	"io"
	"net"
)

// withQuickAck is a no-op where TCP_QUICKACK does not exist.
func withQuickAck(r io.Reader, _ net.Conn) io.Reader { return r }
