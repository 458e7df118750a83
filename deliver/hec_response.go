package deliver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// hecResponse is what a HEC JSON answer may carry. Fields absent or of an
// unexpected type keep their zero value (-1 for InvalidEvent).
type hecResponse struct {
	Text         string
	Code         int
	HasCode      bool
	InvalidEvent int // "invalid-event-number", -1 when absent
	AckID        uint64
	HasAckID     bool
}

// parseHECResponse reads a HEC answer leniently: numbers may come as JSON
// numbers or numeric strings; anything else is ignored. ok is false when the
// body is not a JSON object. It never panics.
func parseHECResponse(body []byte) (r hecResponse, ok bool) {
	r.InvalidEvent = -1
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(body), &raw); err != nil || raw == nil {
		return r, false
	}
	if v, ok := raw["text"]; ok {
		var s string
		if json.Unmarshal(v, &s) == nil {
			r.Text = truncateText(s)
		}
	}
	if n, ok := jsonInt(raw["code"]); ok && n >= -1<<31 && n < 1<<31 {
		r.Code, r.HasCode = int(n), true
	}
	if n, ok := jsonInt(raw["invalid-event-number"]); ok && n >= 0 && n < 1<<31 {
		r.InvalidEvent = int(n)
	}
	if n, ok := jsonInt(raw["ackId"]); ok && n >= 0 {
		r.AckID, r.HasAckID = uint64(n), true
	}
	return r, true
}

// parseAckResponse reads {"acks":{"7":true}} and reports whether id is acked.
func parseAckResponse(body []byte, id uint64) (acked, ok bool) {
	var raw struct {
		Acks map[string]json.RawMessage `json:"acks"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(body), &raw); err != nil || raw.Acks == nil {
		return false, false
	}
	v, found := raw.Acks[strconv.FormatUint(id, 10)]
	if !found {
		return false, true
	}
	var b bool
	if json.Unmarshal(v, &b) != nil {
		return false, true
	}
	return b, true
}

func jsonInt(v json.RawMessage) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := string(v)
	if len(s) >= 2 && s[0] == '"' {
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int64(f)) {
			return 0, false
		}
		n = int64(f)
	}
	return n, true
}

// truncateText keeps an answer's text short and valid UTF-8 for errors/logs.
func truncateText(s string) string {
	const limit = 200
	if len(s) > limit {
		s = s[:limit]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Splunk HEC status codes ("code" in answers) the classification cares about.
const (
	hecCodeIncorrectIndex   = 7
	hecCodeChannelMissing   = 10
	hecCodeInvalidChannel   = 11
	hecCodeAckDisabled      = 14
	hecCodeQueryAuthDisable = 16
)

// classifyHEC maps a HEC answer to nil (2xx) or an *Error:
//
//	2xx                                   → success
//	408, 429, 5xx (503 code 9 included)   → Transient
//	400 codes 5, 6, 12, 13, 15            → Permanent (the data is bad), with
//	                                        EventIndex N when the answer has
//	                                        invalid-event-number N
//	413                                   → Permanent (the sink splits first)
//	400 code 7 (incorrect index)          → Config
//	400 code 10/11/14/16 (channel, ack, query auth) → Config
//	401, 403                              → Config
//	404, 405 (wrong URL or HEC disabled)  → Config
//	any other 4xx, or a 400 without one of the codes above (a proxy's 407,
//	411, 414, 415…: see unlistedHEC)      → Config: the sink pauses and
//	                                        retries; nothing is dead-lettered
//	1xx, 3xx and anything else            → Config
//
// Only the answers Splunk documents as rejecting the data are Permanent: an
// answer nobody documented says nothing about the data, and treating it as
// a rejection would split every request and dead-letter the whole stream.
// body may be garbage; then only the status decides.
func classifyHEC(status int, body []byte) *Error {
	r, _ := parseHECResponse(body)
	e := &Error{Status: status, Code: r.Code, EventIndex: -1, Text: r.Text}
	if e.Text == "" {
		e.Text = http.StatusText(status)
	}
	switch {
	case status >= 200 && status <= 299:
		return nil
	case TransientStatus(status):
		e.Kind = Transient
	case status == http.StatusRequestEntityTooLarge:
		e.Kind = Permanent
	case status == http.StatusBadRequest && r.HasCode && hecDataCodes[r.Code]:
		e.Kind = Permanent
		e.EventIndex = r.InvalidEvent
	default: // 400 config codes, 401, 403, 404, 405, unlisted 4xx, 1xx, 3xx
		e.Kind = Config
	}
	return e
}

// hecDataCodes are the codes of a 400 that reject the data itself: 5 no
// data, 6 invalid data format, 12 event field required, 13 event field
// blank, 15 error in handling indexed fields.
var hecDataCodes = map[int]bool{5: true, 6: true, 12: true, 13: true, 15: true}

// unlistedHEC reports whether a failed answer is one HEC does not list: a
// 4xx other than 400 with a known code, 401, 403, 404, 405, 408, 413 and 429
// (typically from a proxy in between: 407, 411, 414, 415…).
func unlistedHEC(status, code int, hasCode bool) bool {
	switch status {
	case http.StatusBadRequest:
		if !hasCode {
			return true
		}
		switch code {
		case hecCodeIncorrectIndex, hecCodeChannelMissing, hecCodeInvalidChannel,
			hecCodeAckDisabled, hecCodeQueryAuthDisable:
			return false
		}
		return !hecDataCodes[code]
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status <= 499
}
