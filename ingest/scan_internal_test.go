package ingest

import (
	"bytes"
	"math/rand/v2"
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/deliver"
	"slsrelay/ingest/slstest"
	"slsrelay/internal/loggroup"
	"slsrelay/spool"
)

func generatedList(t testing.TB, kind slstest.Kind, groups, perGroup int, seed int64) (*sls.LogGroupList, []byte) {
	t.Helper()
	g := slstest.NewGenerator(kind, seed)
	lgl := &sls.LogGroupList{}
	for range groups {
		lgl.LogGroups = append(lgl.LogGroups, g.LogGroup(perGroup))
	}
	b, err := lgl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return lgl, b
}

// A raw pull makes the same record as the decoded one, payload included,
// without copying the bytes.
// loggroup.Scan accepts exactly what the spool's reader (deliver.Decode)
// decodes, with the same log count: checked on truncations and byte flips
// of generated lists.
func TestScanLogGroupList_AgreesWithDecode(t *testing.T) {
	_, odd := generatedList(t, slstest.KindOdd, 2, 3, 3)
	_, small := generatedList(t, slstest.KindWeb, 1, 2, 4)
	check := func(t *testing.T, p []byte) {
		t.Helper()
		sum, serr := loggroup.Scan(p)
		evs, derr := deliver.Decode(&spool.Record{Payload: p})
		if (serr == nil) != (derr == nil) {
			t.Fatalf("scan error %v, decode error %v (payload % x)", serr, derr, p[:min(len(p), 64)])
		}
		if serr == nil && sum.Logs != len(evs) {
			t.Fatalf("scan counted %d logs, decode %d", sum.Logs, len(evs))
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	check(t, odd)
	for range 200 {
		check(t, odd[:rnd.IntN(len(odd))])
	}
	for i := 0; i <= len(small); i++ {
		check(t, small[:i])
	}
	for range 5000 {
		p := bytes.Clone(small)
		for range 1 + rnd.IntN(3) {
			p[rnd.IntN(len(p))] = byte(rnd.IntN(256))
		}
		check(t, p)
	}
	if _, err := loggroup.Scan(nil); err != nil {
		t.Errorf("empty list: %v", err)
	}
}

// FuzzScanLogGroupList: the same agreement on arbitrary bytes.
func FuzzScanLogGroupList(f *testing.F) {
	_, odd := generatedList(f, slstest.KindOdd, 2, 3, 3)
	_, small := generatedList(f, slstest.KindWeb, 1, 2, 4)
	f.Add(odd)
	f.Add(small)
	f.Add([]byte{0x0a, 0x08, 0x0a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		sum, serr := loggroup.Scan(p)
		evs, derr := deliver.Decode(&spool.Record{Payload: p})
		if (serr == nil) != (derr == nil) {
			t.Fatalf("scan error %v, decode error %v", serr, derr)
		}
		if serr == nil && sum.Logs != len(evs) {
			t.Fatalf("scan counted %d logs, decode %d", sum.Logs, len(evs))
		}
	})
}
