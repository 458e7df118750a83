package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// relayConfig is what a benchmark varies in the relay's YAML config;
// everything else is the relay's default.
type relayConfig struct {
	DataDir     string
	SLSEndpoint string // the emulator's Endpoint()
	SLSAddr     string // the emulator's Addr()
	Logstore    string
	Group       string // consumer group (a fresh one per run reads from the beginning)
	Compression string // pull compression; "" = default (lz4)
	HECURL      string
	Ack         bool
	DrainOnly   bool
	MetricsAddr string
	// MaxBackoff caps the sink's retry backoff (default 30s): the drain
	// benchmark sets it so that the SIEM's return is noticed within a second.
	MaxBackoff string
	SpoolMax   string // spool.max_bytes; "" = default (8GiB)
	// SegmentBytes is spool.segment_bytes ("" = default); SinkSpool the
	// sink's spool: mapping, e.g. "{retain: 24h}" (the archive).
	SegmentBytes, SinkSpool string
	// ShutdownTimeout, when set, bounds a stop with the SIEM down (the
	// default 30s lets a send in flight retry that long first).
	ShutdownTimeout string
	// Extra is appended to the sink's hec: mapping and Source to the
	// source's (experiments from -hec-extra / -source-extra).
	HECExtra, SourceExtra []string
}

// write renders the config into dir/name.yaml and returns its path.
//
// heartbeat_interval is 1s instead of the default 20s: the emulator hands a
// new consumer one shard with its first heartbeat and the others with the
// next one, so with 20s seven of eight shards would idle for the first
// 20 s of a 10 s benchmark. It does not touch the data path.
func (c relayConfig) write(dir, name string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nlog: {level: info, format: json}\n", c.DataDir)
	if c.MetricsAddr != "" {
		fmt.Fprintf(&b, "metrics: {listen: %q}\n", c.MetricsAddr)
	}
	if c.DrainOnly {
		b.WriteString("drain_only: true\n")
	}
	if c.ShutdownTimeout != "" {
		fmt.Fprintf(&b, "shutdown_timeout: %s\n", c.ShutdownTimeout)
	}
	fmt.Fprintf(&b, "sls:\n  endpoint: %s\n  connect_to: %s\n  access_key_id: %s\n  access_key_secret: %s\n",
		c.SLSEndpoint, c.SLSAddr, benchAKID, benchAKSec)
	if !c.DrainOnly {
		fmt.Fprintf(&b, "sources:\n  - project: %s\n    logstore: %s\n    consumer_group: %s\n    heartbeat_interval: 1s\n",
			benchProject, c.Logstore, c.Group)
		if c.Compression != "" {
			fmt.Fprintf(&b, "    compression: %s\n", c.Compression)
		}
		for _, kv := range c.SourceExtra {
			fmt.Fprintf(&b, "    %s\n", kv)
		}
	}
	switch {
	case c.SpoolMax != "" && c.SegmentBytes != "":
		fmt.Fprintf(&b, "spool: {max_bytes: %s, segment_bytes: %s}\n", c.SpoolMax, c.SegmentBytes)
	case c.SpoolMax != "":
		fmt.Fprintf(&b, "spool: {max_bytes: %s}\n", c.SpoolMax)
	case c.SegmentBytes != "":
		fmt.Fprintf(&b, "spool: {segment_bytes: %s}\n", c.SegmentBytes)
	}
	fmt.Fprintf(&b, "sinks:\n  - name: hec\n    type: hec\n")
	if c.SinkSpool != "" {
		fmt.Fprintf(&b, "    spool: %s\n", c.SinkSpool)
	}
	if c.MaxBackoff != "" {
		fmt.Fprintf(&b, "    retry: {max_backoff: %s}\n", c.MaxBackoff)
	}
	fmt.Fprintf(&b, "    hec:\n      url: %s\n      token: %s\n", c.HECURL, benchToken)
	if c.Ack {
		b.WriteString("      ack: {enabled: true}\n")
	}
	for _, kv := range c.HECExtra {
		fmt.Fprintf(&b, "      %s\n", kv)
	}
	path := filepath.Join(dir, name+".yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// relayEnv is added to every relay's environment (-relay-env).
var relayEnv []string

// relayProc is one `slsrelay run` subprocess, sampled from /proc.
type relayProc struct {
	cmd     *exec.Cmd
	log     string
	started time.Time
	done    chan struct{}
	waitErr error

	mu      sync.Mutex
	samples []sample
	quit    chan struct{}
	sampled chan struct{}
}

// sample is one reading of the relay's /proc files.
type sample struct {
	At  time.Duration // since start
	RSS int64         // VmRSS, bytes
	CPU time.Duration // user + system so far
}

// startRelay runs bin with the config, logging to logPath, and samples its
// RSS and CPU every period.
func startRelay(bin, cfg, logPath string, period time.Duration, extra ...string) (*relayProc, error) {
	return startProcess(bin, append([]string{"run", "--config", cfg}, extra...), logPath, period)
}

// startProcess runs the relay binary with args (a subcommand and its
// flags), sampling it like startRelay.
func startProcess(bin string, args []string, logPath string, period time.Duration) (*relayProc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), relayEnv...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &relayProc{cmd: cmd, log: logPath, started: time.Now(), done: make(chan struct{}),
		quit: make(chan struct{}), sampled: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	go p.sampleLoop(period)
	return p, nil
}

func (p *relayProc) pid() int { return p.cmd.Process.Pid }

func (p *relayProc) sampleLoop(period time.Duration) {
	defer close(p.sampled)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if s, err := readProc(p.pid()); err == nil {
			s.At = time.Since(p.started)
			p.mu.Lock()
			p.samples = append(p.samples, s)
			p.mu.Unlock()
		}
		select {
		case <-p.quit:
			return
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// Samples returns the readings so far.
func (p *relayProc) Samples() []sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sample(nil), p.samples...)
}

// exited reports whether the process has ended (and then its error).
func (p *relayProc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// procUsage is the relay's resource use at the end of a run.
type procUsage struct {
	CPU     time.Duration // user + system
	PeakRSS int64         // VmHWM (read just before the stop), bytes
}

// wait waits up to timeout for a process that ends by itself (replay) and
// returns its usage; a failed exit is an error.
func (p *relayProc) wait(timeout time.Duration) (procUsage, error) {
	var hwm int64
	if v, err := readStatus(p.pid(), "VmHWM:"); err == nil {
		hwm = v
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	close(p.quit)
	<-p.sampled
	if p.waitErr != nil {
		return procUsage{}, fmt.Errorf("exited: %v (log %s)\n%s", p.waitErr, p.log, tailFile(p.log, 20))
	}
	u := procUsage{PeakRSS: hwm}
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, s := range p.Samples() { // VmHWM may be gone once it exited
		u.PeakRSS = max(u.PeakRSS, s.RSS)
	}
	return u, nil
}

// stop sends SIGTERM, waits up to timeout, then SIGKILLs, and returns the
// rusage of the whole run. A relay that already died is an error.
func (p *relayProc) stop(timeout time.Duration) (procUsage, error) {
	var hwm int64
	if v, err := readStatus(p.pid(), "VmHWM:"); err == nil {
		hwm = v
	}
	close(p.quit)
	<-p.sampled
	if done, err := p.exited(); done {
		return procUsage{}, fmt.Errorf("relay exited during the run: %v (log %s)\n%s", err, p.log, tailFile(p.log, 20))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	u := procUsage{PeakRSS: hwm}
	if st := p.cmd.ProcessState; st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			u.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			// ru_maxrss only when VmHWM was unreadable: Linux carries the
			// parent's high-water RSS into a child's ru_maxrss at exec when
			// the child shared its memory until then (Go starts processes
			// with CLONE_VM|CLONE_VFORK), so it reports this bench
			// process's RSS whenever that is the larger (measured: relay
			// VmHWM 224 MiB, ru_maxrss 278 MiB).
			if u.PeakRSS == 0 {
				u.PeakRSS = ru.Maxrss * 1024
			}
		}
	}
	return u, nil
}

// kill ends the process at once (cleanup after a failure).
func (p *relayProc) kill() {
	if done, _ := p.exited(); done {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// cpuNow is the relay's user + system time so far.
func (p *relayProc) cpuNow() time.Duration {
	s, err := readProc(p.pid())
	if err != nil {
		return 0
	}
	return s.CPU
}

const clockTicks = 100 // USER_HZ on Linux

// readProc reads VmRSS and CPU time of pid.
func readProc(pid int) (sample, error) {
	var s sample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	s.RSS, err = readStatus(pid, "VmRSS:")
	return s, err
}

// readStatus returns a "kB" field of /proc/pid/status in bytes.
func readStatus(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// metric scrapes one unlabelled-or-single-series value from the relay's
// /metrics; ok is false when unreachable or absent.
func metric(addr, name string) (float64, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || len(line) <= len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}
