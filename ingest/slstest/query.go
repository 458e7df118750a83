package slstest

import (
	"fmt"
	"strings"

	sls "github.com/aliyun/aliyun-log-go-sdk"
)

// filter is a compiled PullLogs query; nil matches everything.
type filter []cond

type cond struct {
	key, value string
	neq        bool
}

// parseQuery accepts the subset of SPL the emulator supports:
//
//	*
//	* | where KEY = 'VALUE'
//	* | where KEY != 'VALUE' and "KEY 2" = 'VALUE' ...
//
// Keys are bare words or double-quoted; values are single-quoted (” inside
// a value is a quote). A log lacking KEY matches neither = nor != (SQL null
// semantics). Anything else is rejected with 400 InvalidQueryString.
func parseQuery(q string) (filter, error) {
	q = strings.TrimSpace(q)
	rest, ok := strings.CutPrefix(q, "*")
	if !ok {
		return nil, fmt.Errorf("query must start with *")
	}
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return filter{}, nil
	}
	rest, ok = strings.CutPrefix(rest, "|")
	if !ok {
		return nil, fmt.Errorf("expected | after *")
	}
	rest = strings.TrimSpace(rest)
	rest, ok = cutWord(rest, "where")
	if !ok {
		return nil, fmt.Errorf("only the where instruction is supported")
	}
	var f filter
	for {
		var c cond
		var err error
		if c.key, rest, err = parseKey2(rest); err != nil {
			return nil, err
		}
		rest = strings.TrimSpace(rest)
		switch {
		case strings.HasPrefix(rest, "!="):
			c.neq, rest = true, rest[2:]
		case strings.HasPrefix(rest, "<>"):
			c.neq, rest = true, rest[2:]
		case strings.HasPrefix(rest, "="):
			rest = rest[1:]
		default:
			return nil, fmt.Errorf("expected = or != after %s", c.key)
		}
		if c.value, rest, err = parseString(strings.TrimSpace(rest)); err != nil {
			return nil, err
		}
		f = append(f, c)
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return f, nil
		}
		if rest, ok = cutWord(rest, "and"); !ok {
			return nil, fmt.Errorf("unexpected %q", rest)
		}
	}
}

func cutWord(s, w string) (string, bool) {
	if len(s) < len(w) || !strings.EqualFold(s[:len(w)], w) {
		return s, false
	}
	rest := s[len(w):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return s, false
	}
	return strings.TrimSpace(rest), true
}

func parseKey2(s string) (string, string, error) {
	if strings.HasPrefix(s, `"`) {
		end := strings.Index(s[1:], `"`)
		if end < 0 {
			return "", "", fmt.Errorf("unterminated quoted key")
		}
		return s[1 : end+1], s[end+2:], nil
	}
	i := strings.IndexAny(s, " \t=!<")
	if i <= 0 {
		return "", "", fmt.Errorf("expected a key in %q", s)
	}
	return s[:i], s[i:], nil
}

func parseString(s string) (string, string, error) {
	if !strings.HasPrefix(s, "'") {
		return "", "", fmt.Errorf("expected a quoted value in %q", s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", fmt.Errorf("unterminated value")
}

// match reports whether a log passes every condition.
func (f filter) match(l *sls.Log) bool {
	for _, c := range f {
		found := false
		for _, kv := range l.Contents {
			if kv.GetKey() == c.key {
				found = true
				if (kv.GetValue() == c.value) == c.neq {
					return false
				}
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
