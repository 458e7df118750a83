package main

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (Linux /dev/ptmx).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// On a terminal the auto format is coloured text, unless NO_COLOR is set.
func TestLogger_TerminalColoursAndNoColor(t *testing.T) {
	for _, tc := range []struct {
		noColor bool
		ansi    bool
	}{{false, true}, {true, false}} {
		if tc.noColor {
			t.Setenv("NO_COLOR", "1")
		} else {
			os.Unsetenv("NO_COLOR")
		}
		master, slave := openPTY(t)
		newLogger(slave, LogConfig{Level: "info", Format: "auto"}).Warn("hello", "d", time.Second)
		buf := make([]byte, 4096)
		master.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("read terminal: %v", err)
		}
		out := buf[:n]
		if got := bytes.Contains(out, []byte("\x1b[")); got != tc.ansi || !bytes.Contains(out, []byte("hello")) || bytes.HasPrefix(out, []byte("{")) {
			t.Errorf("NO_COLOR=%v: %q; want text, ANSI codes %v", tc.noColor, out, tc.ansi)
		}
	}
}
