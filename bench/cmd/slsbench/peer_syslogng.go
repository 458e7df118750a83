package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/deliver/hectest"
	"slsrelay/ingest/slstest"
)

// Benchmark 7: syslog-ng, a mature relay with a disk queue, moving the same
// events to the same receiver in the same run.
//
// syslog-ng comes from Debian's packages, unpacked (apt-get download +
// dpkg -x) rather than installed, because they conflict with rsyslog, which
// the tests need: syslog-ng-core and the libraries .ci/run unpacks, plus
// syslog-ng-mod-http for its http() destination (ensureSyslogNG). It runs
// as a subprocess (-F, its own config, pid, persist and control files in a
// temporary directory) and is always killed by PID at the end.
//
// It reads the end-to-end workload's logs (the same generators and seeds,
// so the same event ids) as JSON lines over TCP, one object of the log's
// contents a line (the relay's HEC "event" object; ~1 KB), with
// flags(no-parse) and flow control, and forwards each as {"event":<line>}
// with http() (1 MiB batches, two workers) through a reliable disk buffer
// to the HEC receiver benchmark 1 uses (ack off). The bench feeds it at
// full speed over peerConns connections; the run ends when every event id
// reached the receiver, and fails if one is missing.
//
// What differs from the relay's path, and in whose favour: syslog-ng posts
// uncompressed JSON (the relay gzips, which the same receiver then
// inflates), its events carry no time or indexed fields (less for the
// receiver to parse), and its reliable disk buffer writes every message to
// its queue file but never fsyncs it (the relay fsyncs every pull). All
// three favour syslog-ng.

func init() { benchFuncs["peer"] = (*bench).benchPeer }

const (
	// peerConns TCP connections feed syslog-ng, each a share of the shards
	// (1, 2 and 4 were tried: 2 and 4 alike, 1 about 20% slower).
	peerConns = 2
	// peerWorkers is http()'s workers(): concurrent requests, as in the
	// configuration known to move ~55,000 events/s here (4 was slower).
	peerWorkers = 2
	// peerQout is the reliable disk buffer's qout-size(): messages also kept
	// in memory so that they need not be read back from disk. 1000 is
	// syslog-ng's default; 100000 was ~25% faster but held 330 MiB RSS.
	peerQout = 1000
	// peerMemBuf is its mem-buf-size() in bytes (64 MiB made no difference).
	peerMemBuf = 1 << 20
)

const (
	// peerShards: the e2e logstore's shard count, whose generators the
	// input reproduces.
	peerShards = 8
)

// syslogNGPackages are unpacked into the root: what .ci/run unpacks plus
// the http() module.
var (
	syslogNGCore = []string{"syslog-ng-core", "libivykis0", "libnet1", "libpcre3", "libwrap0"}
	syslogNGHTTP = []string{"syslog-ng-mod-http"}
	// libPackages map a shared library that ldd cannot find to the Debian
	// package that ships it.
	libPackages = map[string]string{"libcurl.so.4": "libcurl4", "libivykis.so.0": "libivykis0",
		"libnet.so.1": "libnet1", "libpcre.so.3": "libpcre3", "libwrap.so.0": "libwrap0"}
)

// syslogNGRoot is -syslog-ng-root, else $SYSLOG_NG_ROOT, else the first
// .cache/syslog-ng/root found from the working directory upwards (.ci/run
// unpacks it in the relay's module root, one level above bench/), else
// relative to the working directory.
func (b *bench) syslogNGRoot() string {
	if b.opts.syslogNGRoot != "" {
		return b.opts.syslogNGRoot
	}
	if r := os.Getenv("SYSLOG_NG_ROOT"); r != "" {
		return r
	}
	dir, _ := os.Getwd()
	for d := dir; d != "/" && d != "." && d != ""; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ".cache", "syslog-ng", "root")); err == nil {
			return filepath.Join(d, ".cache", "syslog-ng", "root")
		}
	}
	return filepath.Join(".cache", "syslog-ng", "root")
}

// syslogNG is an unpacked syslog-ng.
type syslogNG struct {
	root      string
	bin       string
	moduleDir string // usr/lib/syslog-ng/<version>
	version   string // e.g. 3.38, for @version
	ldPath    string
}

func (s syslogNG) env() []string { return append(os.Environ(), "LD_LIBRARY_PATH="+s.ldPath) }

func findSyslogNG(root string) (syslogNG, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return syslogNG{}, err
	}
	s := syslogNG{root: root, bin: filepath.Join(root, "usr/sbin/syslog-ng"),
		ldPath: strings.Join([]string{filepath.Join(root, "usr/lib/x86_64-linux-gnu"), filepath.Join(root, "lib/x86_64-linux-gnu"),
			filepath.Join(root, "usr/lib/syslog-ng")}, ":")}
	if _, err := os.Stat(s.bin); err != nil {
		return s, fmt.Errorf("no syslog-ng binary: %w", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "usr/lib/syslog-ng/[0-9]*.[0-9]*"))
	sort.Strings(dirs)
	if len(dirs) == 0 {
		return s, fmt.Errorf("no module directory under %s", filepath.Join(root, "usr/lib/syslog-ng"))
	}
	s.moduleDir = dirs[len(dirs)-1]
	s.version = filepath.Base(s.moduleDir)
	return s, nil
}

func (s syslogNG) hasHTTP() bool {
	_, err := os.Stat(filepath.Join(s.moduleDir, "libhttp.so"))
	return err == nil
}

// ensureSyslogNG returns the syslog-ng unpacked at root, first unpacking
// (apt-get download + dpkg -x into root, the .debs kept beside it in
// ../debs) whatever of syslog-ng-core, its libraries and
// syslog-ng-mod-http is missing, and the libraries ldd cannot resolve.
func ensureSyslogNG(root string, logf func(string, ...any)) (syslogNG, error) {
	s, err := findSyslogNG(root)
	var pkgs []string
	if err != nil {
		pkgs = append(pkgs, syslogNGCore...)
	}
	if err != nil || !s.hasHTTP() {
		pkgs = append(pkgs, syslogNGHTTP...)
	}
	if len(pkgs) > 0 {
		logf("peer: unpacking %s into %s", strings.Join(pkgs, " "), root)
		if err := unpackDebs(root, pkgs); err != nil {
			return s, err
		}
		if s, err = findSyslogNG(root); err != nil {
			return s, err
		}
		if !s.hasHTTP() {
			return s, fmt.Errorf("syslog-ng-mod-http unpacked but %s has no libhttp.so", s.moduleDir)
		}
	}
	// Libraries the binary or the http module lack (libcurl4 is usually
	// installed; the others come with the core set).
	missing, err := s.missingLibs()
	if err != nil {
		return s, err
	}
	if len(missing) > 0 {
		var more []string
		for _, lib := range missing {
			p, ok := libPackages[lib]
			if !ok {
				return s, fmt.Errorf("syslog-ng needs %s, which is not installed and not known to slsbench", lib)
			}
			more = append(more, p)
		}
		logf("peer: unpacking %s (for %s) into %s", strings.Join(more, " "), strings.Join(missing, " "), root)
		if err := unpackDebs(root, more); err != nil {
			return s, err
		}
		if missing, err = s.missingLibs(); err != nil {
			return s, err
		} else if len(missing) > 0 {
			return s, fmt.Errorf("syslog-ng still lacks %s after unpacking", strings.Join(missing, " "))
		}
	}
	return s, nil
}

// missingLibs runs ldd on the binary and the modules the benchmark loads,
// with the root's library path, and returns what it cannot find.
func (s syslogNG) missingLibs() ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, f := range []string{s.bin, filepath.Join(s.moduleDir, "libhttp.so"), filepath.Join(s.moduleDir, "libafsocket.so"),
		filepath.Join(s.moduleDir, "libdisk-buffer.so")} {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		cmd := exec.Command("ldd", f)
		cmd.Env = s.env()
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", f, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if name, _, ok := strings.Cut(strings.TrimSpace(line), " => not found"); ok && !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// unpackDebs downloads pkgs with apt-get download into root/../debs and
// extracts each with dpkg -x into root.
func unpackDebs(root string, pkgs []string) error {
	for _, tool := range []string{"apt-get", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("cannot unpack syslog-ng: %s not found", tool)
		}
	}
	debs := filepath.Join(filepath.Dir(filepath.Clean(root)), "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("apt-get", append([]string{"download", "-qq"}, pkgs...)...)
	cmd.Dir = debs
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", strings.Join(pkgs, " "), err, strings.TrimSpace(string(out)))
	}
	for _, p := range pkgs {
		files, _ := filepath.Glob(filepath.Join(debs, p+"_*.deb"))
		if len(files) == 0 {
			return fmt.Errorf("apt-get download %s left no .deb in %s", p, debs)
		}
		sort.Strings(files)
		f := files[len(files)-1]
		if out, err := exec.Command("dpkg", "-x", f, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg -x %s: %w\n%s", f, err, out)
		}
	}
	return nil
}

// peerInput is the workload rendered as JSON lines, one file per shard.
type peerInput struct {
	files  []string
	events int
	bytes  int64
}

// writePeerInput renders the end-to-end workload (events logs over
// peerShards shards, as loadLogstore generates them) into dir: one JSON
// object of each log's contents per line, keys and values as the relay's
// HEC sink puts them in "event".
func writePeerInput(dir string, events int, seed int64) (peerInput, error) {
	in := peerInput{events: events}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return in, err
	}
	counts := perShardCounts(events, peerShards)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 2)
	)
	in.files = make([]string, peerShards)
	for sh := 0; sh < peerShards; sh++ {
		in.files[sh] = filepath.Join(dir, fmt.Sprintf("shard-%d.jsonl", sh))
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			n, err := writeShardLines(in.files[sh], counts[sh], genSeed(seed, sh))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			in.bytes += n
		}()
	}
	wg.Wait()
	return in, errors.Join(errs...)
}

func writeShardLines(path string, count int, seed int64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := slstest.NewGenerator(slstest.KindAudit, seed)
	var n int64
	var line []byte
	for done := 0; done < count; {
		k := min(perGroup, count-done)
		lg := g.LogGroup(k)
		for _, l := range lg.Logs {
			line = appendContentsJSON(line[:0], l)
			line = append(line, '\n')
			w.Write(line)
			n += int64(len(line))
		}
		done += k
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return n, err
	}
	return n, f.Close()
}

// appendContentsJSON appends {"k1":"v1",...}: the log's contents in order.
func appendContentsJSON(b []byte, l *sls.Log) []byte {
	b = append(b, '{')
	for i, c := range l.Contents {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, c.GetKey())
		b = append(b, ':')
		b = appendJSONString(b, c.GetValue())
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func (b *bench) benchPeer(ctx context.Context, rep *report) error {
	sng, err := ensureSyslogNG(b.syslogNGRoot(), b.logf)
	if err != nil {
		rep.peerErr = fmt.Sprintf("syslog-ng could not be obtained: %v", err)
		b.logf("peer: not measured: %s", rep.peerErr)
		return nil
	}
	dir := filepath.Join(b.work, "peer-input")
	defer os.RemoveAll(dir)
	t0 := time.Now()
	in, err := writePeerInput(dir, b.opts.events, b.opts.seed)
	if err != nil {
		return fmt.Errorf("peer input: %w", err)
	}
	b.logf("peer: syslog-ng %s from %s; input %d events, %.1f MB of JSON lines (%.0f B/line) written in %s",
		sng.version, sng.root, in.events, float64(in.bytes)/1e6, float64(in.bytes)/float64(in.events), time.Since(t0).Round(time.Millisecond))
	for i := 0; i < b.opts.runs; i++ {
		r, err := b.runPeer(ctx, sng, in, i)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			rep.peerErr = fmt.Sprintf("run %d failed: %v", i+1, err)
			b.logf("peer: %s", rep.peerErr)
			return nil
		}
		b.logf("peer run %d: syslog-ng %d events in %s: %.0f events/s, %.1f MB/s of input, %.1f CPU s/GB, peak RSS %.0f MiB, dups %d",
			i+1, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerSec, float64(r.RawBytes)/1e6/r.Elapsed.Seconds(),
			r.CPU.Seconds()/(float64(r.RawBytes)/1e9), mib(r.PeakRSSBytes), r.Dups)
		rep.peer = append(rep.peer, r)
	}
	return nil
}

// syslogNGConfig renders the configuration: a TCP source of JSON lines,
// http() to the HEC receiver through a reliable disk buffer.
func syslogNGConfig(version, listen, hecURL, bufDir string) string {
	host, port, _ := net.SplitHostPort(listen)
	var c strings.Builder
	fmt.Fprintf(&c, "@version: %s\n", version)
	c.WriteString("options { stats-freq(0); threaded(yes); log-msg-size(65536); keep-hostname(yes); use-dns(no); dns-cache(no); };\n")
	fmt.Fprintf(&c, `source s_json { network(ip(%q) port(%s) transport("tcp") flags(no-parse) max-connections(%d) log-iw-size(%d) log-fetch-limit(1000)); };`+"\n",
		host, port, peerConns, peerConns*10000)
	fmt.Fprintf(&c, `destination d_hec { http(
    url(%q)
    method("POST")
    user-agent("syslog-ng")
    headers("Authorization: Splunk %s", "Content-Type: application/json")
    body('{"event":${MSG}}')
    delimiter("\n")
    batch-lines(10000)
    batch-bytes(1048576)
    batch-timeout(100)
    workers(%d)
    timeout(60)
    disk-buffer(reliable(yes) dir(%q) disk-buf-size(1073741824) mem-buf-size(%d) qout-size(%d))
); };
`, hecURL+hectest.PathEvent, benchToken, peerWorkers, bufDir, peerMemBuf, peerQout)
	c.WriteString("log { source(s_json); destination(d_hec); flags(flow-control); };\n")
	return c.String()
}

// startSyslogNG writes the config into dir and runs syslog-ng in the
// foreground, sampled like the relay; the caller kills it by PID.
func startSyslogNG(sng syslogNG, dir, listen, hecURL string) (*relayProc, error) {
	bufDir := filepath.Join(dir, "buffer")
	if err := os.MkdirAll(bufDir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "syslog-ng.conf")
	if err := os.WriteFile(conf, []byte(syslogNGConfig(sng.version, listen, hecURL, bufDir)), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "syslog-ng.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(sng.bin, "-F", "--no-caps", "-e", "-f", conf,
		"-p", filepath.Join(dir, "syslog-ng.pid"), "-R", filepath.Join(dir, "syslog-ng.persist"),
		"-c", filepath.Join(dir, "syslog-ng.ctl"), "--module-path="+sng.moduleDir)
	cmd.Dir = dir
	cmd.Env = sng.env()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start syslog-ng: %w", err)
	}
	p := &relayProc{cmd: cmd, log: logPath, started: time.Now(), done: make(chan struct{}),
		quit: make(chan struct{}), sampled: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	go p.sampleLoop(250 * time.Millisecond)
	return p, nil
}

// runPeer starts syslog-ng, feeds it the input at full speed and waits
// until every event id reached the receiver.
func (b *bench) runPeer(ctx context.Context, sng syslogNG, in peerInput, run int) (peerFigures, error) {
	var res peerFigures
	tr := newTracker()
	hec, err := newReceiver(tr, false)
	if err != nil {
		return res, err
	}
	defer hec.Close()
	dir := filepath.Join(b.work, fmt.Sprintf("peer-%d", run))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	listen, err := freeAddr()
	if err != nil {
		return res, err
	}
	p, err := startSyslogNG(sng, dir, listen, hec.URL())
	if err != nil {
		return res, err
	}
	defer p.kill()
	// Connect once it listens.
	deadline := time.Now().Add(30 * time.Second)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < peerConns {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			conns = append(conns, c)
			continue
		}
		if done, werr := p.exited(); done {
			return res, fmt.Errorf("syslog-ng exited at start: %v\n%s", werr, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("syslog-ng does not listen on %s: %v\n%s", listen, err, tailFile(p.log, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t0 := time.Now()
	feedErr := make(chan error, len(conns))
	for i, c := range conns {
		var files []string
		for sh := i; sh < len(in.files); sh += len(conns) {
			files = append(files, in.files[sh])
		}
		go func() { feedErr <- feed(c, files) }()
	}
	timeout := b.timeout(in.events)
	fed := 0
	for {
		select {
		case err := <-feedErr:
			if err != nil {
				return res, fmt.Errorf("feeding syslog-ng: %w\n%s", err, tailFile(p.log, 20))
			}
			fed++
		default:
		}
		if u, _, _ := tr.counts(); u >= in.events && fed == len(conns) {
			break
		}
		if done, err := p.exited(); done {
			u, _, _ := tr.counts()
			return res, fmt.Errorf("syslog-ng exited with %d of %d events delivered: %v\n%s", u, in.events, err, tailFile(p.log, 20))
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if time.Since(t0) > timeout {
			u, _, bad := tr.counts()
			return res, fmt.Errorf("only %d of %d events arrived within %s (%d without an id); syslog-ng log %s:\n%s",
				u, in.events, timeout, bad, p.log, tailFile(p.log, 10))
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, last := tr.span()
	u, err := p.stop(30 * time.Second)
	if err != nil {
		return res, err
	}
	if miss := tr.missing(b.opts.seed, perShardCounts(in.events, peerShards)); miss != 0 {
		return res, fmt.Errorf("syslog-ng lost %d events", miss)
	}
	unique, dups, _ := tr.counts()
	res.Events, res.Dups = unique, dups
	res.Elapsed = last.Sub(t0)
	res.EventsPerSec = float64(unique) / res.Elapsed.Seconds()
	res.RawBytes = in.bytes
	res.CPU, res.PeakRSSBytes = u.CPU, u.PeakRSS
	return res, nil
}

// feed sends the files over c (sendfile) and half-closes it.
func feed(c net.Conn, files []string) error {
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		_, err = io.Copy(c, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}
