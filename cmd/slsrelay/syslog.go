package main

import (
	"log/slog"
	"net"
	"strings"
	"time"

	"slsrelay/deliver"
)

// SyslogConfig configures a syslog sink (deliver.SyslogOptions). Empty
// fields take the defaults documented in docs/CONFIG.md.
type SyslogConfig struct {
	// Network: udp, tcp (default), tls or relp.
	Network string `yaml:"network"`
	Address string `yaml:"address"`
	// TLS enables TLS for relp (network tls always uses it); the tls block
	// carries the CA, client certificate and server name.
	TLS     TLSConfig `yaml:"tls"`
	UseTLS  bool      `yaml:"use_tls"`
	Framing string    `yaml:"framing"` // octet-counting (default) or non-transparent

	Format       string            `yaml:"format"`  // rfc5424 (default), rfc3164
	Payload      string            `yaml:"payload"` // json (default), kv, cef, leef
	Facility     string            `yaml:"facility"`
	Severity     string            `yaml:"severity"`
	SeverityMap  map[string]int    `yaml:"severity_map"`
	Hostname     string            `yaml:"hostname"`
	AppName      string            `yaml:"app_name"`
	ProcID       string            `yaml:"procid"`
	MsgID        string            `yaml:"msgid"`
	EnterpriseID int               `yaml:"enterprise_id"`
	BOM          bool              `yaml:"bom"`
	PayloadMeta  bool              `yaml:"payload_meta"`
	FieldMap     map[string]string `yaml:"field_map"`
	// SDParams are added to the [sls@PEN] structured data (rfc5424).
	SDParams map[string]string `yaml:"sd_params"`

	KV   SyslogKVConfig   `yaml:"kv"`
	CEF  SyslogCEFConfig  `yaml:"cef"`
	LEEF SyslogLEEFConfig `yaml:"leef"`

	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	Oversize        string   `yaml:"oversize"` // truncate (default), dead-letter (or dead_letter)

	DialTimeout  Duration         `yaml:"dial_timeout"`
	WriteTimeout Duration         `yaml:"write_timeout"`
	RELP         SyslogRELPConfig `yaml:"relp"`
}

// SyslogKVConfig shapes the kv payload.
type SyslogKVConfig struct {
	Separator string `yaml:"separator"`
	Assign    string `yaml:"assign"`
	Quote     string `yaml:"quote"` // auto, always, never
}

// SyslogCEFConfig holds the CEF header templates.
type SyslogCEFConfig struct {
	Vendor     string `yaml:"vendor"`
	Product    string `yaml:"product"`
	Version    string `yaml:"version"`
	EventClass string `yaml:"event_class"`
	Name       string `yaml:"name"`
	Severity   string `yaml:"severity"`
}

// SyslogLEEFConfig holds the LEEF header templates and delimiter.
type SyslogLEEFConfig struct {
	Vendor    string `yaml:"vendor"`
	Product   string `yaml:"product"`
	Version   string `yaml:"version"`
	EventID   string `yaml:"event_id"`
	Delimiter string `yaml:"delimiter"`
}

// SyslogRELPConfig tunes RELP.
type SyslogRELPConfig struct {
	Window     int      `yaml:"window"`
	AckTimeout Duration `yaml:"ack_timeout"`
}

func oneOfStr(s string, vals ...string) bool {
	for _, v := range vals {
		if s == v {
			return true
		}
	}
	return false
}

func (c *SyslogConfig) validate(path string, e *ConfigError) {
	before := len(e.Problems)
	if c.Address == "" {
		e.add(path+".address", "is required (host:port)")
	} else {
		checkHostPort(e, path+".address", c.Address)
	}
	if c.Network != "" && !oneOfStr(c.Network, "udp", "tcp", "tls", "relp") {
		e.add(path+".network", "%q is not one of udp, tcp, tls, relp", c.Network)
	}
	if c.UseTLS && c.Network != "relp" {
		e.add(path+".use_tls", "applies to network relp only (use network: tls for TLS over TCP)")
	}
	if c.Framing != "" && !oneOfStr(c.Framing, "octet-counting", "non-transparent") {
		e.add(path+".framing", "%q is not one of octet-counting, non-transparent", c.Framing)
	}
	if c.Format != "" && !oneOfStr(c.Format, "rfc5424", "rfc3164") {
		e.add(path+".format", "%q is not one of rfc5424, rfc3164", c.Format)
	}
	if c.Payload != "" && !oneOfStr(c.Payload, "json", "kv", "cef", "leef") {
		e.add(path+".payload", "%q is not one of json, kv, cef, leef", c.Payload)
	}
	if c.KV.Quote != "" && !oneOfStr(c.KV.Quote, "auto", "always", "never") {
		e.add(path+".kv.quote", "%q is not one of auto, always, never", c.KV.Quote)
	}
	if c.LEEF.Delimiter != "" {
		if _, err := deliver.ParseLEEFDelimiter(c.LEEF.Delimiter); err != nil {
			e.add(path+".leef.delimiter", "%v", err)
		}
	}
	for k, v := range c.SeverityMap {
		if v < 0 || v > 7 {
			e.add(path+".severity_map."+k, "%d is outside 0..7", v)
		}
	}
	if c.Oversize != "" && !oneOfStr(c.Oversize, "truncate", "dead-letter", "dead_letter") {
		e.add(path+".oversize", "%q is not one of truncate, dead-letter (or dead_letter)", c.Oversize)
	}
	if c.MaxMessageBytes < 0 || c.MaxMessageBytes > 0 && c.MaxMessageBytes < 92 {
		e.add(path+".max_message_bytes", "%s is below the minimum of 92 bytes", c.MaxMessageBytes)
	}
	if c.EnterpriseID < 0 {
		e.add(path+".enterprise_id", "must not be negative")
	}
	if c.DialTimeout < 0 {
		e.add(path+".dial_timeout", "must not be negative")
	}
	if c.WriteTimeout < 0 {
		e.add(path+".write_timeout", "must not be negative")
	}
	if c.RELP.Window < 0 || c.RELP.Window > 65536 {
		e.add(path+".relp.window", "%d is outside 0..65536", c.RELP.Window)
	}
	if c.RELP.AckTimeout < 0 {
		e.add(path+".relp.ack_timeout", "must not be negative")
	}
	tlsUsed := c.Network == "tls" || c.UseTLS
	if !tlsUsed && c.TLS != (TLSConfig{}) {
		e.add(path+".tls", "is set but network %q does not use TLS (network: tls, or relp with use_tls)", c.Network)
	}
	c.TLS.validate(path+".tls", e)
	// Templates, facility and severity: let the sink's own checks speak.
	if c.Address != "" {
		if _, _, err := net.SplitHostPort(c.Address); err == nil {
			o := c.options(SinkConfig{}, nil)
			o.CAFile, o.CertFile, o.KeyFile = "", "", "" // read by the sink; checked above
			o.InsecureSkipVerify = false
			if _, err := deliver.NewSyslog(o); err != nil && len(e.Problems) == before {
				for _, line := range strings.Split(err.Error(), "\n") {
					e.add(path, "%s", strings.TrimPrefix(line, "syslog: "))
				}
			}
		}
	}
}

func (c *SyslogConfig) options(s SinkConfig, log *slog.Logger) deliver.SyslogOptions {
	return deliver.SyslogOptions{
		Name: s.Name, Network: c.Network, Address: c.Address, TLS: c.UseTLS, Framing: c.Framing,
		Format: c.Format, Payload: c.Payload, Facility: c.Facility, Severity: c.Severity, SeverityMap: c.SeverityMap,
		Hostname: c.Hostname, AppName: c.AppName, ProcID: c.ProcID, MsgID: c.MsgID,
		EnterpriseID: c.EnterpriseID, BOM: c.BOM, PayloadMeta: c.PayloadMeta, FieldMap: c.FieldMap, SDParams: c.SDParams,
		KVSeparator: c.KV.Separator, KVAssign: c.KV.Assign, KVQuote: c.KV.Quote,
		CEFVendor: c.CEF.Vendor, CEFProduct: c.CEF.Product, CEFVersion: c.CEF.Version,
		CEFEventClass: c.CEF.EventClass, CEFName: c.CEF.Name, CEFSeverity: c.CEF.Severity,
		LEEFVendor: c.LEEF.Vendor, LEEFProduct: c.LEEF.Product, LEEFVersion: c.LEEF.Version,
		LEEFEventID: c.LEEF.EventID, LEEFDelimiter: c.LEEF.Delimiter,
		MaxMessageBytes: int(c.MaxMessageBytes), Oversize: c.Oversize,
		CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
		ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify,
		DialTimeout: time.Duration(c.DialTimeout), WriteTimeout: time.Duration(c.WriteTimeout),
		RELPWindow: c.RELP.Window, RELPAckTimeout: time.Duration(c.RELP.AckTimeout),
		Logger: log,
	}
}

func newSyslogSink(s SinkConfig, log *slog.Logger) (deliver.Sink, error) {
	return deliver.NewSyslog(s.Syslog.options(s, log))
}
