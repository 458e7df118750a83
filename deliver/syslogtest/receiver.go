// Package syslogtest starts real syslog receivers (rsyslogd, syslog-ng) on
// loopback ports with configurations generated into a test's temporary
// directory, reads back what they wrote, and provides an in-process fake
// receiver (Server, server.go) with fault switches for unit tests.
//
// Every process is started by the test, remembered by PID and stopped in
// t.Cleanup; the system's syslog service is never touched. When a binary is
// missing the test is skipped with the reason, unless CI=true, where it fails
// (.ci/run installs rsyslog and unpacks syslog-ng into .cache/syslog-ng).
package syslogtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Record is one message as a receiver stored it.
type Record struct {
	// Input names the receiver's input (rsyslog: imudp, imtcp, imrelp;
	// syslog-ng: the source name).
	Input  string `json:"input"`
	Pri    string `json:"pri"`
	Host   string `json:"host"`
	App    string `json:"app"`
	ProcID string `json:"procid"`
	MsgID  string `json:"msgid"`
	// SD is the structured data as received ("-" or "[id k=\"v\"]…").
	SD  string `json:"sd"`
	Msg string `json:"msg"`
}

// Receiver is a running (or stopped) real receiver.
type Receiver struct {
	t       testing.TB
	dir     string
	out     string
	name    string
	argv    []string
	env     []string
	ready   []string // TCP addresses that accept once it runs
	cmd     *exec.Cmd
	exited  chan struct{}
	started int

	linesMu  sync.Mutex
	linesOff int64 // bytes of out already counted by Lines
	lines    int
}

// missing skips the test (or fails it under CI=true) for a missing binary.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: .ci/run must install it)", what)
	}
	t.Skipf("%s; skipping (run .ci/run as root to install it)", what)
}

// freePort returns a loopback port free at the time of the call.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func (r *Receiver) start() {
	t := r.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(r.dir, r.name+".stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", r.name, err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	r.started++
	go func(c *exec.Cmd, ch chan struct{}) { _ = c.Wait(); close(ch) }(cmd, r.exited)
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range r.ready {
		for {
			select {
			case <-r.exited:
				t.Fatalf("%s exited at start:\n%s", r.name, r.Log())
			default:
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not listen on %s:\n%s", r.name, a, r.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop ends the receiver gracefully (SIGTERM to its PID, SIGKILL after 10 s)
// and waits for it to exit.
func (r *Receiver) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// Restart stops the receiver and starts it again on the same ports, appending
// to the same output file.
func (r *Receiver) Restart() {
	r.t.Helper()
	r.Stop()
	r.start()
}

// PID is the receiver's process ID (0 when stopped).
func (r *Receiver) PID() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Log returns what the receiver printed on stdout and stderr.
func (r *Receiver) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, r.name+".stderr"))
	return string(b)
}

// Records parses the output file (one JSON object per line). A last line
// still being written is left out.
func (r *Receiver) Records() []Record {
	b, err := os.ReadFile(r.out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue
		}
		out = append(out, rec)
	}
	return out
}

// Lines returns how many complete lines (records) the output file holds. It
// reads only what was appended since the previous call, so it is cheap to
// poll, even while a benchmark's timer runs.
func (r *Receiver) Lines() int {
	r.linesMu.Lock()
	defer r.linesMu.Unlock()
	f, err := os.Open(r.out)
	if errors.Is(err, os.ErrNotExist) {
		return r.lines
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(r.linesOff, io.SeekStart); err != nil {
		r.t.Fatal(err)
	}
	var buf [64 << 10]byte
	for {
		n, err := f.Read(buf[:])
		r.linesOff += int64(n)
		r.lines += bytes.Count(buf[:n], []byte{'\n'})
		if err == io.EOF {
			return r.lines
		}
		if err != nil {
			r.t.Fatal(err)
		}
	}
}

// WaitLines polls Lines every millisecond until it reaches n or the timeout
// passes, and returns it.
func (r *Receiver) WaitLines(n int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		got := r.Lines()
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitRecords polls until at least n records arrived or the timeout passes,
// and returns them.
func (r *Receiver) WaitRecords(n int, timeout time.Duration) []Record {
	deadline := time.Now().Add(timeout)
	for {
		recs := r.Records()
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Quiet polls until the record count stops changing for settle, and returns
// the records.
func (r *Receiver) Quiet(settle, timeout time.Duration) []Record {
	deadline := time.Now().Add(timeout)
	last, since := -1, time.Now()
	for {
		recs := r.Records()
		if len(recs) != last {
			last, since = len(recs), time.Now()
		} else if time.Since(since) >= settle || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *Receiver) String() string { return fmt.Sprintf("%s(pid %d)", r.name, r.PID()) }
