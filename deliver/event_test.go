package deliver_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/deliver"
	"slsrelay/spool"
)

func TestDecode(t *testing.T) {
	rec := record(t, 7,
		testGroup{topic: "t1", source: "10.1.1.1", tags: []string{"__hostname__", "h1", "__path__", "/var/log/a"},
			logs: []testLog{
				{sec: 1700000000, ns: 123456789, kv: []string{"b", "2", "a", "1", "b", "3"}},
				{sec: 1700000001, kv: []string{"msg", "héllo\n"}},
			}},
		testGroup{logs: []testLog{{sec: 1, kv: nil}}},
	)
	evs, err := deliver.Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	t.Run("time", func(t *testing.T) {
		if got, want := evs[0].Time, time.Unix(1700000000, 123456789); !got.Equal(want) {
			t.Errorf("got %v, want %v", got, want)
		}
		if got := evs[1].Time.Nanosecond(); got != 0 {
			t.Errorf("ns %d, want 0", got)
		}
	})
	t.Run("fields in order with repeats", func(t *testing.T) {
		want := []deliver.Field{{"b", "2"}, {"a", "1"}, {"b", "3"}}
		if !reflect.DeepEqual(evs[0].Fields, want) {
			t.Errorf("got %v, want %v", evs[0].Fields, want)
		}
		if v, _ := evs[0].Field("b"); v != "2" {
			t.Errorf("Field(b) = %q, want first value", v)
		}
		if len(evs[2].Fields) != 0 {
			t.Errorf("empty log has fields %v", evs[2].Fields)
		}
	})
	t.Run("meta", func(t *testing.T) {
		m := evs[0].Meta
		if m.Project != "proj" || m.Logstore != "audit-log" || m.Shard != 3 || m.Topic != "t1" || m.Source != "10.1.1.1" {
			t.Errorf("meta %+v", m)
		}
		if evs[1].Meta != m {
			t.Error("events of one group do not share Meta")
		}
		if v, ok := m.Tag("__tag__:__hostname__"); !ok || v != "h1" {
			t.Errorf("Tag = %q %v", v, ok)
		}
		if evs[2].Meta == m || evs[2].Meta.Topic != "" || evs[2].Meta.Project != "proj" {
			t.Errorf("second group meta %+v", evs[2].Meta)
		}
	})
}

func TestDecode_Malformed(t *testing.T) {
	good := payload(t, numbered(0, 2))
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"truncated", good[:len(good)-3]},
		{"bad varint", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"length past end", []byte{0x0a, 0x10, 0x01}},
		{"wrong wire type for groups", []byte{0x08, 0x01}},
		{"log without time", []byte{0x0a, 0x02, 0x0a, 0x00}},
		{"content without value", []byte{0x0a, 0x09, 0x0a, 0x07, 0x08, 0x01, 0x12, 0x03, 0x0a, 0x01, 'k'}},
		{"field number zero", []byte{0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deliver.Decode(&spool.Record{Payload: tc.payload})
			if !errors.Is(err, deliver.ErrMalformedPayload) {
				t.Errorf("got %v, want ErrMalformedPayload", err)
			}
		})
	}
	t.Run("empty payload is no events", func(t *testing.T) {
		evs, err := deliver.Decode(&spool.Record{})
		if err != nil || len(evs) != 0 {
			t.Errorf("got %v %v", evs, err)
		}
	})
}

// FuzzDecode: never panics, and whatever it accepts the SDK's gogo decoder
// accepts too with the same content.
func FuzzDecode(f *testing.F) {
	f.Add(payload(f, numbered(0, 3)))
	f.Add(payload(f, testGroup{topic: "x", tags: []string{"k", "v"}, logs: []testLog{{sec: 5, ns: 7, kv: []string{"a", ""}}}}))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		evs, err := deliver.Decode(&spool.Record{Payload: p})
		if err != nil {
			return
		}
		var list sls.LogGroupList
		if err := list.Unmarshal(p); err != nil {
			t.Fatalf("Decode accepted what gogo refuses: %v", err)
		}
		k := 0
		for _, g := range list.LogGroups {
			for _, l := range g.Logs {
				if k >= len(evs) {
					t.Fatalf("gogo has more logs than Decode's %d", len(evs))
				}
				e := evs[k]
				if e.Time.Unix() != time.Unix(int64(l.GetTime()), int64(l.GetTimeNs())).Unix() || len(e.Fields) != len(l.Contents) {
					t.Fatalf("log %d differs", k)
				}
				for i, c := range l.Contents {
					if e.Fields[i].Key != c.GetKey() || e.Fields[i].Value != c.GetValue() {
						t.Fatalf("log %d field %d differs", k, i)
					}
				}
				if e.Meta.Topic != g.GetTopic() || e.Meta.Source != g.GetSource() || len(e.Meta.Tags) != len(g.LogTags) {
					t.Fatalf("log %d meta differs", k)
				}
				k++
			}
		}
		if k != len(evs) {
			t.Fatalf("Decode has %d events, gogo %d", len(evs), k)
		}
	})
}
