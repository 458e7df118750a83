package syslogtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SyslogNGOptions choose syslog-ng's sources, each on its own loopback
// port: network() sources for RFC 5424 over TCP (newline framing,
// flags(syslog-protocol)), RFC 3164 over TCP, the same two over TLS
// (RFC5424TLS, RFC3164TLS: network(transport("tls")), newline framing) and
// RFC 5424 over UDP; and TLS, RFC 5424 over TLS with octet counting through
// the syslog() driver (RFC 5425).
type SyslogNGOptions struct {
	RFC5424, RFC3164, TLS, UDP bool
	RFC5424TLS, RFC3164TLS     bool
	// RequireClientCert: the TLS sources demand a certificate signed by CAFile.
	RequireClientCert bool
	// The TLS sources' CA, certificate and key (see NewCerts).
	CAFile, CertFile, KeyFile string
}

// SyslogNG is a running syslog-ng with its source addresses ("" when off).
type SyslogNG struct {
	*Receiver
	RFC5424Addr, RFC3164Addr, TLSAddr, UDPAddr string
	RFC5424TLSAddr, RFC3164TLSAddr             string
}

// SyslogNGRoot is where .ci/run unpacks syslog-ng (dpkg -x of syslog-ng-core
// and the libraries it lacks): $SYSLOG_NG_ROOT, else .cache/syslog-ng/root
// in the module's root directory.
func SyslogNGRoot(t testing.TB) string {
	t.Helper()
	root := os.Getenv("SYSLOG_NG_ROOT")
	if root == "" {
		dir, _ := os.Getwd()
		for dir != "/" && dir != "." {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				root = filepath.Join(dir, ".cache", "syslog-ng", "root")
				break
			}
			dir = filepath.Dir(dir)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr", "sbin", "syslog-ng")); root == "" || err != nil {
		missing(t, fmt.Sprintf("syslog-ng not unpacked at %q (set SYSLOG_NG_ROOT or run .ci/run)", root))
	}
	return root
}

// StartSyslogNG writes a configuration into a temporary directory and runs
// syslog-ng -F --no-caps from SyslogNGRoot with its own pid, persist and
// control files; it is stopped by PID at cleanup.
func StartSyslogNG(t testing.TB, o SyslogNGOptions) *SyslogNG {
	t.Helper()
	root := SyslogNGRoot(t)
	dir := t.TempDir()
	r := &SyslogNG{Receiver: &Receiver{t: t, dir: dir, out: filepath.Join(dir, "out.jsonl"), name: "syslog-ng"}}
	var c strings.Builder
	c.WriteString("@version: 3.38\noptions { keep-hostname(yes); stats-freq(0); log-msg-size(65536); threaded(yes); };\n")
	var sources []string
	src := func(name, driver string) {
		fmt.Fprintf(&c, "source %s { %s; };\n", name, driver)
		sources = append(sources, name)
	}
	if o.RFC5424 {
		p := freePort(t)
		r.RFC5424Addr = addr(p)
		r.ready = append(r.ready, r.RFC5424Addr)
		src("s_rfc5424", fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("tcp") flags(syslog-protocol) log-iw-size(100000) max-connections(100))`, p))
	}
	if o.RFC3164 {
		p := freePort(t)
		r.RFC3164Addr = addr(p)
		r.ready = append(r.ready, r.RFC3164Addr)
		src("s_rfc3164", fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("tcp") log-iw-size(100000) max-connections(100))`, p))
	}
	if o.UDP {
		p := freePort(t)
		r.UDPAddr = addr(p)
		src("s_udp", fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("udp") flags(syslog-protocol))`, p))
	}
	var tlsOpts string
	if o.TLS || o.RFC5424TLS || o.RFC3164TLS {
		verify := "optional-untrusted"
		if o.RequireClientCert {
			verify = "required-trusted"
		}
		tlsOpts = fmt.Sprintf(`tls(key-file(%q) cert-file(%q) ca-file(%q) peer-verify(%s))`, o.KeyFile, o.CertFile, o.CAFile, verify)
	}
	if o.TLS {
		p := freePort(t)
		r.TLSAddr = addr(p)
		r.ready = append(r.ready, r.TLSAddr)
		src("s_tls", fmt.Sprintf(`syslog(ip("127.0.0.1") port(%d) transport("tls") %s log-iw-size(100000))`, p, tlsOpts))
	}
	if o.RFC5424TLS {
		p := freePort(t)
		r.RFC5424TLSAddr = addr(p)
		r.ready = append(r.ready, r.RFC5424TLSAddr)
		src("s_rfc5424_tls", fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("tls") %s flags(syslog-protocol) log-iw-size(100000) max-connections(100))`, p, tlsOpts))
	}
	if o.RFC3164TLS {
		p := freePort(t)
		r.RFC3164TLSAddr = addr(p)
		r.ready = append(r.ready, r.RFC3164TLSAddr)
		src("s_rfc3164_tls", fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("tls") %s log-iw-size(100000) max-connections(100))`, p, tlsOpts))
	}
	if len(r.ready) == 0 { // something to wait for
		p := freePort(t)
		r.ready = append(r.ready, addr(p))
		src("s_ready", fmt.Sprintf(`network(ip("127.0.0.1") port(%d) transport("tcp"))`, p))
	}
	fmt.Fprintf(&c, "destination d { file(%q template(\"$(format-json --pair input=$SOURCE --pair pri=$PRI --pair host=$HOST --pair app=$PROGRAM --pair procid=$PID --pair msgid=$MSGID --pair sd=$SDATA --pair msg=$MSG)\\n\") flush-lines(1)); };\n", r.out)
	for _, s := range sources {
		fmt.Fprintf(&c, "log { source(%s); destination(d); };\n", s)
	}
	conf := filepath.Join(dir, "syslog-ng.conf")
	writeFile(t, conf, c.String())
	lib := strings.Join([]string{filepath.Join(root, "usr/lib/x86_64-linux-gnu"), filepath.Join(root, "lib/x86_64-linux-gnu"),
		filepath.Join(root, "usr/lib/syslog-ng")}, ":")
	r.env = []string{"LD_LIBRARY_PATH=" + lib}
	r.argv = []string{filepath.Join(root, "usr/sbin/syslog-ng"), "-F", "--no-caps", "-e", "-f", conf,
		"-p", filepath.Join(dir, "syslog-ng.pid"), "-R", filepath.Join(dir, "syslog-ng.persist"),
		"-c", filepath.Join(dir, "syslog-ng.ctl"), "--module-path=" + filepath.Join(root, "usr/lib/syslog-ng/3.38")}
	r.start()
	t.Cleanup(r.Stop)
	return r
}
