package loggroup_test

import (
	"bytes"
	"errors"
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
	"slsrelay/internal/loggroup"
)

func strp(s string) *string { return &s }

// What the Append functions write is byte for byte what the SDK's
// generated code marshals, and Scan reads it back.
func TestAppendGroup_MatchesSDKMarshal(t *testing.T) {
	g := slstest.NewGenerator(slstest.KindOdd, 5)
	var want sls.LogGroupList
	var got []byte
	logs := 0
	for i := range 4 {
		lg := g.LogGroup(3 + i)
		lg.Category = strp("cat")
		lg.MachineUUID = strp("uuid-1")
		lg.Source = strp("10.0.0.1")
		lg.Topic = strp("")
		if i == 2 {
			ns := uint32(123456789)
			lg.Logs[0].TimeNs = &ns
		}
		lg.Topic = nil
		want.LogGroups = append(want.LogGroups, lg)
		grp := loggroup.Group{Category: lg.GetCategory(), Source: lg.GetSource(), MachineUUID: lg.GetMachineUUID()}
		for _, tg := range lg.LogTags {
			grp.Tags = append(grp.Tags, loggroup.KV{Key: tg.GetKey(), Value: tg.GetValue()})
		}
		var ls []loggroup.Log
		for _, l := range lg.Logs {
			x := loggroup.Log{Time: l.GetTime(), TimeNs: l.GetTimeNs()}
			for _, c := range l.Contents {
				x.Contents = append(x.Contents, loggroup.KV{Key: c.GetKey(), Value: c.GetValue()})
			}
			ls = append(ls, x)
			logs++
		}
		got = loggroup.AppendGroup(got, &grp, ls)
	}
	w, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, w) {
		t.Fatalf("appended %d bytes differ from the SDK's %d", len(got), len(w))
	}
	sum, err := loggroup.Scan(got)
	if err != nil || sum.Logs != logs {
		t.Fatalf("Scan = %+v, %v; want %d logs", sum, err, logs)
	}
}

func TestScan_Malformed(t *testing.T) {
	for _, b := range [][]byte{{0x0a, 0x05, 0x0a}, {0x08}, {0x0a, 0x02, 0x0a, 0x00}, {0x07}} {
		if _, err := loggroup.Scan(b); !errors.Is(err, loggroup.ErrMalformed) {
			t.Errorf("Scan(% x) = %v, want ErrMalformed", b, err)
		}
	}
}
