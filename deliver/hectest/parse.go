package hectest

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"net/http"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The event parser: a single pass over a request's decompressed body, a
// stream of concatenated JSON event objects, that gives exactly the
// outcomes the encoding/json implementation it replaced gave (kept in
// reference_test.go; FuzzReadEvents_MatchesReference compares the two).
// encoding/json's rules it reproduces:
//
//   - Each top-level value is first scanned whole: a syntax error anywhere
//     in it (including nesting deeper than 10000) wins over type errors.
//   - Keys match the struct's fields exactly or case-insensitively under
//     encoding/json's folding (Unicode simple folding: "ſource" is
//     "source", "ındex" is not "index"), after unquoting; the last
//     duplicate wins; unknown keys are skipped; a "fields" object merges
//     into an earlier one, null clears it.
//   - Of the type errors only the first counts: it answers code 15 when it
//     is in "fields" (not an object, or a number out of float64's range in
//     it), else 6. A top-level null decodes to an empty event (code 12);
//     other non-objects are type errors.
//   - Strings unquote with invalid UTF-8 and lone surrogates replaced by
//     U+FFFD; "event" and "time" keep their raw text.
//   - The size decision (413) of the reference depends on how many bytes
//     its decoder had read when it failed; this parser counts as the
//     decoder reading one byte at a time: up to the byte that failed, or
//     past a top-level scalar by the one byte that ended it.

const maxNestingDepth = 10000 // encoding/json's scanner limit

// Error kinds of a failed top-level value.
const (
	errNone   = iota
	errOther  // syntax or type error, or the body ended inside a value
	errFields // type error whose field is "fields"
	errTerm   // the body ended inside a value and its reader failed: termErr
)

// Field ids.
const (
	fieldUnknown = iota
	fieldTime
	fieldHost
	fieldSource
	fieldSourcetype
	fieldIndex
	fieldEvent
	fieldFields
)

// fieldNames are the wire names folded as encoding/json folds them (ASCII
// upper case).
var fieldNames = [...]string{fieldTime: "TIME", fieldHost: "HOST", fieldSource: "SOURCE", fieldSourcetype: "SOURCETYPE",
	fieldIndex: "INDEX", fieldEvent: "EVENT", fieldFields: "FIELDS"}

// parsedEvent is one event object as decoded.
type parsedEvent struct {
	time, event                     []byte // raw text; nil when absent
	host, source, sourcetype, index string // "" when absent or null
	fields                          map[string]any
}

type eventParser struct {
	d       []byte
	termErr error // why the body ends: nil for EOF (or the decompressed limit)

	errKind int // set by a failure
	errN    int // bytes the reference's decoder would have read at the failure
	saved   int // first type error of the current value: errOther or errFields

	strHigh, strEsc bool // set by str: the string has bytes >= 0x80, escapes

	lastHost, lastSource, lastSourcetype, lastIndex string // interned

	intern     map[string]string // short "fields" keys seen
	internStrs map[string]any    // short "fields" string values seen, boxed
	internNums map[string]any    // "fields" numbers seen (by their text), boxed
}

// internAny returns the boxed value of text b from m (filling it in with
// conv on a miss), so that repeated values cost no allocation.
func internAny(m *map[string]any, b []byte, conv func([]byte) any) any {
	if len(b) > 64 {
		return conv(b)
	}
	if v, ok := (*m)[string(b)]; ok {
		return v
	}
	v := conv(b)
	if *m == nil {
		*m = make(map[string]any)
	}
	if len(*m) < 4096 {
		(*m)[string(b)] = v
	}
	return v
}

func boxString(b []byte) any { return string(b) }

// internStr returns string(b), from the intern map when short.
func (p *eventParser) internStr(b []byte) string {
	if len(b) > 64 {
		return string(b)
	}
	if s, ok := p.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if p.intern == nil {
		p.intern = make(map[string]string)
	}
	if len(p.intern) < 4096 {
		p.intern[s] = s
	}
	return s
}

// syntax records a syntax error at byte q.
func (p *eventParser) syntax(q int) (int, bool) {
	p.errKind, p.errN = errOther, q+1
	return 0, false
}

// short records that the body ended inside a value.
func (p *eventParser) short() (int, bool) {
	p.errKind, p.errN = errTerm, len(p.d)
	return 0, false
}

func (p *eventParser) save(kind int) {
	if p.saved == errNone {
		p.saved = kind
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *eventParser) ws(i int) int {
	d := p.d
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

// parseEvents parses the body; wireN is the compressed byte count for the
// 413 text. It returns the events before the first bad one and the answer.
func (s *Server) parseEvents(d []byte, termErr error, wireN, max int64, f *Fault) ([]Event, answer) {
	p := &eventParser{d: d, termErr: termErr}
	n := len(d)
	var events []Event
	if s.opts.Consume != nil {
		if pe, _ := s.eventPool.Get().(*[]Event); pe != nil {
			events = (*pe)[:0]
		}
	}
	var a answer
	pos := 0
	for i := 0; ; i++ {
		j := p.ws(pos)
		if j == n {
			if termErr != nil {
				p.short()
				a = p.fail(i, wireN, max)
			}
			break
		}
		var pe parsedEvent
		p.saved = errNone
		switch c := p.d[j]; {
		case c == '{':
			e, ok := p.object(j, &pe)
			if !ok {
				a = p.fail(i, wireN, max)
				break
			}
			pos = e
			if p.saved != errNone {
				p.errKind, p.errN = p.saved, e
				a = p.fail(i, wireN, max)
			}
		case c == '[':
			e, ok := p.value(j, 0)
			if ok {
				p.errKind, p.errN = errOther, e // an array is a type error
			}
			a = p.fail(i, wireN, max)
		default:
			e, ok := p.value(j, 0)
			switch {
			case !ok:
			case e == n && termErr != nil:
				p.short()
			case c == 'n': // null decodes to an empty event
				p.errKind = errNone
			default:
				p.errKind, p.errN = errOther, min(e+1, n)
			}
			if p.errKind != errNone {
				a = p.fail(i, wireN, max)
			}
		}
		if a.status != 0 {
			break
		}
		ev, bad := s.checkEvent(&pe, i, f)
		if bad.status != 0 {
			a = bad
			break
		}
		events = append(events, ev)
	}
	switch {
	case a.status != 0:
	case int64(n) > max:
		a = tooLarge(int64(n), max)
	case len(events) == 0:
		a = codeAnswer(CodeNoData)
	default:
		a = codeAnswer(CodeSuccess)
	}
	return events, a
}

// fail answers the failure of value i the way the reference did.
func (p *eventParser) fail(i int, wireN, max int64) answer {
	var mbe *http.MaxBytesError
	switch {
	case p.errKind == errTerm && errors.As(p.termErr, &mbe):
		return tooLarge(wireN, max)
	case int64(p.errN) > max:
		return tooLarge(int64(p.errN), max)
	case p.errKind == errFields:
		return eventAnswer(CodeIndexedFields, i)
	}
	return eventAnswer(CodeInvalidDataFormat, i)
}

// object parses the top-level event object at j into ev.
func (p *eventParser) object(j int, ev *parsedEvent) (int, bool) {
	d := p.d
	return p.members(j, func(ks, ke, k int) (int, bool) {
		switch field := p.matchField(d[ks+1 : ke-1]); field {
		case fieldEvent, fieldTime:
			ve, ok := p.value(k, 1)
			if !ok {
				return 0, false
			}
			if field == fieldEvent {
				ev.event = d[k:ve:ve]
			} else {
				ev.time = d[k:ve:ve]
			}
			return ve, true
		case fieldHost, fieldSource, fieldSourcetype, fieldIndex:
			ve, ok := p.value(k, 1)
			if !ok {
				return 0, false
			}
			var v string
			switch d[k] {
			case '"':
				v = p.stringValue(d[k:ve], field)
			case 'n': // null
			default:
				p.save(errOther)
			}
			switch field {
			case fieldHost:
				ev.host = v
			case fieldSource:
				ev.source = v
			case fieldSourcetype:
				ev.sourcetype = v
			case fieldIndex:
				ev.index = v
			}
			return ve, true
		case fieldFields:
			switch d[k] {
			case '{':
				if ev.fields == nil {
					ev.fields = make(map[string]any)
				}
				return p.anyObject(k, 2, ev.fields)
			case 'n':
				ev.fields = nil
				return p.value(k, 1)
			default:
				p.save(errFields)
				return p.value(k, 1)
			}
		default:
			return p.value(k, 1)
		}
	})
}

// members walks the object whose '{' is at k: for each member it calls f
// with the bounds [ks,ke) of the key's string and the start of its value
// (whitespace skipped), and f returns the index after the value. It
// returns the index after the closing '}'.
func (p *eventParser) members(k int, f func(ks, ke, v int) (int, bool)) (int, bool) {
	d := p.d
	k, ok := p.skip(k + 1)
	if !ok {
		return 0, false
	}
	if d[k] == '}' {
		return k + 1, true
	}
	for {
		if d[k] != '"' {
			return p.syntax(k)
		}
		ke, ok := p.str(k)
		if !ok {
			return 0, false
		}
		ks := k
		if k, ok = p.skip(ke); !ok {
			return 0, false
		}
		if d[k] != ':' {
			return p.syntax(k)
		}
		if k, ok = p.skip(k + 1); !ok {
			return 0, false
		}
		ve, ok := f(ks, ke, k)
		if !ok {
			return 0, false
		}
		if k, ok = p.skip(ve); !ok {
			return 0, false
		}
		switch d[k] {
		case ',':
			if k, ok = p.skip(k + 1); !ok {
				return 0, false
			}
		case '}':
			return k + 1, true
		default:
			return p.syntax(k)
		}
	}
}

// elements walks the array whose '[' is at k: for each element it calls f
// with the element's start, and f returns the index after it. It returns
// the index after the closing ']'.
func (p *eventParser) elements(k int, f func(v int) (int, bool)) (int, bool) {
	d := p.d
	k, ok := p.skip(k + 1)
	if !ok {
		return 0, false
	}
	if d[k] == ']' {
		return k + 1, true
	}
	for {
		ve, ok := f(k)
		if !ok {
			return 0, false
		}
		if k, ok = p.skip(ve); !ok {
			return 0, false
		}
		switch d[k] {
		case ',':
			if k, ok = p.skip(k + 1); !ok {
				return 0, false
			}
		case ']':
			return k + 1, true
		default:
			return p.syntax(k)
		}
	}
}

// skip returns the index of the first non-whitespace byte from i, or
// records that the body ended inside a value.
func (p *eventParser) skip(i int) (int, bool) {
	if i = p.ws(i); i == len(p.d) {
		return p.short()
	}
	return i, true
}

// matchField maps a key's quoted contents to a field id.
func (p *eventParser) matchField(raw []byte) int {
	if !p.strEsc && !p.strHigh {
		if len(raw) < 4 || len(raw) > 10 {
			return fieldUnknown
		}
		for id := fieldTime; id <= fieldFields; id++ {
			if asciiFoldEqual(raw, fieldNames[id]) {
				return id
			}
		}
		return fieldUnknown
	}
	key := unquoteBytes(raw, true)
	folded := appendFoldedName(make([]byte, 0, 32), key)
	for id := fieldTime; id <= fieldFields; id++ {
		if string(folded) == fieldNames[id] {
			return id
		}
	}
	return fieldUnknown
}

// asciiFoldEqual reports whether ASCII raw upper-cased equals upper.
func asciiFoldEqual(raw []byte, upper string) bool {
	if len(raw) != len(upper) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// appendFoldedName is encoding/json's key folding.
func appendFoldedName(out, in []byte) []byte {
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

// foldRune is the smallest rune of r's simple case-folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// stringValue unquotes the string literal q (just scanned by str, whose
// flags still hold), interning repeated values of field.
func (p *eventParser) stringValue(q []byte, field int) string {
	raw := q[1 : len(q)-1]
	if p.strEsc || p.strHigh && !utf8.Valid(raw) {
		return string(unquoteBytes(raw, true))
	}
	var last *string
	switch field {
	case fieldHost:
		last = &p.lastHost
	case fieldSource:
		last = &p.lastSource
	case fieldSourcetype:
		last = &p.lastSourcetype
	case fieldIndex:
		last = &p.lastIndex
	default:
		return string(raw)
	}
	if string(raw) != *last {
		*last = string(raw)
	}
	return *last
}

// unquoteBytes decodes a scanned string's contents like encoding/json:
// escapes resolved, invalid UTF-8 and bad surrogates become U+FFFD. The
// result may alias s.
func unquoteBytes(s []byte, mayNeedWork bool) []byte {
	r := 0
	if mayNeedWork {
		for r < len(s) {
			c := s[r]
			if c == '\\' {
				break
			}
			if c < utf8.RuneSelf {
				r++
				continue
			}
			rr, size := utf8.DecodeRune(s[r:])
			if rr == utf8.RuneError && size == 1 {
				break
			}
			r += size
		}
	} else {
		r = len(s)
	}
	if r == len(s) {
		return s
	}
	b := make([]byte, r, len(s)+2*utf8.UTFMax)
	copy(b, s[:r])
	for r < len(s) {
		c := s[r]
		switch {
		case c == '\\':
			r++
			switch s[r] {
			case '"', '\\', '/':
				b = append(b, s[r])
				r++
			case 'b':
				b = append(b, '\b')
				r++
			case 'f':
				b = append(b, '\f')
				r++
			case 'n':
				b = append(b, '\n')
				r++
			case 'r':
				b = append(b, '\r')
				r++
			case 't':
				b = append(b, '\t')
				r++
			case 'u':
				rr := getu4(s[r-1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if rr1 := getu4(s[r:]); rr1 >= 0 {
						if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
							r += 6
							b = utf8.AppendRune(b, dec)
							break
						}
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return b
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// strStop marks the bytes that end a run of plain string bytes.
var strStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// str scans the string literal at k (d[k] == '"') and returns the index
// after its closing quote; strHigh and strEsc describe its contents.
func (p *eventParser) str(k int) (int, bool) {
	d, n := p.d, len(p.d)
	i := k + 1
	var acc uint64
	esc := false
	for {
		// Eight bytes at a time while none is '"', '\\' or a control.
		for i+8 <= n {
			x := binary.LittleEndian.Uint64(d[i:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			stop := ((q - lsb) &^ q) | ((b - lsb) &^ b) | ((x - lsb*0x20) &^ x)
			if stop&msb != 0 {
				i += bits.TrailingZeros64(stop&msb) >> 3
				acc |= x & (1<<(uint(bits.TrailingZeros64(stop&msb))&^7) - 1)
				break
			}
			acc |= x
			i += 8
		}
		for i < n && !strStop[d[i]] {
			acc |= uint64(d[i])
			i++
		}
		if i == n {
			return p.short()
		}
		switch c := d[i]; c {
		case '"':
			p.strHigh, p.strEsc = acc&msb != 0, esc
			return i + 1, true
		case '\\':
			esc = true
			i++
			if i == n {
				return p.short()
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				i++
				for range 4 {
					if i == n {
						return p.short()
					}
					c := d[i]
					if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
						return p.syntax(i)
					}
					i++
				}
			default:
				return p.syntax(i)
			}
		default: // control character
			return p.syntax(i)
		}
	}
}

// value validates the value at k (not whitespace) inside containers of the
// given depth and returns the index after it.
func (p *eventParser) value(k, depth int) (int, bool) {
	d := p.d
	switch c := d[k]; {
	case c == '"':
		return p.str(k)
	case c == '{':
		if depth+1 > maxNestingDepth {
			return p.syntax(k)
		}
		return p.members(k, func(_, _, v int) (int, bool) { return p.value(v, depth+1) })
	case c == '[':
		if depth+1 > maxNestingDepth {
			return p.syntax(k)
		}
		return p.elements(k, func(v int) (int, bool) { return p.value(v, depth+1) })
	case c == '-' || '0' <= c && c <= '9':
		return p.number(k)
	case c == 't':
		return p.literal(k, "true")
	case c == 'f':
		return p.literal(k, "false")
	case c == 'n':
		return p.literal(k, "null")
	}
	return p.syntax(k)
}

func (p *eventParser) literal(k int, lit string) (int, bool) {
	d, n := p.d, len(p.d)
	for j := 1; j < len(lit); j++ {
		if k+j == n {
			return p.short()
		}
		if d[k+j] != lit[j] {
			return p.syntax(k + j)
		}
	}
	return k + len(lit), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number scans the number at k; it may end at len(d), which the caller
// judges.
func (p *eventParser) number(k int) (int, bool) {
	d, n := p.d, len(p.d)
	i := k
	if d[i] == '-' {
		i++
		if i == n {
			return p.short()
		}
	}
	switch {
	case d[i] == '0':
		i++
	case isDigit(d[i]):
		i++
		for i < n && isDigit(d[i]) {
			i++
		}
	default:
		return p.syntax(i)
	}
	if i < n && d[i] == '.' {
		i++
		if i == n {
			return p.short()
		}
		if !isDigit(d[i]) {
			return p.syntax(i)
		}
		for i < n && isDigit(d[i]) {
			i++
		}
	}
	if i < n && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i == n {
			return p.short()
		}
		if d[i] == '+' || d[i] == '-' {
			i++
			if i == n {
				return p.short()
			}
		}
		if !isDigit(d[i]) {
			return p.syntax(i)
		}
		for i < n && isDigit(d[i]) {
			i++
		}
	}
	return i, true
}

// anyValue decodes the value at k the way encoding/json decodes into an
// interface (float64, string, bool, nil, []any, map[string]any); inside
// "fields", so a number out of range is a "fields" type error.
func (p *eventParser) anyValue(k, depth int) (any, int, bool) {
	d := p.d
	switch c := d[k]; {
	case c == '"':
		e, ok := p.str(k)
		if !ok {
			return nil, 0, false
		}
		return internAny(&p.internStrs, unquoteBytes(d[k+1:e-1], p.strEsc || p.strHigh), boxString), e, true
	case c == '{':
		m := make(map[string]any)
		e, ok := p.anyObject(k, depth+1, m)
		return m, e, ok
	case c == '[':
		return p.anyArray(k, depth+1)
	case c == '-' || isDigit(c):
		e, ok := p.number(k)
		if !ok {
			return nil, 0, false
		}
		v := internAny(&p.internNums, d[k:e], parseNumber)
		if v == nil { // out of float64's range
			p.save(errFields)
		}
		return v, e, true
	case c == 't':
		e, ok := p.literal(k, "true")
		return true, e, ok
	case c == 'f':
		e, ok := p.literal(k, "false")
		return false, e, ok
	case c == 'n':
		e, ok := p.literal(k, "null")
		return nil, e, ok
	}
	_, ok := p.syntax(k)
	return nil, 0, ok
}

// parseNumber converts a JSON number like encoding/json, or returns nil
// when it is out of float64's range (a type error there).
func parseNumber(num []byte) any {
	f, err := strconv.ParseFloat(unsafe.String(&num[0], len(num)), 64)
	if err != nil {
		return nil
	}
	return f
}

// anyObject decodes the object at k, at the given depth, into m.
func (p *eventParser) anyObject(k, depth int, m map[string]any) (int, bool) {
	if depth > maxNestingDepth {
		return p.syntax(k)
	}
	return p.members(k, func(ks, ke, k int) (int, bool) {
		// The key's unquoting reads p.strEsc and p.strHigh, which its str
		// call set: nothing has called str since.
		key := p.internStr(unquoteBytes(p.d[ks+1:ke-1], p.strEsc || p.strHigh))
		v, ve, ok := p.anyValue(k, depth)
		if ok {
			m[key] = v
		}
		return ve, ok
	})
}

// anyArray decodes the array at k, at the given depth.
func (p *eventParser) anyArray(k, depth int) (any, int, bool) {
	if depth > maxNestingDepth {
		_, ok := p.syntax(k)
		return nil, 0, ok
	}
	a := make([]any, 0)
	e, ok := p.elements(k, func(k int) (int, bool) {
		v, ve, ok := p.anyValue(k, depth)
		if ok {
			a = append(a, v)
		}
		return ve, ok
	})
	if !ok {
		return nil, 0, false
	}
	return a, e, true
}
