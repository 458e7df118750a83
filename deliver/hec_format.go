package deliver

// Pure HEC formatting: events → HEC JSON, no I/O. Tested as bytes against
// testdata/hec/*.json.
//
// One SLS log becomes one HEC event object, objects separated by "\n":
//
//	{"time":1700000000.123456789,   // __time__ + TimeNs; integer seconds if TimeNs is 0
//	 "host":…,"source":…,"sourcetype":…,"index":…,  // from templates; omitted when empty
//	 "event":{"k1":"v1","k2":"v2"},  // the log's contents, in order (keys may repeat)
//	 "fields":{"sls_project":…,"sls_logstore":…,"sls_shard":"3",
//	           "sls_topic":…,"sls_source":…,         // omitted when empty
//	           "sls_tag_hostname":…}}                // one per LogTag, see tagFieldName
//
// Templates (HECOptions.Host, Source, Sourcetype, Index) are literal text with
// {{ref}} placeholders; ref is one of project, logstore, shard, topic, source,
// tag:KEY (a LogTag, "__hostname__" or "__tag__:__hostname__"), field:KEY (a
// log content) — or several separated by "|", the first non-empty wins:
// "{{field:host|tag:__hostname__|source}}", "sls_{{project}}". When a
// placeholder has no value (or the whole template renders empty) the key is
// left out, so the token's default applies: "idx_{{field:tenant}}" on an
// event without "tenant" sends no "index" rather than "idx_".

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

type refKind uint8

const (
	refProject refKind = iota + 1
	refLogstore
	refShard
	refTopic
	refSource
	refTag
	refField
)

type tmplRef struct {
	kind refKind
	key  string
}

type tmplPart struct {
	lit  string
	alts []tmplRef // empty for a literal part
}

// template is a parsed routing template; the zero value renders "".
type template struct {
	parts []tmplPart
	// static is set when the template has no placeholder.
	static bool
	lit    string
}

func parseTemplate(s string) (*template, error) {
	t := &template{}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, tmplPart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %q: unclosed {{", s)
		}
		var p tmplPart
		for _, alt := range strings.Split(rest[i+2:i+j], "|") {
			r, err := parseRef(strings.TrimSpace(alt))
			if err != nil {
				return nil, fmt.Errorf("template %q: %w", s, err)
			}
			p.alts = append(p.alts, r)
		}
		t.parts = append(t.parts, p)
		rest = rest[i+j+2:]
	}
	t.static = true
	for _, p := range t.parts {
		if p.alts != nil {
			t.static = false
		}
		t.lit += p.lit
	}
	return t, nil
}

func parseRef(s string) (tmplRef, error) {
	switch s {
	case "project":
		return tmplRef{kind: refProject}, nil
	case "logstore":
		return tmplRef{kind: refLogstore}, nil
	case "shard":
		return tmplRef{kind: refShard}, nil
	case "topic":
		return tmplRef{kind: refTopic}, nil
	case "source":
		return tmplRef{kind: refSource}, nil
	}
	if k, ok := strings.CutPrefix(s, "tag:"); ok && k != "" {
		return tmplRef{kind: refTag, key: k}, nil
	}
	if k, ok := strings.CutPrefix(s, "field:"); ok && k != "" {
		return tmplRef{kind: refField, key: k}, nil
	}
	return tmplRef{}, fmt.Errorf("unknown placeholder %q (want project, logstore, shard, topic, source, tag:KEY or field:KEY)", s)
}

func (r tmplRef) value(e *Event, m *Meta, scratch []byte) string {
	switch r.kind {
	case refProject:
		return m.Project
	case refLogstore:
		return m.Logstore
	case refShard:
		return string(strconv.AppendInt(scratch[:0], int64(m.Shard), 10))
	case refTopic:
		return m.Topic
	case refSource:
		return m.Source
	case refTag:
		v, _ := m.Tag(r.key)
		return v
	case refField:
		v, _ := e.Field(r.key)
		return v
	}
	return ""
}

// appendJSONField appends `,"key":"value"` for the rendered template, or
// nothing when it renders empty or a placeholder has no value.
func (t *template) appendJSONField(dst []byte, key string, e *Event, m *Meta) []byte {
	if t == nil {
		return dst
	}
	if t.static {
		if t.lit == "" {
			return dst
		}
		dst = append(dst, ',', '"')
		dst = append(dst, key...)
		dst = append(dst, '"', ':')
		return appendJSONString(dst, t.lit)
	}
	var scratch [24]byte
	start := len(dst)
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':', '"')
	valStart := len(dst)
	for _, p := range t.parts {
		if p.alts == nil {
			dst = appendJSONStringBody(dst, p.lit)
			continue
		}
		found := false
		for _, r := range p.alts {
			if v := r.value(e, m, scratch[:]); v != "" {
				dst = appendJSONStringBody(dst, v)
				found = true
				break
			}
		}
		if !found {
			return dst[:start]
		}
	}
	if len(dst) == valStart {
		return dst[:start]
	}
	return append(dst, '"')
}

// hecFormatter renders events as HEC JSON. Safe for concurrent use.
type hecFormatter struct {
	host, source, sourcetype, index *template
	// extra is `,"k":"v"…` of HECOptions.Fields, added to every event's
	// indexed fields.
	extra []byte
}

// setFields renders fixed indexed fields, sorted by key.
func (f *hecFormatter) setFields(fields map[string]string) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f.extra = nil
	for _, k := range keys {
		f.extra = append(f.extra, ',')
		f.extra = appendJSONString(f.extra, k)
		f.extra = append(f.extra, ':')
		f.extra = appendJSONString(f.extra, fields[k])
	}
}

var emptyMeta = &Meta{}

// appendEvent appends the HEC JSON of e and a newline. metaJSON caches the
// "fields" object of the last Meta seen (events of a log group share it);
// pass the same *metaCache for consecutive calls.
func (f *hecFormatter) appendEvent(dst []byte, e *Event, c *metaCache) []byte {
	m := e.Meta
	if m == nil {
		m = emptyMeta
	}
	dst = append(dst, `{"time":`...)
	dst = appendHECTime(dst, e)
	dst = f.host.appendJSONField(dst, "host", e, m)
	dst = f.source.appendJSONField(dst, "source", e, m)
	dst = f.sourcetype.appendJSONField(dst, "sourcetype", e, m)
	dst = f.index.appendJSONField(dst, "index", e, m)
	dst = append(dst, `,"event":{`...)
	for i, fl := range e.Fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, fl.Key)
		dst = append(dst, ':')
		dst = appendJSONString(dst, fl.Value)
	}
	dst = append(dst, '}')
	dst = append(dst, c.fields(m, f.extra)...)
	return append(dst, '}', '\n')
}

func appendHECTime(dst []byte, e *Event) []byte {
	sec := e.Time.Unix()
	dst = strconv.AppendInt(dst, sec, 10)
	ns := e.Time.Nanosecond()
	if ns == 0 {
		return dst
	}
	var d [10]byte
	d[0] = '.'
	for i := 9; i >= 1; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	return append(dst, d[:]...)
}

// metaCache holds the rendered `,"fields":{…}` of the last Meta.
type metaCache struct {
	meta *Meta
	buf  []byte
}

func (c *metaCache) fields(m *Meta, extra []byte) []byte {
	if c.meta == m && c.buf != nil {
		return c.buf
	}
	b := append(c.buf[:0], `,"fields":{"sls_project":`...)
	b = appendJSONString(b, m.Project)
	b = append(b, `,"sls_logstore":`...)
	b = appendJSONString(b, m.Logstore)
	b = append(b, `,"sls_shard":"`...)
	b = strconv.AppendInt(b, int64(m.Shard), 10)
	b = append(b, '"')
	if m.Topic != "" {
		b = append(b, `,"sls_topic":`...)
		b = appendJSONString(b, m.Topic)
	}
	if m.Source != "" {
		b = append(b, `,"sls_source":`...)
		b = appendJSONString(b, m.Source)
	}
	for _, t := range m.Tags {
		b = append(b, ',')
		b = appendJSONString(b, tagFieldName(t.Key))
		b = append(b, ':')
		b = appendJSONString(b, t.Value)
	}
	b = append(b, extra...)
	b = append(b, '}')
	c.meta, c.buf = m, b
	return b
}

// tagFieldName maps a LogTag key to an indexed field name: "sls_tag_" plus
// the key without a "__tag__:" prefix and surrounding underscores, every
// character outside [A-Za-z0-9_] replaced by "_":
// "__hostname__" and "__tag__:__hostname__" → "sls_tag_hostname",
// "__tag__:k8s.pod" → "sls_tag_k8s_pod".
func tagFieldName(key string) string {
	key = strings.Trim(strings.TrimPrefix(key, "__tag__:"), "_")
	b := make([]byte, 0, len("sls_tag_")+len(key))
	b = append(b, "sls_tag_"...)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

// appendJSONString appends s as a JSON string literal; invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringBody(dst, s)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// safeASCII[c] is true for ASCII bytes that need no escaping.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plain8 reports whether none of the 8 bytes in w needs a look: each is
// printable ASCII (0x20..0x7f) other than '"' and '\\'. Bit tricks from
// "Bit Twiddling Hacks" (haszero / hasless), exact for these constants.
func plain8(w uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	hasZero := func(x uint64) uint64 { return (x - ones) & ^x & highs }
	special := hasZero(w^(ones*'"')) | hasZero(w^(ones*'\\')) | // quote, backslash
		(w-ones*0x20)&^w&highs | // a byte below 0x20
		w&highs // a byte from 0x80: UTF-8, checked rune by rune
	return special == 0
}

// le64 reads 8 bytes of s little-endian; the compiler makes it one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func appendJSONStringBody(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 plain bytes at a time: most of a log's text needs no
		// escaping, and this loop was a tenth of the relay's CPU.
		for i+8 <= len(s) && plain8(le64(s[i:i+8])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			replacements.Add(1)
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
