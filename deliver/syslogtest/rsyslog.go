package syslogtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RsyslogOptions choose rsyslogd's inputs; each chosen one gets a loopback
// port. TLS needs CertFile, KeyFile and CAFile (see NewCerts).
type RsyslogOptions struct {
	UDP, TCP, TLS, RELP bool
	// RELPTLS adds an imrelp input with tls="on" (gnutls; needs the
	// certificates).
	RELPTLS bool
	// RequireClientCert makes the TLS inputs demand a certificate signed by
	// CAFile (x509/certvalid, for imrelp tls.authMode="certvalid").
	RequireClientCert         bool
	CAFile, CertFile, KeyFile string
	// MaxMessageSize (default "64k").
	MaxMessageSize string
}

// Rsyslog is a running rsyslogd with its input addresses ("" when off).
type Rsyslog struct {
	*Receiver
	UDPAddr, TCPAddr, TLSAddr, RELPAddr, RELPTLSAddr string
}

// RsyslogBinary returns the path of rsyslogd, or skips (fails under CI=true).
func RsyslogBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("RSYSLOGD"), "/usr/sbin/rsyslogd"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	missing(t, "rsyslogd not found (apt-get install rsyslog rsyslog-relp rsyslog-gnutls)")
	return ""
}

func rsyslogModule(t testing.TB, name string) {
	t.Helper()
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog"} {
		if _, err := os.Stat(filepath.Join(dir, name+".so")); err == nil {
			return
		}
	}
	missing(t, "rsyslog module "+name+" not found (apt-get install rsyslog-relp rsyslog-gnutls)")
}

// StartRsyslog writes a configuration into a temporary directory and starts
// `rsyslogd -n -f conf -i pidfile` on it; it is stopped by PID at cleanup.
// Every input writes to one JSON-lines file (see Record).
func StartRsyslog(t testing.TB, o RsyslogOptions) *Rsyslog {
	t.Helper()
	bin := RsyslogBinary(t)
	if o.RELP || o.RELPTLS {
		rsyslogModule(t, "imrelp")
	}
	if o.TLS {
		rsyslogModule(t, "lmnsd_gtls")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	if o.MaxMessageSize == "" {
		o.MaxMessageSize = "64k"
	}
	r := &Rsyslog{Receiver: &Receiver{t: t, dir: dir, out: filepath.Join(dir, "out.jsonl"), name: "rsyslogd"}}
	var c strings.Builder
	fmt.Fprintf(&c, "global(workDirectory=%q maxMessageSize=%q)\n", filepath.Join(dir, "work"), o.MaxMessageSize)
	c.WriteString(`template(name="j" type="list" option.jsonf="on") {
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}
`)
	fmt.Fprintf(&c, "ruleset(name=\"out\") { action(type=\"omfile\" file=%q template=\"j\" asyncWriting=\"off\" flushOnTXEnd=\"on\") }\n", r.out)
	// A plain TCP input always exists: it tells when rsyslogd is up.
	c.WriteString("module(load=\"imtcp\" maxSessions=\"200\")\n")
	tcp := freePort(t)
	fmt.Fprintf(&c, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"out\")\n", tcp)
	r.ready = append(r.ready, addr(tcp))
	if o.TCP {
		r.TCPAddr = addr(tcp)
	}
	if o.UDP {
		p := freePort(t)
		c.WriteString("module(load=\"imudp\")\n")
		fmt.Fprintf(&c, "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"out\")\n", p)
		r.UDPAddr = addr(p)
	}
	if o.TLS {
		p := freePort(t)
		auth := "anon"
		if o.RequireClientCert {
			auth = "x509/certvalid"
		}
		fmt.Fprintf(&c, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"out\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=%q streamDriver.CAFile=%q streamDriver.CertFile=%q streamDriver.KeyFile=%q)\n",
			p, auth, o.CAFile, o.CertFile, o.KeyFile)
		r.TLSAddr = addr(p)
		r.ready = append(r.ready, r.TLSAddr)
	}
	if o.RELP || o.RELPTLS {
		c.WriteString("module(load=\"imrelp\")\n")
	}
	if o.RELPTLS {
		p := freePort(t)
		auth := ""
		if o.RequireClientCert {
			auth = ` tls.authMode="certvalid"`
		}
		fmt.Fprintf(&c, "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"out\" maxDataSize=%q tls=\"on\" tls.caCert=%q tls.myCert=%q tls.myPrivKey=%q%s)\n",
			p, o.MaxMessageSize, o.CAFile, o.CertFile, o.KeyFile, auth)
		r.RELPTLSAddr = addr(p)
		r.ready = append(r.ready, r.RELPTLSAddr)
	}
	if o.RELP {
		p := freePort(t)
		fmt.Fprintf(&c, "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"out\" maxDataSize=%q)\n", p, o.MaxMessageSize)
		r.RELPAddr = addr(p)
		r.ready = append(r.ready, r.RELPAddr)
	}
	conf := filepath.Join(dir, "rsyslog.conf")
	writeFile(t, conf, c.String())
	r.argv = []string{bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid")}
	r.start()
	t.Cleanup(r.Stop)
	return r
}
