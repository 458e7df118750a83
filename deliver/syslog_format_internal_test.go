package deliver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"slsrelay/deliver/syslogtest"
)

func syslogEvents() []Event {
	m := goldenMeta()
	bare := &Meta{Project: "proj", Logstore: "audit-log"}
	odd := &Meta{Project: "proj", Logstore: "audit-log", Shard: 1, Topic: `t"o\p]ic`, Source: "héllo",
		Tags: []Field{{"bad key=\"x]", "v\n]\\"}, {"a-very-long-tag-key-of-more-than-32-bytes", "x"}}}
	ev := func(sec, ns int64, m *Meta, kv ...string) Event {
		e := Event{Time: time.Unix(sec, ns), Meta: m}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Fields = append(e.Fields, Field{kv[i], kv[i+1]})
		}
		return e
	}
	return []Event{
		ev(1700000000, 123456789, m, "user", "alice", "action", "login", "level", "warning"),
		ev(1700000001, 0, bare, "msg", "two words", "empty", ""),
		ev(1700000002, 999, odd, "quote\"back\\slash", "tab\tnl\ncr\r", "eq=key", "a=b|c^d]e", "utf8", "héllo 世界 🎉", "bad", "a\xffb\xc3", "ctl", "\x00\x01\x7f"),
	}
}

func TestSyslogFormat_Golden(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    SyslogOptions
	}{
		{"rfc5424-json", SyslogOptions{}},
		{"rfc5424-json-bom-mapped", SyslogOptions{BOM: true, Facility: "local4", Severity: "{{field:level}}", ProcID: "{{shard}}", MsgID: "{{topic}}", AppName: "{{logstore}}", EnterpriseID: 12345}},
		{"rfc5424-kv", SyslogOptions{Payload: "kv"}},
		{"rfc5424-kv-always-comma", SyslogOptions{Payload: "kv", KVQuote: "always", KVSeparator: ", ", KVAssign: ":"}},
		{"rfc5424-kv-never", SyslogOptions{Payload: "kv", KVQuote: "never"}},
		{"rfc3164-kv-meta", SyslogOptions{Format: "rfc3164", Payload: "kv", PayloadMeta: true, ProcID: "{{shard}}", Hostname: "{{source}}"}},
		{"rfc3164-json", SyslogOptions{Format: "rfc3164", AppName: "sls audit/log"}},
		{"cef", SyslogOptions{Payload: "cef", CEFVendor: "Acme|Corp", CEFProduct: "{{logstore}}", CEFEventClass: "{{field:action|topic}}", CEFName: "{{field:action}}", CEFSeverity: "5", FieldMap: map[string]string{"user": "suser"}}},
		{"leef-tab", SyslogOptions{Payload: "leef", LEEFEventID: "{{field:action|topic}}", PayloadMeta: true}},
		{"leef-caret", SyslogOptions{Payload: "leef", LEEFDelimiter: "^", FieldMap: map[string]string{"user": "usrName"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Address = "127.0.0.1:514"
			s, err := NewSyslog(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			enc, bad, _ := s.encode(syslogEvents(), 0)
			if bad != -1 {
				t.Fatalf("bad = %d", bad)
			}
			var got strings.Builder
			for i := 0; i < len(enc.offs)-1; i++ {
				msg := enc.body(i, i+1)
				if !utf8.Valid(msg) {
					t.Errorf("message %d is not UTF-8", i)
				}
				if strings.ContainsAny(string(msg), "\r\n") {
					t.Errorf("message %d holds a line break", i)
				}
				got.Write(msg)
				got.WriteByte('\n')
			}
			path := filepath.Join("..", "testdata", "syslog", tc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got.String() != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got.String(), want)
			}
		})
	}
}

func TestSyslog_Oversize(t *testing.T) {
	long := strings.Repeat("é", 2000) // 4000 bytes
	evs := []Event{{Time: time.Unix(1700000000, 0), Meta: goldenMeta(), Fields: []Field{{"a", "1"}}},
		{Time: time.Unix(1700000000, 0), Meta: goldenMeta(), Fields: []Field{{"big", long}}}}
	t.Run("truncate", func(t *testing.T) {
		s, err := NewSyslog(SyslogOptions{Address: "127.0.0.1:514", Network: "udp"})
		if err != nil {
			t.Fatal(err)
		}
		enc, bad, _ := s.encode(evs, 0)
		msg := enc.body(1, 2)
		if bad != -1 || len(msg) > DefaultSyslogUDPMaxBytes || !strings.HasSuffix(string(msg), SyslogTruncationMarker) || !utf8.Valid(msg) {
			t.Errorf("bad %d, message of %d bytes: ...%q", bad, len(msg), msg[len(msg)-40:])
		}
	})
	t.Run("rfc5424 marked in SD, or the SD gives way", func(t *testing.T) {
		manyTags := &Meta{Project: "proj", Logstore: "audit-log"}
		for i := 0; i < 200; i++ {
			manyTags.Tags = append(manyTags.Tags, Field{"__tag__:k" + strconv.Itoa(i), "value"})
		}
		for _, tc := range []struct {
			name   string
			meta   *Meta
			max    int
			sdKept bool
		}{
			{"sd kept", goldenMeta(), 1024, true},
			{"sd too big", manyTags, 1024, false},
			{"tiny max: suffix only", goldenMeta(), 92, true},
		} {
			s, err := NewSyslog(SyslogOptions{Address: "127.0.0.1:514", Network: "tcp", MaxMessageBytes: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			enc, _, cut := s.encode([]Event{{Time: time.Unix(1700000000, 0), Meta: tc.meta, Fields: []Field{{"big", long}}}}, 0)
			msg := string(enc.body(0, 1))
			if cut.n != 1 || len(msg) > tc.max || !strings.HasSuffix(msg, SyslogTruncationMarker) || !utf8.ValidString(msg) {
				t.Errorf("%s: cut %+v, %d bytes: %q", tc.name, cut, len(msg), msg)
			}
			if tc.max < 100 {
				continue
			}
			if !strings.Contains(msg, `[slsrelay@32473 truncated="`+strconv.Itoa(cut.largest)+`"] `) {
				t.Errorf("%s: no marking SD element: %q", tc.name, msg[:min(len(msg), 300)])
			}
			if strings.Contains(msg, "[sls@32473 ") != tc.sdKept {
				t.Errorf("%s: sls SD kept = %v, want %v", tc.name, !tc.sdKept, tc.sdKept)
			}
		}
	})
	t.Run("dead-letter", func(t *testing.T) {
		s, err := NewSyslog(SyslogOptions{Address: "127.0.0.1:514", Network: "udp", Oversize: "dead-letter"})
		if err != nil {
			t.Fatal(err)
		}
		enc, bad, _ := s.encode(evs, 0)
		if bad != 1 || len(enc.offs) != 2 {
			t.Errorf("bad %d, %d messages; want 1, 1", bad, len(enc.offs)-1)
		}
	})
}

func TestSyslogOptions_Errors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    SyslogOptions
		want string
	}{
		{"no address", SyslogOptions{}, "Address"},
		{"network", SyslogOptions{Address: "h:1", Network: "sctp"}, "Network"},
		{"udp tls", SyslogOptions{Address: "h:1", Network: "udp", TLS: true}, "TLS is not available"},
		{"framing", SyslogOptions{Address: "h:1", Framing: "lf"}, "Framing"},
		{"payload", SyslogOptions{Address: "h:1", Payload: "xml"}, "Payload"},
		{"facility", SyslogOptions{Address: "h:1", Facility: "local9"}, "Facility"},
		{"severity", SyslogOptions{Address: "h:1", Severity: "loud"}, "Severity"},
		{"leef delimiter", SyslogOptions{Address: "h:1", LEEFDelimiter: "=="}, "LEEFDelimiter"},
		{"template", SyslogOptions{Address: "h:1", Hostname: "{{nope}}"}, "Hostname"},
		{"max bytes", SyslogOptions{Address: "h:1", MaxMessageBytes: 10}, "MaxMessageBytes"},
		{"cert", SyslogOptions{Address: "h:1", Network: "tls", CertFile: "x"}, "CertFile and KeyFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSyslog(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// TestSyslogFormat_Escapes checks each encoding's escaping against its spec
// by reading the value back the way a receiver following that spec would.
func TestSyslogFormat_Escapes(t *testing.T) {
	const v = "a\tb\nc\rd=e|f^g\\h]i\"j"
	format := func(t *testing.T, o SyslogOptions, key string) string {
		t.Helper()
		o.Address = "127.0.0.1:514"
		s, err := NewSyslog(o)
		if err != nil {
			t.Fatal(err)
		}
		m := &Meta{Project: "proj", Logstore: "audit-log", Tags: []Field{{"__tag__:k", v}}}
		enc, bad, _ := s.encode([]Event{{Time: time.Unix(1700000000, 0), Meta: m, Fields: []Field{{key, v}, {"z", "1"}}}}, 0)
		if bad != -1 {
			t.Fatalf("bad = %d", bad)
		}
		msg := string(enc.body(0, 1))
		if strings.ContainsAny(msg, "\r\n") {
			t.Errorf("message holds a line break: %q", msg)
		}
		return msg
	}
	t.Run("rfc5424 sd", func(t *testing.T) {
		// RFC 5424 6.3.3 escapes only '"', '\' and ']'; a line break has no
		// escape and becomes a space; TAB stays.
		msg := format(t, SyslogOptions{}, "k")
		m, err := syslogtest.ParseRFC5424(msg)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := syslogtest.ParseSD(m.SD)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sd["sls_tags@32473"]["k"], "a\tb c d=e|f^g\\h]i\"j"; got != want {
			t.Errorf("SD value read back as %q, want %q (SD %s)", got, want, m.SD)
		}
	})
	t.Run("cef", func(t *testing.T) {
		// CEF extension values escape '\' and '=' and write CR, LF as \r, \n:
		// everything else, TAB included, is raw, so the value reads back
		// exactly. Header fields escape '\' and '|'; line breaks become spaces.
		msg := format(t, SyslogOptions{Payload: "cef", CEFName: "{{field:k}}"}, "k")
		hdr := strings.Split(msg[strings.Index(msg, "CEF:0|"):], "|rt=")[0]
		if want := `|a` + "\t" + `b c d=e\|f^g\\h]i"j|`; !strings.Contains(hdr, want) {
			t.Errorf("CEF header %q lacks the name %q", hdr, want)
		}
		ext := msg[strings.Index(msg, "|rt="):]
		ext = ext[strings.Index(ext, " k=")+3 : strings.Index(ext, " z=1")]
		var got strings.Builder
		for i := 0; i < len(ext); i++ {
			c := ext[i]
			if c == '\\' && i+1 < len(ext) {
				i++
				switch ext[i] {
				case 'n':
					c = '\n'
				case 'r':
					c = '\r'
				case '\\', '=':
					c = ext[i]
				default:
					t.Errorf("escape \\%c is not CEF", ext[i])
				}
			} else if c == '=' {
				t.Errorf("unescaped '=' in %q", ext)
			}
			got.WriteByte(c)
		}
		if got.String() != v {
			t.Errorf("CEF extension value %q reads back as %q, want %q", ext, got.String(), v)
		}
	})
	for _, tc := range []struct {
		name, delim, header, key, want string
	}{
		// LEEF has no escape in attributes: the delimiter, CR and LF become a
		// space; TAB stays unless it is the delimiter.
		{"leef caret", "^", "|^|", "k", "a\tb c d=e|f g\\h]i\"j"},
		{"leef tab", "tab", "|x09|", "k", "a b c d=e|f^g\\h]i\"j"},
		{"leef pipe", "|", "|x7C|", "k", "a\tb c d=e f^g\\h]i\"j"},
		{"leef space", "x20", "|x20|", "k", "a\tb_c_d=e|f^g\\h]i\"j"},
		{"leef underscore", "_", "|_|", "my_key", "a\tb c d=e|f^g\\h]i\"j"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := format(t, SyslogOptions{Payload: "leef", LEEFDelimiter: tc.delim}, tc.key)
			leef := msg[strings.Index(msg, "LEEF:2.0|"):]
			if !strings.HasPrefix(leef[strings.Index(leef, "|sls|")+4:], tc.header) {
				t.Fatalf("LEEF header %q: want the delimiter written as %q", leef, tc.header)
			}
			d, _ := ParseLEEFDelimiter(tc.delim)
			body := leef[strings.Index(leef, tc.header)+len(tc.header):]
			attrs := map[string]string{}
			for _, a := range strings.Split(body, string(d)) {
				k, val, ok := strings.Cut(a, "=")
				if !ok {
					t.Fatalf("attribute %q without '=' in %q", a, body)
				}
				attrs[k] = val
			}
			key := strings.ReplaceAll(tc.key, "_", "-")
			if len(attrs) != 4 || attrs[key] != tc.want || attrs["z"] != "1" {
				t.Errorf("attributes %q, want %s=%q, z=1 and devTime, devTimeFormat", attrs, key, tc.want)
			}
		})
	}
	t.Run("kv", func(t *testing.T) {
		// kv is our own format: backslash escapes inside quotes.
		msg := format(t, SyslogOptions{Payload: "kv"}, "k")
		if want := `k="a\tb\nc\rd=e|f^g\\h]i\"j" z=1`; !strings.HasSuffix(msg, want) {
			t.Errorf("kv payload %q, want suffix %q", msg, want)
		}
	})
}

// TestSyslogFormat_SDParams: SyslogOptions.SDParams end the [sls@PEN]
// element, sorted, escaped like every SD value (replay --tag).
func TestSyslogFormat_SDParams(t *testing.T) {
	s, err := NewSyslog(SyslogOptions{Address: "127.0.0.1:514", SDParams: map[string]string{"replay": "job-1", "a": `x"]`}})
	if err != nil {
		t.Fatal(err)
	}
	m := &Meta{Project: "proj", Logstore: "audit-log", Shard: 2}
	enc, _, _ := s.encode([]Event{{Time: time.Unix(1700000000, 0), Meta: m, Fields: []Field{{"k", "v"}}}}, 0)
	msg := string(enc.body(0, 1))
	if want := `[sls@32473 project="proj" logstore="audit-log" shard="2" a="x\"\]" replay="job-1"]`; !strings.Contains(msg, want) {
		t.Errorf("got %s\nwant it to contain %s", msg, want)
	}
}
