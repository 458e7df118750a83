package deliver

// Pure syslog formatting: events → syslog messages (without transport
// framing), no I/O. Tested as bytes against testdata/syslog/*.txt.
//
// RFC 5424 (the default):
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [sls@PEN …][sls_tags@PEN …] PAYLOAD
//
// TIMESTAMP is UTC with microseconds (RFC 5424 allows at most 6 fractional
// digits; the nanoseconds beyond are dropped). Header fields are rendered from
// templates (see hec_format.go), reduced to printable US-ASCII without spaces
// and cut to the RFC's lengths (hostname 255, app-name 48, procid 128, msgid
// 32); an empty one is "-". Structured data carries the SLS metadata:
//
//	[sls@32473 project="p" logstore="l" shard="3" topic="t" source="10.0.0.1"]
//	[sls_tags@32473 __hostname__="web-1" k8s_pod="api-7f9" …]
//
// (tag keys lose a "__tag__:" prefix and have '.' replaced by '_', see
// sdTagName)
// topic and source are left out when empty, the tags element when there are
// none; values escape '"', '\' and ']' with '\' (the only escapes of RFC 5424
// section 6.3.3: a receiver keeps any other backslash sequence as two
// characters, so "\n" would not read back as a line break); parameter names
// outside printable US-ASCII or '=', ' ', ']', '"' become '_', cut to 32
// bytes. A raw line break is legal in PARAM-VALUE, and octet counting, RELP
// and UDP would carry it, but non-transparent framing would end the message
// there, and the formatter is shared by every framing: CR and LF in SD
// values become a space (as do other control characters; TAB stays).
//
// RFC 3164 (BSD): <PRI>Mmm _d hh:mm:ss HOSTNAME TAG[PROCID]: PAYLOAD, with
// UTC time, TAG the app-name reduced to [A-Za-z0-9_.-] and cut to 32 bytes.
// It has no structured data: set PayloadMeta to keep the SLS metadata.
//
// Payloads (the MSG part) never contain a raw CR or LF, so that both stream
// framings are safe, and are valid UTF-8 (invalid bytes become U+FFFD).
// Each encoding writes a line break in its own escape where it has one (json,
// kv and CEF extension values: \n, \r) and as a space where it has none (CEF
// and LEEF headers, LEEF values); a TAB stays raw except in json and kv (\t)
// and where it is the LEEF delimiter; other control characters become spaces:
//
//	json  {"k1":"v1","k2":"v2"}                          the log's fields in order
//	kv    k1=v1 k2="v 2"                                 separator and quoting configurable
//	cef   CEF:0|Vendor|Product|Version|ID|Name|Severity|rt=… k1=v1 …
//	leef  LEEF:2.0|Vendor|Product|Version|EventID|^|devTime=…^devTimeFormat=…^k1=v1…

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// syslogFormatter renders events as syslog messages. Safe for concurrent use
// once built.
type syslogFormatter struct {
	rfc3164  bool
	pen      string // SD-ID suffix "@32473"
	bom      bool
	payload  string // json, kv, cef, leef
	meta     bool   // PayloadMeta
	fieldMap map[string]string
	extraSD  []byte // ` k="v"`… of SyslogOptions.SDParams, in [sls@PEN]

	facility, severity            *template
	severityMap                   map[string]int
	defFacility, defSeverity      int
	hostname, appName, procID, id *template

	kvSep, kvAssign string
	kvQuote         string // auto, always, never

	cefVendor, cefProduct, cefVersion, cefClass, cefName, cefSeverity *template
	leefVendor, leefProduct, leefVersion, leefEventID                 *template
	leefDelim                                                         byte
}

var facilityNames = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "audit": 13,
	"console": 14, "solaris-cron": 15, "clock": 15, "local0": 16, "local1": 17, "local2": 18,
	"local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

var severityNames = map[string]int{
	"emerg": 0, "emergency": 0, "panic": 0, "alert": 1, "crit": 2, "critical": 2, "fatal": 2,
	"err": 3, "error": 3, "warning": 4, "warn": 4, "notice": 5, "info": 6, "informational": 6,
	"information": 6, "debug": 7, "trace": 7,
}

// ParseFacility reads a syslog facility name (user, local0…) or number 0..23.
func ParseFacility(s string) (int, bool) { return lookupCode(facilityNames, s, 23) }

// ParseSeverity reads a syslog severity name (err, warning, info…) or number 0..7.
func ParseSeverity(s string) (int, bool) { return lookupCode(severityNames, s, 7) }

func lookupCode(names map[string]int, s string, maxN int) (int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil {
		return n, n >= 0 && n <= maxN
	}
	n, ok := names[s]
	return n, ok
}

// render appends the template's value for e; ok is false when a
// placeholder had no value (like appendJSONField, which then leaves the key
// out).
func (t *template) render(dst []byte, e *Event, m *Meta) ([]byte, bool) {
	if t == nil {
		return dst, false
	}
	if t.static {
		return append(dst, t.lit...), t.lit != ""
	}
	var scratch [24]byte
	start := len(dst)
	for _, p := range t.parts {
		if p.alts == nil {
			dst = append(dst, p.lit...)
			continue
		}
		found := false
		for _, r := range p.alts {
			if v := r.value(e, m, scratch[:]); v != "" {
				dst = append(dst, v...)
				found = true
				break
			}
		}
		if !found {
			return dst[:start], false
		}
	}
	return dst, len(dst) > start
}

func (t *template) string(e *Event, m *Meta, scratch []byte) string {
	b, ok := t.render(scratch[:0], e, m)
	if !ok {
		return ""
	}
	return string(b)
}

// appendMessage appends the syslog message for e (no framing, no newline).
func (f *syslogFormatter) appendMessage(dst []byte, e *Event, scratch []byte) []byte {
	dst, _ = f.appendMessageParts(dst, e, scratch)
	return dst
}

// msgParts locates an RFC 5424 message's structured data in the buffer it
// was appended to: [sdStart, sdEnd) is the SD, msg the payload's start
// (after the space and the BOM). Zero for RFC 3164.
type msgParts struct{ sdStart, sdEnd, msg int }

// appendMessageParts is appendMessage, also saying where the parts are.
func (f *syslogFormatter) appendMessageParts(dst []byte, e *Event, scratch []byte) ([]byte, msgParts) {
	var p msgParts
	m := e.Meta
	if m == nil {
		m = emptyMeta
	}
	pri := f.code(f.facility, nil, e, m, f.defFacility, 23, facilityNames, scratch)*8 +
		f.code(f.severity, f.severityMap, e, m, f.defSeverity, 7, severityNames, scratch)
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(pri), 10)
	dst = append(dst, '>')
	t := e.Time.UTC()
	if f.rfc3164 {
		dst = t.AppendFormat(dst, time.Stamp)
		dst = append(dst, ' ')
		dst = f.appendHeaderField(dst, f.hostname, e, m, 255, printASCII, "-")
		dst = append(dst, ' ')
		dst = f.appendHeaderField(dst, f.appName, e, m, 32, tagChar, "slsrelay")
		n := len(dst)
		dst = append(dst, '[')
		if dst = f.appendHeaderField(dst, f.procID, e, m, 128, tagChar, ""); len(dst) == n+1 {
			dst = dst[:n]
		} else {
			dst = append(dst, ']')
		}
		dst = append(dst, ':', ' ')
	} else {
		dst = append(dst, '1', ' ')
		dst = t.Truncate(time.Microsecond).AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
		dst = append(dst, ' ')
		dst = f.appendHeaderField(dst, f.hostname, e, m, 255, printASCII, "-")
		dst = append(dst, ' ')
		dst = f.appendHeaderField(dst, f.appName, e, m, 48, printASCII, "-")
		dst = append(dst, ' ')
		dst = f.appendHeaderField(dst, f.procID, e, m, 128, printASCII, "-")
		dst = append(dst, ' ')
		dst = f.appendHeaderField(dst, f.id, e, m, 32, printASCII, "-")
		dst = append(dst, ' ')
		p.sdStart = len(dst)
		dst = f.appendSD(dst, m)
		p.sdEnd = len(dst)
		dst = append(dst, ' ')
		if f.bom {
			dst = append(dst, "\xef\xbb\xbf"...)
		}
		p.msg = len(dst)
	}
	switch f.payload {
	case "kv":
		return f.appendKV(dst, e, m), p
	case "cef":
		return f.appendCEF(dst, e, m, scratch), p
	case "leef":
		return f.appendLEEF(dst, e, m, scratch), p
	}
	return f.appendJSON(dst, e, m), p
}

// truncate cuts the message buf[start:] (over maxLen bytes; p its parts) to
// maxLen and marks it: the payload ends with SyslogTruncationMarker, cut on
// a UTF-8 boundary, and in RFC 5424 an SD element
// [slsrelay@PEN truncated="<original bytes>"] follows the others. Should
// the structured data alone leave no room for the payload (thousands of
// tags), the sls and sls_tags elements give way to the marking one.
func (f *syslogFormatter) truncate(buf []byte, start int, p msgParts, maxLen int) []byte {
	if f.rfc3164 {
		return truncateMessage(buf[:len(buf):len(buf)], start+maxLen, SyslogTruncationMarker)
	}
	orig := append([]byte(nil), buf[start:]...)
	sdStart, sdEnd, msg := p.sdStart-start, p.sdEnd-start, p.msg-start
	mark := append([]byte("[slsrelay"), f.pen...)
	mark = append(mark, ` truncated="`...)
	mark = strconv.AppendInt(mark, int64(len(orig)), 10)
	mark = append(mark, `"]`...)
	const minPayload = 64
	keep := sdEnd // header and SD kept as they are
	if sdEnd+len(mark)+(msg-sdEnd)+len(SyslogTruncationMarker)+minPayload > maxLen {
		keep = sdStart // the SD gives way
	}
	if keep+len(mark)+(msg-sdEnd)+len(SyslogTruncationMarker) > maxLen {
		// A tiny max_message_bytes and long header fields: the suffix
		// alone marks it.
		return truncateMessage(buf[:len(buf):len(buf)], start+maxLen, SyslogTruncationMarker)
	}
	out := append(buf[:start], orig[:keep]...)
	out = append(out, mark...)
	out = append(out, orig[sdEnd:msg]...) // the space and BOM
	return truncateMessage(append(out, orig[msg:]...), start+maxLen, SyslogTruncationMarker)
}

// code renders a facility or severity template: a number, a name, or a value
// of the map; anything else (or nothing) gives def.
func (f *syslogFormatter) code(t *template, extra map[string]int, e *Event, m *Meta, def, maxN int, names map[string]int, scratch []byte) int {
	if t == nil {
		return def
	}
	b, ok := t.render(scratch[:0], e, m)
	if !ok {
		return def
	}
	s := string(b)
	if n, ok := extra[s]; ok {
		return n
	}
	if n, ok := lookupCode(names, s, maxN); ok {
		return n
	}
	return def
}

func printASCII(c byte) bool { return c > ' ' && c < 0x7f }

func tagChar(c byte) bool {
	return c == '_' || c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// appendHeaderField renders t, replaces bytes outside ok by '_', cuts to max
// bytes, and writes nilValue when empty.
func (f *syslogFormatter) appendHeaderField(dst []byte, t *template, e *Event, m *Meta, maxLen int, ok func(byte) bool, nilValue string) []byte {
	start := len(dst)
	dst, _ = t.render(dst, e, m)
	if len(dst)-start > maxLen {
		dst = dst[:start+maxLen]
	}
	for i := start; i < len(dst); i++ {
		if !ok(dst[i]) {
			dst[i] = '_'
		}
	}
	if len(dst) == start {
		dst = append(dst, nilValue...)
	}
	return dst
}

func (f *syslogFormatter) appendSD(dst []byte, m *Meta) []byte {
	dst = append(dst, "[sls"...)
	dst = append(dst, f.pen...)
	dst = appendSDParam(dst, "project", m.Project)
	dst = appendSDParam(dst, "logstore", m.Logstore)
	dst = append(dst, ` shard="`...)
	dst = strconv.AppendInt(dst, int64(m.Shard), 10)
	dst = append(dst, '"')
	if m.Topic != "" {
		dst = appendSDParam(dst, "topic", m.Topic)
	}
	if m.Source != "" {
		dst = appendSDParam(dst, "source", m.Source)
	}
	dst = append(dst, f.extraSD...)
	dst = append(dst, ']')
	if len(m.Tags) > 0 {
		dst = append(dst, "[sls_tags"...)
		dst = append(dst, f.pen...)
		for _, t := range m.Tags {
			dst = appendSDParam(dst, sdTagName(t.Key), t.Value)
		}
		dst = append(dst, ']')
	}
	return dst
}

// sdTagName is a LogTag key as an SD parameter name: without a "__tag__:"
// prefix, '.' replaced by '_' (syslog-ng splits SD names at dots):
// "__tag__:k8s.pod" → "k8s_pod", "__hostname__" stays.
func sdTagName(k string) string {
	return strings.ReplaceAll(strings.TrimPrefix(k, "__tag__:"), ".", "_")
}

// appendSDParam appends ` name="value"` with RFC 5424 section 6.3.3 rules.
func appendSDParam(dst []byte, name, value string) []byte {
	dst = append(dst, ' ')
	start := len(dst)
	for i := 0; i < len(name) && len(dst)-start < 32; i++ {
		c := name[i]
		if !printASCII(c) || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		dst = append(dst, c)
	}
	if len(dst) == start {
		dst = append(dst, '_')
	}
	dst = append(dst, '=', '"')
	dst = appendEscaped(dst, value, func(dst []byte, c byte) ([]byte, bool) {
		if c == '"' || c == '\\' || c == ']' {
			return append(dst, '\\', c), true
		}
		return dst, false
	})
	return append(dst, '"')
}

// appendEscaped appends s as valid UTF-8 (invalid bytes become U+FFFD).
// esc may rewrite any ASCII byte (returning true); a control character it
// leaves alone becomes a space, except TAB, which stays, so that no message
// carries a raw line break (CR, LF) whatever the framing.
func appendEscaped(dst []byte, s string, esc func([]byte, byte) ([]byte, bool)) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if esc != nil {
				var done bool
				if dst, done = esc(dst, c); done {
					continue
				}
			}
			if c != '\t' && (c < ' ' || c == 0x7f) {
				c = ' '
			}
			dst = append(dst, c)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			replacements.Add(1)
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// escapeBreaks writes CR, LF (and TAB when tab is set) as \r, \n, \t.
func escapeBreaks(dst []byte, c byte, tab bool) ([]byte, bool) {
	switch {
	case c == '\n':
		return append(dst, '\\', 'n'), true
	case c == '\r':
		return append(dst, '\\', 'r'), true
	case c == '\t' && tab:
		return append(dst, '\\', 't'), true
	}
	return dst, false
}

// fields yields the event's fields (renamed by FieldMap) and, with
// PayloadMeta, the sls_* metadata fields.
func (f *syslogFormatter) fields(e *Event, m *Meta, fn func(k, v string)) {
	for _, fl := range e.Fields {
		k := fl.Key
		if n, ok := f.fieldMap[k]; ok {
			k = n
		}
		fn(k, fl.Value)
	}
	if !f.meta {
		return
	}
	fn("sls_project", m.Project)
	fn("sls_logstore", m.Logstore)
	fn("sls_shard", strconv.Itoa(m.Shard))
	if m.Topic != "" {
		fn("sls_topic", m.Topic)
	}
	if m.Source != "" {
		fn("sls_source", m.Source)
	}
	for _, t := range m.Tags {
		fn(tagFieldName(t.Key), t.Value)
	}
}

func (f *syslogFormatter) appendJSON(dst []byte, e *Event, m *Meta) []byte {
	dst = append(dst, '{')
	first := true
	f.fields(e, m, func(k, v string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, v)
	})
	return append(dst, '}')
}

// appendKV writes key<assign>value pairs joined by kvSep. Keys lose spaces,
// the separator and assign characters ('_' instead). Quoting "auto" quotes a
// value that is empty or holds a space, a quote, a backslash, the separator
// or the assign string; "always" quotes every value; "never" quotes none and
// escapes the separator's first byte and backslash with '\'. Inside quotes
// '"' and '\' are escaped with '\'. CR, LF and TAB become \r, \n, \t.
func (f *syslogFormatter) appendKV(dst []byte, e *Event, m *Meta) []byte {
	first := true
	f.fields(e, m, func(k, v string) {
		if !first {
			dst = append(dst, f.kvSep...)
		}
		first = false
		dst = appendEscaped(dst, k, func(dst []byte, c byte) ([]byte, bool) {
			if c <= ' ' || c == 0x7f || c == '"' || strings.IndexByte(f.kvSep, c) >= 0 || strings.IndexByte(f.kvAssign, c) >= 0 {
				return append(dst, '_'), true
			}
			return dst, false
		})
		dst = append(dst, f.kvAssign...)
		quote := f.kvQuote == "always" || f.kvQuote == "auto" && (v == "" ||
			strings.ContainsAny(v, " \"\\\t\r\n") || strings.Contains(v, f.kvSep) || strings.Contains(v, f.kvAssign))
		if quote {
			dst = append(dst, '"')
			dst = appendEscaped(dst, v, func(dst []byte, c byte) ([]byte, bool) {
				if c == '"' || c == '\\' {
					return append(dst, '\\', c), true
				}
				return escapeBreaks(dst, c, true)
			})
			dst = append(dst, '"')
			return
		}
		dst = appendEscaped(dst, v, func(dst []byte, c byte) ([]byte, bool) {
			if c == '\\' || f.kvSep != "" && c == f.kvSep[0] {
				return append(dst, '\\', c), true
			}
			return escapeBreaks(dst, c, true)
		})
	})
	return dst
}

// cefHeader escapes a CEF (or LEEF) header field: '\' and '|' get a
// backslash, the only header escapes CEF defines; line breaks become spaces
// (CEF allows them in extension values only).
func cefHeader(dst []byte, t *template, e *Event, m *Meta, def string) []byte {
	var buf [256]byte
	v, ok := t.render(buf[:0], e, m)
	if !ok {
		v = append(v[:0], def...)
	}
	dst = appendEscaped(dst, string(v), func(dst []byte, c byte) ([]byte, bool) {
		switch c {
		case '\\', '|':
			return append(dst, '\\', c), true
		}
		return dst, false // CR, LF: a space (appendEscaped)
	})
	return dst
}

// appendCEF writes ArcSight CEF (Common Event Format 25): a header whose
// fields come from templates, then rt (event time, ms since the epoch) and
// the fields as extension pairs. Extension keys keep [A-Za-z0-9_.] and lose
// the rest; values escape '\' and '=' with a backslash and write CR and LF as
// \r, \n, the only extension escapes CEF defines: a TAB stays raw (CEF has
// no \t; a receiver would read it as a backslash and a t).
func (f *syslogFormatter) appendCEF(dst []byte, e *Event, m *Meta, scratch []byte) []byte {
	dst = append(dst, "CEF:0|"...)
	dst = cefHeader(dst, f.cefVendor, e, m, "Alibaba Cloud")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.cefProduct, e, m, "SLS")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.cefVersion, e, m, "1.0")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.cefClass, e, m, "sls")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.cefName, e, m, "sls log")
	dst = append(dst, '|')
	sev := f.cefSeverity.string(e, m, scratch)
	if !validCEFSeverity(sev) {
		sev = "Unknown"
	}
	dst = append(dst, sev...)
	dst = append(dst, "|rt="...)
	dst = strconv.AppendInt(dst, e.Time.UnixMilli(), 10)
	f.fields(e, m, func(k, v string) {
		dst = append(dst, ' ')
		dst = appendKey(dst, k, func(c byte) bool { return tagChar(c) && c != '-' }, '_')
		dst = append(dst, '=')
		dst = appendEscaped(dst, v, func(dst []byte, c byte) ([]byte, bool) {
			switch c {
			case '\\', '=':
				return append(dst, '\\', c), true
			}
			return escapeBreaks(dst, c, false)
		})
	})
	return dst
}

func validCEFSeverity(s string) bool {
	if n, err := strconv.Atoi(s); err == nil {
		return n >= 0 && n <= 10
	}
	switch s {
	case "Unknown", "Low", "Medium", "High", "Very-High":
		return true
	}
	return false
}

// appendKey appends k with bytes outside ok replaced by repl (also written
// for an empty key).
func appendKey(dst []byte, k string, ok func(byte) bool, repl byte) []byte {
	start := len(dst)
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !ok(c) {
			c = repl
		}
		dst = append(dst, c)
	}
	if len(dst) == start {
		dst = append(dst, repl)
	}
	return dst
}

// appendLEEF writes IBM QRadar LEEF 2.0 with the configured delimiter:
// devTime (with devTimeFormat) and then the fields.
//
// LEEF has no escape in attributes (IBM's guidance is to keep the delimiter
// out of keys and values), so in a value the delimiter, CR, LF and other
// control characters become a space ('_' when the delimiter is the space);
// a TAB stays raw unless it is the delimiter, and '=' and '|' stay (an
// attribute splits at its first '='). Keys keep [A-Za-z0-9_.-] without the
// delimiter; the rest becomes '_' ('-' when '_' is the delimiter). Header
// fields are escaped as in CEF ('|' and '\' get a backslash, line breaks become
// spaces). The delimiter field of the header is the character itself, or
// its hex form xHH (which LEEF 2.0 allows) for TAB, space, '|', '\' and other
// characters that would be unreadable or ambiguous there.
func (f *syslogFormatter) appendLEEF(dst []byte, e *Event, m *Meta, scratch []byte) []byte {
	dst = append(dst, "LEEF:2.0|"...)
	dst = cefHeader(dst, f.leefVendor, e, m, "Alibaba Cloud")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.leefProduct, e, m, "SLS")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.leefVersion, e, m, "1.0")
	dst = append(dst, '|')
	dst = cefHeader(dst, f.leefEventID, e, m, "sls")
	dst = append(dst, '|')
	d := f.leefDelim
	if d <= ' ' || d == '|' || d == '\\' || d >= 0x7f {
		const hex = "0123456789ABCDEF"
		dst = append(dst, 'x', hex[d>>4], hex[d&0xf])
	} else {
		dst = append(dst, d)
	}
	dst = append(dst, '|')
	dst = append(dst, "devTime="...)
	dst = e.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z0700")
	dst = append(dst, d)
	dst = append(dst, "devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ"...)
	valRepl, keyRepl := byte(' '), byte('_')
	if d == ' ' {
		valRepl = '_'
	}
	if d == '_' {
		keyRepl = '-'
	}
	keyOK := func(c byte) bool { return tagChar(c) && c != d }
	f.fields(e, m, func(k, v string) {
		dst = append(dst, d)
		dst = appendKey(dst, k, keyOK, keyRepl)
		dst = append(dst, '=')
		dst = appendEscaped(dst, v, func(dst []byte, c byte) ([]byte, bool) {
			if c == d || c != '\t' && (c < ' ' || c == 0x7f) {
				return append(dst, valRepl), true
			}
			return dst, false
		})
	})
	return dst
}

// truncateMessage cuts msg to max bytes on a UTF-8 boundary and ends it with
// marker (which must be shorter than max).
func truncateMessage(msg []byte, maxLen int, marker string) []byte {
	if len(msg) <= maxLen {
		return msg
	}
	cut := maxLen - len(marker)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return append(msg[:cut], marker...)
}
