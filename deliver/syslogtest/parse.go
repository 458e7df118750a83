package syslogtest

import (
	"errors"
	"strings"
)

// Message is an RFC 5424 message split into its parts.
type Message struct {
	Pri                                             string
	Timestamp, Hostname, AppName, ProcID, MsgID, SD string
	Msg                                             string
}

// ParseRFC5424 splits "<PRI>1 TS HOST APP PROCID MSGID SD MSG" and checks
// the SD syntax; it is strict, so a fake built on it rejects malformed
// messages.
func ParseRFC5424(s string) (Message, error) {
	var m Message
	if !strings.HasPrefix(s, "<") {
		return m, errors.New("no PRI")
	}
	end := strings.Index(s, ">1 ")
	if end < 2 || end > 4 {
		return m, errors.New("bad PRI or version")
	}
	m.Pri, s = s[1:end], s[end+3:]
	parts := strings.SplitN(s, " ", 6)
	if len(parts) < 6 {
		return m, errors.New("missing header fields")
	}
	m.Timestamp, m.Hostname, m.AppName, m.ProcID, m.MsgID = parts[0], parts[1], parts[2], parts[3], parts[4]
	rest := parts[5]
	if strings.HasPrefix(rest, "-") {
		m.SD, rest = "-", rest[1:]
	} else {
		n, err := sdLen(rest)
		if err != nil {
			return m, err
		}
		m.SD, rest = rest[:n], rest[n:]
	}
	if rest != "" {
		if rest[0] != ' ' {
			return m, errors.New("no space after SD")
		}
		rest = rest[1:]
	}
	m.Msg = strings.TrimPrefix(rest, "\ufeff")
	return m, nil
}

// sdLen returns the length of the SD elements at the start of s.
func sdLen(s string) (int, error) {
	i := 0
	for i < len(s) && s[i] == '[' {
		inQuote := false
		j := i + 1
		for ; j < len(s); j++ {
			c := s[j]
			if inQuote {
				if c == '\\' {
					j++
				} else if c == '"' {
					inQuote = false
				}
				continue
			}
			if c == '"' {
				inQuote = true
			} else if c == ']' {
				break
			}
		}
		if j >= len(s) {
			return 0, errors.New("unterminated SD element")
		}
		i = j + 1
	}
	if i == 0 {
		return 0, errors.New("no SD")
	}
	return i, nil
}

// ParseSD parses RFC 5424 structured data ("-" or "[id k=\"v\" …]…") into
// SD-ID → param → value, unescaping \" \\ \].
func ParseSD(s string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	if s == "-" || s == "" {
		return out, nil
	}
	for len(s) > 0 {
		if s[0] != '[' {
			return nil, errors.New("SD: expected [")
		}
		s = s[1:]
		sp := strings.IndexAny(s, " ]")
		if sp < 0 {
			return nil, errors.New("SD: unterminated")
		}
		id := s[:sp]
		params := map[string]string{}
		out[id] = params
		s = s[sp:]
		for len(s) > 0 && s[0] == ' ' {
			s = s[1:]
			eq := strings.Index(s, `="`)
			if eq < 0 {
				return nil, errors.New("SD: param without value")
			}
			name := s[:eq]
			s = s[eq+2:]
			var v strings.Builder
			for {
				if s == "" {
					return nil, errors.New("SD: unterminated value")
				}
				c := s[0]
				if c == '\\' && len(s) > 1 && (s[1] == '"' || s[1] == '\\' || s[1] == ']') {
					v.WriteByte(s[1])
					s = s[2:]
					continue
				}
				s = s[1:]
				if c == '"' {
					break
				}
				v.WriteByte(c)
			}
			params[name] = v.String()
		}
		if s == "" || s[0] != ']' {
			return nil, errors.New("SD: expected ]")
		}
		s = s[1:]
	}
	return out, nil
}
