package deliver

import (
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/hec")

func mustFormatter(t testing.TB, host, source, sourcetype, index string) *hecFormatter {
	t.Helper()
	f := &hecFormatter{}
	for _, x := range []struct {
		src string
		dst **template
	}{{host, &f.host}, {source, &f.source}, {sourcetype, &f.sourcetype}, {index, &f.index}} {
		tp, err := parseTemplate(x.src)
		if err != nil {
			t.Fatal(err)
		}
		*x.dst = tp
	}
	return f
}

func goldenMeta() *Meta {
	return &Meta{Project: "proj", Logstore: "audit-log", Shard: 3, Topic: "audit", Source: "10.0.0.1",
		Tags: []Field{{"__hostname__", "web-1"}, {"__tag__:k8s.pod", "api-7f9"}}}
}

func TestHECFormat_Golden(t *testing.T) {
	m := goldenMeta()
	bare := &Meta{Project: "proj", Logstore: "audit-log", Shard: 0}
	ev := func(sec, ns int64, m *Meta, kv ...string) Event {
		e := Event{Time: time.Unix(sec, ns), Meta: m}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Fields = append(e.Fields, Field{kv[i], kv[i+1]})
		}
		return e
	}
	for _, tc := range []struct {
		name                            string
		host, source, sourcetype, index string
		events                          []Event
	}{
		{name: "defaults", host: DefaultHECHost, source: DefaultHECSource,
			events: []Event{ev(1700000000, 123456789, m, "user", "alice", "action", "login"), ev(1700000001, 0, m, "user", "bob")}},
		{name: "nanoseconds", host: DefaultHECHost, source: DefaultHECSource,
			events: []Event{ev(1700000000, 1, m, "a", "1"), ev(1700000000, 100000000, m, "a", "2"), ev(0, 0, bare, "a", "3")}},
		{name: "templates", host: "{{field:host|tag:__hostname__|source}}", source: "sls:{{project}}/{{logstore}}#{{shard}}",
			sourcetype: "sls:{{topic}}", index: "idx_{{field:tenant}}",
			events: []Event{ev(1700000000, 0, m, "host", "db-9", "tenant", "acme"), ev(1700000000, 0, m, "msg", "no host field")}},
		{name: "empty-meta", host: DefaultHECHost, source: "", sourcetype: "-", index: "main",
			events: []Event{ev(1700000000, 0, bare, "k", "v"), ev(1700000000, 0, bare)}},
		{name: "escaping", host: DefaultHECHost, source: DefaultHECSource,
			events: []Event{ev(1700000000, 0, m, "quote\"back\\slash", "tab\tnl\ncr\r", "ctl", "\x00\x01\x1f\x7f", "utf8", "héllo 世界 🎉", "bad", "a\xffb\xc3", "html", "<a href='x'>&amp;</a>", "ls", "\u2028\u2029")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sourcetype == "-" {
				tc.sourcetype = ""
			}
			f := mustFormatter(t, tc.host, tc.source, tc.sourcetype, tc.index)
			var got []byte
			var mc metaCache
			for i := range tc.events {
				got = f.appendEvent(got, &tc.events[i], &mc)
			}
			for i, line := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n") {
				if !json.Valid([]byte(line)) {
					t.Errorf("event %d is not valid JSON: %s", i, line)
				}
			}
			path := filepath.Join("..", "testdata", "hec", tc.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if string(got) != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestParseTemplate_Errors(t *testing.T) {
	for _, tc := range []struct{ name, tmpl, want string }{
		{"unclosed", "a{{project", "unclosed"},
		{"unknown ref", "{{hostname}}", "unknown placeholder"},
		{"empty field key", "{{field:}}", "unknown placeholder"},
		{"empty alternative", "{{project|}}", "unknown placeholder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTemplate(tc.tmpl)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestTagFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"__hostname__":          "sls_tag_hostname",
		"__tag__:__hostname__":  "sls_tag_hostname",
		"__tag__:k8s.pod":       "sls_tag_k8s_pod",
		"__tag__:__client_ip__": "sls_tag_client_ip",
	} {
		if got := tagFieldName(in); got != want {
			t.Errorf("tagFieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzAppendJSONString: the output is always a valid JSON string that
// decodes to the input with invalid UTF-8 replaced.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\x7f", "é世🎉", "a\xffb", "\xc3", "\u2028",
		"abcdefghijklmnop\"qrstuvwx\\yz0123456789", "12345678\x7f2345678\x00", "1234567é0123456", "0123456789abcdef\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); got != want && utf8.ValidString(s) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// plain8 agrees with safeASCII byte by byte: every byte value at every
// position of a plain word, and random words.
func TestPlain8(t *testing.T) {
	safe := func(c byte) bool { return c < utf8.RuneSelf && safeASCII[c] }
	for p := range 8 {
		for v := range 256 {
			b := []byte("abcdefgh")
			b[p] = byte(v)
			if got := plain8(le64(string(b))); got != safe(byte(v)) {
				t.Fatalf("plain8(%q) = %v", b, got)
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var b [8]byte
		want := true
		for i := range b {
			// mostly plain bytes, so that words with one special byte are common
			b[i] = byte(0x20 + rnd.IntN(0x60))
			if rnd.IntN(6) == 0 {
				b[i] = byte(rnd.IntN(256))
			}
			want = want && safe(b[i])
		}
		if got := plain8(le64(string(b[:]))); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", b, got, want)
		}
	}
}
