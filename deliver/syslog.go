package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of SyslogOptions.
const (
	DefaultSyslogName            = "syslog"
	DefaultSyslogNetwork         = "tcp"
	DefaultSyslogFormat          = "rfc5424"
	DefaultSyslogPayload         = "json"
	DefaultSyslogFacility        = "user"
	DefaultSyslogSeverity        = "info"
	DefaultSyslogHostname        = "{{tag:__hostname__|source}}"
	DefaultSyslogAppName         = "slsrelay"
	DefaultSyslogEnterpriseID    = 32473 // the IANA example PEN (RFC 5612)
	DefaultSyslogUDPMaxBytes     = 2048
	DefaultSyslogStreamMaxBytes  = 64 << 10
	DefaultSyslogDialTimeout     = 10 * time.Second
	DefaultSyslogWriteTimeout    = 30 * time.Second
	DefaultRELPWindow            = 128
	DefaultRELPAckTimeout        = 30 * time.Second
	SyslogTruncationMarker       = "...[truncated]"
	syslogOversizeTruncate       = "truncate"
	syslogOversizeDeadLetter     = "dead-letter"
	syslogFramingOctetCounting   = "octet-counting"
	syslogFramingNonTransparent  = "non-transparent"
	defaultSyslogLivenessTimeout = time.Millisecond
)

// SyslogOptions configure a syslog sink. Zero values mean the documented
// defaults. See syslog_format.go for the wire formats.
type SyslogOptions struct {
	// Name of the sink in logs and metrics (default "syslog").
	Name string
	// Network is udp, tcp, tls or relp (default tcp). RELP is the only one
	// whose receiver acknowledges each message; see Send for what each
	// transport's success means.
	Network string
	// Address of the receiver, host:port. Required.
	Address string
	// TLS turns TLS on for relp (tls always uses it).
	TLS bool
	// Framing of tcp and tls: octet-counting (RFC 6587 3.4.1 and RFC 5425,
	// the default) or non-transparent (one message per line).
	Framing string

	// Format is rfc5424 (default) or rfc3164.
	Format string
	// Payload is json (default), kv, cef or leef.
	Payload string
	// Facility and Severity are templates (see hec_format.go) rendering a
	// name or number: "local4", "{{field:level}}". An unknown or empty value
	// gives the default (user, info). SeverityMap maps other rendered values
	// to a severity 0..7 first: {"high": 2}.
	Facility, Severity string
	SeverityMap        map[string]int
	// Header templates: Hostname (default "{{tag:__hostname__|source}}"),
	// AppName (default "slsrelay"), ProcID and MsgID (default empty: "-").
	// Use "-" for an explicit empty value.
	Hostname, AppName, ProcID, MsgID string
	// EnterpriseID is the number after '@' in the SD-IDs sls@… and
	// sls_tags@… (default 32473).
	EnterpriseID int
	// BOM starts RFC 5424 payloads with the UTF-8 byte order mark, as the RFC
	// recommends (default off: most SIEM parsers keep it as text).
	BOM bool
	// PayloadMeta adds sls_project, sls_logstore, sls_shard, sls_topic,
	// sls_source and sls_tag_* to the payload's fields (useful with rfc3164,
	// which has no structured data).
	PayloadMeta bool
	// FieldMap renames log fields in the payload: {"src_ip": "src"}.
	FieldMap map[string]string
	// SDParams are parameters added to every message's [sls@PEN] element
	// (rfc5424 only), sorted by name, e.g. replay=<job> so that a SIEM
	// tells replayed events from live ones.
	SDParams map[string]string
	// KV payload: KVSeparator between pairs (default " "), KVAssign between
	// key and value (default "="), KVQuote auto (default), always or never.
	KVSeparator, KVAssign, KVQuote string
	// CEF header templates (defaults: "Alibaba Cloud", "SLS", "1.0", "sls",
	// "sls log"); CEFSeverity must render 0..10 or Unknown, Low, Medium,
	// High, Very-High (default and fallback Unknown).
	CEFVendor, CEFProduct, CEFVersion, CEFEventClass, CEFName, CEFSeverity string
	// LEEF header templates (defaults "Alibaba Cloud", "SLS", "1.0", "sls")
	// and the attribute delimiter: one character, or "tab", "\t", "x09",
	// "^" and the like (default tab).
	LEEFVendor, LEEFProduct, LEEFVersion, LEEFEventID, LEEFDelimiter string

	// MaxMessageBytes caps one message, header included (default 2048 for
	// udp, 64 KiB otherwise). Oversize says what happens to a longer one:
	// truncate (default; cut on a UTF-8 boundary, ending with
	// SyslogTruncationMarker) or dead-letter (a Permanent error naming the
	// event; the loop dead-letters it).
	MaxMessageBytes int
	Oversize        string

	// TLS: CAFile (PEM bundle trusted instead of the system roots),
	// CertFile/KeyFile (client certificate for mTLS), ServerName (default
	// the host of Address). InsecureSkipVerify disables verification and
	// logs a warning.
	CAFile, CertFile, KeyFile, ServerName string
	InsecureSkipVerify                    bool

	// DialTimeout bounds connecting and the TLS handshake (default 10 s).
	DialTimeout time.Duration
	// WriteTimeout bounds every write to the socket (default 30 s); a
	// receiver that stops reading for longer is treated as gone.
	WriteTimeout time.Duration
	// RELPWindow is the number of RELP messages sent but not yet answered
	// (default 128). RELPAckTimeout: a connection whose oldest outstanding
	// message is not answered within it is dropped and the unanswered
	// messages sent again (default 30 s).
	RELPWindow     int
	RELPAckTimeout time.Duration

	// Retry paces reconnects and transient retries (zero: defaults).
	Retry RetryPolicy
	// Logger (default slog.Default()); a "sink" attribute is added.
	Logger *slog.Logger
	// RetryLogEvery rate-limits "retrying" warnings (default 10 s).
	RetryLogEvery time.Duration
}

// Syslog is a Sink writing syslog messages over UDP, TCP, TLS or RELP. Send
// calls are serialized; safe for concurrent use.
type Syslog struct {
	opts     SyslogOptions
	log      *slog.Logger
	format   *syslogFormatter
	tr       syslogTransport
	mu       sync.Mutex
	retryLog logEvery
	retries  atomic.Uint64
	retryNote
	closed   atomic.Bool
	avgBytes atomic.Int64
	counts   counters
	fmtd     formatted
	truncLog logEvery
}

// Counters implements CounterReporter.
func (s *Syslog) Counters() Counters { return s.counts.snapshot() }

var _ Sink = (*Syslog)(nil)

// syslogTransport sends messages [0,n) of enc: it returns nil once they are
// confirmed as far as the transport can, retrying transient failures until
// ctx ends; Config and Permanent errors and ctx.Err() come back.
type syslogTransport interface {
	send(ctx context.Context, enc *encoded, n int) error
	close() error
}

// NewSyslog validates opts and builds the sink; it opens no connection.
func NewSyslog(opts SyslogOptions) (*Syslog, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &Syslog{opts: opts, retryLog: logEvery{every: opts.RetryLogEvery}, truncLog: logEvery{every: opts.RetryLogEvery}}
	s.log = opts.Logger.With(slog.String(attrSink, opts.Name))
	f, err := newSyslogFormatter(&opts)
	if err != nil {
		return nil, err
	}
	s.format = f
	switch opts.Network {
	case "udp":
		s.tr = &udpTransport{s: s}
	case "tcp", "tls":
		st := &streamTransport{s: s, octet: opts.Framing == syslogFramingOctetCounting}
		if opts.Network == "tls" {
			if st.tls, err = syslogTLSConfig(&opts, s.log); err != nil {
				return nil, err
			}
		}
		s.tr = st
	case "relp":
		rt := &relpTransport{s: s}
		if opts.TLS {
			if rt.tls, err = syslogTLSConfig(&opts, s.log); err != nil {
				return nil, err
			}
		}
		s.tr = rt
	}
	return s, nil
}

func (o *SyslogOptions) setDefaults() error {
	if o.Name == "" {
		o.Name = DefaultSyslogName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Network == "" {
		o.Network = DefaultSyslogNetwork
	}
	if o.Framing == "" {
		o.Framing = syslogFramingOctetCounting
	}
	if o.Format == "" {
		o.Format = DefaultSyslogFormat
	}
	if o.Payload == "" {
		o.Payload = DefaultSyslogPayload
	}
	if o.Facility == "" {
		o.Facility = DefaultSyslogFacility
	}
	if o.Severity == "" {
		o.Severity = DefaultSyslogSeverity
	}
	if o.Hostname == "" {
		o.Hostname = DefaultSyslogHostname
	}
	if o.AppName == "" {
		o.AppName = DefaultSyslogAppName
	}
	if o.EnterpriseID == 0 {
		o.EnterpriseID = DefaultSyslogEnterpriseID
	}
	if o.KVSeparator == "" {
		o.KVSeparator = " "
	}
	if o.KVAssign == "" {
		o.KVAssign = "="
	}
	if o.KVQuote == "" {
		o.KVQuote = "auto"
	}
	if o.LEEFDelimiter == "" {
		o.LEEFDelimiter = "tab"
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultSyslogStreamMaxBytes
		if o.Network == "udp" {
			o.MaxMessageBytes = DefaultSyslogUDPMaxBytes
		}
	}
	if o.Oversize == "" {
		o.Oversize = syslogOversizeTruncate
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultSyslogDialTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultSyslogWriteTimeout
	}
	if o.RELPWindow == 0 {
		o.RELPWindow = DefaultRELPWindow
	}
	if o.RELPAckTimeout == 0 {
		o.RELPAckTimeout = DefaultRELPAckTimeout
	}
	if o.RetryLogEvery == 0 {
		o.RetryLogEvery = 10 * time.Second
	}
	o.Retry = o.Retry.withDefaults()
	if o.Network == "tls" {
		o.TLS = true
	}
	if o.TLS && o.ServerName == "" {
		if h, _, err := net.SplitHostPort(o.Address); err == nil {
			o.ServerName = h
		}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("syslog: "+format, args...)) }
	if _, _, err := net.SplitHostPort(o.Address); err != nil || o.Address == "" {
		bad("Address %q: want host:port", o.Address)
	}
	if !oneOf(o.Network, "udp", "tcp", "tls", "relp") {
		bad("Network %q: want udp, tcp, tls or relp", o.Network)
	}
	if o.TLS && o.Network == "udp" {
		bad("TLS is not available over udp")
	}
	if !oneOf(o.Framing, syslogFramingOctetCounting, syslogFramingNonTransparent) {
		bad("Framing %q: want octet-counting or non-transparent", o.Framing)
	}
	if !oneOf(o.Format, "rfc5424", "rfc3164") {
		bad("Format %q: want rfc5424 or rfc3164", o.Format)
	}
	if !oneOf(o.Payload, "json", "kv", "cef", "leef") {
		bad("Payload %q: want json, kv, cef or leef", o.Payload)
	}
	if !oneOf(o.KVQuote, "auto", "always", "never") {
		bad("KVQuote %q: want auto, always or never", o.KVQuote)
	}
	if _, err := ParseLEEFDelimiter(o.LEEFDelimiter); err != nil {
		bad("LEEFDelimiter: %v", err)
	}
	for k, v := range o.SeverityMap {
		if v < 0 || v > 7 {
			bad("SeverityMap[%q] = %d: want 0..7", k, v)
		}
	}
	if o.EnterpriseID < 0 {
		bad("EnterpriseID %d: want a positive number", o.EnterpriseID)
	}
	if o.MaxMessageBytes < 2*len(SyslogTruncationMarker)+64 {
		bad("MaxMessageBytes %d: want at least 92", o.MaxMessageBytes)
	}
	if o.Oversize == "dead_letter" {
		o.Oversize = syslogOversizeDeadLetter
	}
	if !oneOf(o.Oversize, syslogOversizeTruncate, syslogOversizeDeadLetter) {
		bad("Oversize %q: want truncate or dead-letter", o.Oversize)
	}
	if o.DialTimeout < 0 || o.WriteTimeout < 0 || o.RELPAckTimeout < 0 {
		bad("DialTimeout, WriteTimeout and RELPAckTimeout must not be negative")
	}
	if o.RELPWindow < 0 || o.RELPWindow > 65536 {
		bad("RELPWindow %d: want 1..65536", o.RELPWindow)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		bad("CertFile and KeyFile go together")
	}
	return errors.Join(errs...)
}

func oneOf(s string, vals ...string) bool {
	for _, v := range vals {
		if s == v {
			return true
		}
	}
	return false
}

// ParseLEEFDelimiter reads a LEEF 2.0 delimiter: one printable ASCII
// character, "tab", "\t" or a hex form "x09"/"0x09".
func ParseLEEFDelimiter(s string) (byte, error) {
	switch strings.ToLower(s) {
	case "tab", `\t`, "\t":
		return '\t', nil
	}
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		s = "x" + h
	}
	if len(s) == 3 && (s[0] == 'x' || s[0] == 'X') {
		n, err := strconv.ParseUint(s[1:], 16, 8)
		if err == nil && n > 0 && n < 0x80 && n != '=' && n != '\n' && n != '\r' {
			return byte(n), nil
		}
	}
	if len(s) == 1 && s[0] > ' ' && s[0] < 0x7f && s[0] != '=' {
		return s[0], nil
	}
	return 0, fmt.Errorf("%q: want one character other than '=', tab, or xHH", s)
}

func newSyslogFormatter(o *SyslogOptions) (*syslogFormatter, error) {
	f := &syslogFormatter{
		rfc3164: o.Format == "rfc3164", pen: "@" + strconv.Itoa(o.EnterpriseID), bom: o.BOM,
		payload: o.Payload, meta: o.PayloadMeta, fieldMap: o.FieldMap, severityMap: o.SeverityMap,
		kvSep: o.KVSeparator, kvAssign: o.KVAssign, kvQuote: o.KVQuote,
	}
	keys := make([]string, 0, len(o.SDParams))
	for k := range o.SDParams {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f.extraSD = appendSDParam(f.extraSD, k, o.SDParams[k])
	}
	f.leefDelim, _ = ParseLEEFDelimiter(o.LEEFDelimiter)
	f.defFacility, _ = ParseFacility(DefaultSyslogFacility)
	f.defSeverity, _ = ParseSeverity(DefaultSyslogSeverity)
	for _, t := range []struct {
		name, src string
		dst       **template
	}{
		{"Facility", o.Facility, &f.facility}, {"Severity", o.Severity, &f.severity},
		{"Hostname", o.Hostname, &f.hostname}, {"AppName", o.AppName, &f.appName},
		{"ProcID", o.ProcID, &f.procID}, {"MsgID", o.MsgID, &f.id},
		{"CEFVendor", o.CEFVendor, &f.cefVendor}, {"CEFProduct", o.CEFProduct, &f.cefProduct},
		{"CEFVersion", o.CEFVersion, &f.cefVersion}, {"CEFEventClass", o.CEFEventClass, &f.cefClass},
		{"CEFName", o.CEFName, &f.cefName}, {"CEFSeverity", o.CEFSeverity, &f.cefSeverity},
		{"LEEFVendor", o.LEEFVendor, &f.leefVendor}, {"LEEFProduct", o.LEEFProduct, &f.leefProduct},
		{"LEEFVersion", o.LEEFVersion, &f.leefVersion}, {"LEEFEventID", o.LEEFEventID, &f.leefEventID},
	} {
		src := t.src
		if src == "-" {
			src = ""
		}
		var err error
		if *t.dst, err = parseTemplate(src); err != nil {
			return nil, fmt.Errorf("syslog: %s: %w", t.name, err)
		}
	}
	// A static facility or severity must be valid; a template may render
	// anything (unknown values fall back to the default).
	if f.facility.static {
		if n, ok := ParseFacility(f.facility.lit); ok {
			f.defFacility = n
		} else {
			return nil, fmt.Errorf("syslog: Facility %q: want a facility name or 0..23", o.Facility)
		}
	}
	if f.severity.static {
		n, ok := o.SeverityMap[f.severity.lit]
		if !ok {
			n, ok = ParseSeverity(f.severity.lit)
		}
		if !ok {
			return nil, fmt.Errorf("syslog: Severity %q: want a severity name or 0..7", o.Severity)
		}
		f.defSeverity = n
	}
	return f, nil
}

// Name implements Sink.
func (s *Syslog) Name() string { return s.opts.Name }

// Retries returns how many attempts failed transiently and were retried.
func (s *Syslog) Retries() uint64 { return s.retries.Load() }

// Close implements Sink; it is idempotent.
func (s *Syslog) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tr.close()
}

// Send implements Sink: it formats b and writes it pipelined, retrying
// transient failures (reconnecting with backoff) until ctx ends. What a nil
// return means depends on the transport:
//
//   - relp: the receiver answered "200 OK" for every message.
//   - tcp, tls: every message was written and flushed to the kernel within
//     WriteTimeout, and the connection was still open just before and right
//     after (a receiver that closed or reset it is noticed and the whole
//     batch sent again). It does not mean the receiver read or stored the
//     messages: those still in socket buffers when the receiver dies are
//     lost, and a resent batch duplicates what did arrive.
//   - udp: every datagram was handed to the kernel; delivery is best-effort.
//
// A message over MaxMessageBytes with Oversize dead-letter comes back as a
// Permanent *Error naming it after the events before it were sent; a
// message a RELP receiver refuses ("500") likewise.
func (s *Syslog) Send(ctx context.Context, b *Batch) error {
	if s.closed.Load() {
		return errors.New("syslog: send after close")
	}
	if len(b.Events) == 0 {
		return nil
	}
	fresh := s.fmtd.begin(b.Seq, len(b.Events))
	before := replacements.Load()
	enc, bad, cut := s.encode(b.Events, fresh)
	if n := len(enc.offs) - 1; fresh < n {
		countInvalidUTF8(&s.counts, before, b.Events[fresh:n])
	}
	s.fmtd.upTo(b.Seq, len(b.Events), len(enc.offs)-1)
	if cut.n > 0 {
		s.counts.truncated.Add(uint64(cut.n))
		if ok, n := s.truncLog.allow(); ok {
			s.log.Warn("syslog messages over max_message_bytes truncated (marked in the message; oversize: dead-letter keeps them whole instead)",
				slog.Int("truncated", cut.n), slog.Int("largest_bytes", cut.largest), slog.Int("max_message_bytes", s.opts.MaxMessageBytes),
				slog.Uint64(attrSeq, b.Seq), slog.Int("suppressed", n))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(enc.offs) - 1; n > 0 {
		if err := s.tr.send(ctx, enc, n); err != nil {
			return err
		}
	}
	if bad >= 0 {
		s.counts.oversizeDead.Add(1)
		return &Error{Kind: Permanent, EventIndex: bad,
			Text: fmt.Sprintf("message over MaxMessageBytes (%d)", s.opts.MaxMessageBytes)}
	}
	return nil
}

// encoded is a batch rendered as messages: message k is buf[offs[k]:offs[k+1]].
type encoded struct {
	buf  []byte
	offs []int
}

func (e *encoded) body(i, j int) []byte { return e.buf[e.offs[i]:e.offs[j]] }

// truncations says what encode cut from fresh on: how many messages, the
// largest original size.
type truncations struct{ n, largest int }

// encode formats evs into one buffer; with Oversize dead-letter it stops at
// the first message over MaxMessageBytes and returns its index (else -1);
// otherwise such a message is cut and marked (see truncate), and counted
// in the result when its index is fresh or later (formatted for the first
// time: see formatted).
func (s *Syslog) encode(evs []Event, fresh int) (*encoded, int, truncations) {
	per := max(256, s.avgBytes.Load())
	enc := &encoded{buf: make([]byte, 0, (per+per/8)*int64(len(evs))), offs: make([]int, 0, len(evs)+1)}
	var scratch [512]byte
	var cut truncations
	bad := -1
	for k := range evs {
		start := len(enc.buf)
		var parts msgParts
		enc.buf, parts = s.format.appendMessageParts(enc.buf, &evs[k], scratch[:])
		if n := len(enc.buf) - start; n > s.opts.MaxMessageBytes {
			if s.opts.Oversize == syslogOversizeDeadLetter {
				enc.buf = enc.buf[:start]
				bad = k
				break
			}
			enc.buf = s.format.truncate(enc.buf, start, parts, s.opts.MaxMessageBytes)
			if k >= fresh {
				cut.n++
				cut.largest = max(cut.largest, n)
			}
		}
		enc.offs = append(enc.offs, start)
	}
	enc.offs = append(enc.offs, len(enc.buf))
	if n := len(enc.offs) - 1; n > 0 {
		s.avgBytes.Store(int64(len(enc.buf) / n))
	}
	return enc, bad, cut
}

// retryWait decides after a failed attempt: ctx.Err() when ctx ended, err
// itself when it is not Transient, else nil after the backoff.
func (s *Syslog) retryWait(ctx context.Context, attempt int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if KindOf(err) != Transient {
		return err
	}
	s.retries.Add(1)
	s.noteRetry(0, err)
	if ok, n := s.retryLog.allow(); ok {
		s.log.Warn("syslog send failed, retrying", slog.String(attrErr, err.Error()),
			slog.Int("attempt", attempt+1), slog.Int("suppressed", n))
	}
	return sleepCtx(ctx, s.opts.Retry.Backoff(attempt))
}
