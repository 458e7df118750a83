package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slsrelay/deliver/syslogtest"
)

const syslogBase = `data_dir: /tmp/x
sls: {endpoint: cn-hangzhou.log.aliyuncs.com, access_key_id: id, access_key_secret: s}
sources: [{project: p, logstore: l}]
sinks:
  - name: siem
    type: syslog
    syslog:
`

func TestSyslogConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"missing address", "      network: tcp\n", "sinks[0].syslog.address: is required"},
		{"bad address", "      address: nohost\n", `sinks[0].syslog.address: "nohost" is not host:port`},
		{"network", "      address: h:514\n      network: sctp\n", `sinks[0].syslog.network: "sctp" is not one of`},
		{"framing", "      address: h:514\n      framing: lf\n", `sinks[0].syslog.framing: "lf" is not one of`},
		{"payload", "      address: h:514\n      payload: xml\n", `sinks[0].syslog.payload: "xml" is not one of`},
		{"leef delimiter", "      address: h:514\n      leef: {delimiter: '=='}\n", "sinks[0].syslog.leef.delimiter:"},
		{"severity map", "      address: h:514\n      severity_map: {high: 9}\n", "sinks[0].syslog.severity_map.high: 9 is outside 0..7"},
		{"oversize", "      address: h:514\n      oversize: drop\n", `sinks[0].syslog.oversize: "drop" is not one of`},
		{"use_tls on tcp", "      address: h:514\n      use_tls: true\n", "sinks[0].syslog.use_tls: applies to network relp only"},
		{"tls block without tls", "      address: h:514\n      tls: {server_name: x}\n", "sinks[0].syslog.tls: is set but network"},
		{"ca file", "      address: h:6514\n      network: tls\n      tls: {ca_file: /nonexistent/ca.pem}\n", `sinks[0].syslog.tls.ca_file: cannot read "/nonexistent/ca.pem"`},
		{"facility", "      address: h:514\n      facility: local9\n", `sinks[0].syslog: Facility "local9": want a facility name or 0..23`},
		{"template", "      address: h:514\n      hostname: '{{nope}}'\n", `sinks[0].syslog: Hostname: template "{{nope}}"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(syslogBase+tc.yaml), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a problem containing %q", err, tc.want)
			}
		})
	}
}

func TestSyslogConfig_Build(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"defaults", "      address: 127.0.0.1:514\n"},
		{"qradar leef tls", "      address: qradar.example.com:6514\n      network: tls\n      payload: leef\n      leef: {vendor: Alibaba, product: SLS, event_id: '{{field:action|topic}}', delimiter: '^'}\n"},
		{"arcsight cef tcp", "      address: arcsight:514\n      framing: non-transparent\n      payload: cef\n      cef: {vendor: Alibaba, product: '{{logstore}}', severity: '5', name: '{{field:action}}'}\n      field_map: {src_ip: src}\n"},
		{"rsyslog relp", "      address: 127.0.0.1:2514\n      network: relp\n      relp: {window: 256, ack_timeout: 10s}\n      severity: '{{field:level}}'\n      severity_map: {high: 2}\n"},
		{"udp rfc3164 kv", "      address: 127.0.0.1:514\n      network: udp\n      format: rfc3164\n      payload: kv\n      payload_meta: true\n      oversize: dead-letter\n      max_message_bytes: 1KiB\n"},
		{"tcp oversize dead_letter", "      address: 127.0.0.1:514\n      oversize: dead_letter\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(syslogBase+tc.yaml), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			s, err := newSink(c.Sinks[0], slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if s.Name() != "siem" {
				t.Errorf("name %q", s.Name())
			}
			s.Close()
		})
	}
}

// TestSyslogConfig_Examples loads the syslog examples of docs/CONFIG.md from
// testdata/config/syslog-*.yaml, builds each sink, and checks that the
// documentation shows each file's sinks block verbatim, so neither drifts.
func TestSyslogConfig_Examples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	syslogtest.NewCerts(t, filepath.Dir(ca))
	env := map[string]string{"SLS_ACCESS_KEY_ID": "LTAIexample", "SLS_ACCESS_KEY_SECRET": "s3cret", "QRADAR_CA_FILE": ca}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		file, network, payload string
		check                  func(c *SyslogConfig) bool
	}{
		{"syslog-qradar.yaml", "tls", "leef", func(c *SyslogConfig) bool { return c.LEEF.Delimiter == "^" && c.TLS.CAFile == ca }},
		{"syslog-arcsight.yaml", "tcp", "cef", func(c *SyslogConfig) bool { return c.Framing == "non-transparent" && c.FieldMap["user"] == "suser" }},
		{"syslog-rsyslog-relp.yaml", "relp", "", func(c *SyslogConfig) bool { return c.RELP.Window == 256 && c.SeverityMap["high"] == 2 }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("../../testdata/config", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseConfig(bytes.NewReader(raw), lookup)
			if err != nil {
				t.Fatalf("the example does not parse: %v", err)
			}
			if len(c.Sinks) != 1 || c.Sinks[0].Syslog == nil {
				t.Fatalf("want one syslog sink, got %+v", c.Sinks)
			}
			sc := c.Sinks[0].Syslog
			if sc.Network != tc.network || sc.Payload != tc.payload || !tc.check(sc) {
				t.Errorf("parsed as %+v", sc)
			}
			s, err := newSink(c.Sinks[0], slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("build sink: %v", err)
			}
			s.Close()
			_, block, ok := strings.Cut(string(raw), "\nsinks:\n")
			if !ok || !strings.Contains(string(doc), "sinks:\n"+block) {
				t.Errorf("docs/CONFIG.md does not show the sinks block of testdata/config/%s verbatim:\nsinks:\n%s", tc.file, block)
			}
		})
	}
}
