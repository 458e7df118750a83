package deliver

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// relpFrameCases seed FuzzReadRELPFrame too.
var relpFrameCases = []struct {
	name, in string
	want     relpFrame
	bad      bool
}{
	{"rsp ok", "2 rsp 6 200 OK\n", relpFrame{2, "rsp", "200 OK"}, false},
	{"open answer", "1 rsp 22 200 OK\ncommands=syslog\n", relpFrame{1, "rsp", "200 OK\ncommands=syslog"}, false},
	{"no data", "0 serverclose 0\n", relpFrame{0, "serverclose", ""}, false},
	{"refused", "7 rsp 9 500 error\n", relpFrame{7, "rsp", "500 error"}, false},
	{"bad trailer", "2 rsp 6 200 OKX", relpFrame{}, true},
	{"bad txnr", "x rsp 0\n", relpFrame{}, true},
	{"negative txnr", "-1 rsp 0\n", relpFrame{}, true},
	{"txnr too large", "1000000000 rsp 0\n", relpFrame{}, true},
	{"datalen without data", "2 rsp 5\n", relpFrame{}, true},
	{"huge datalen", "2 rsp 99999999999 x\n", relpFrame{}, true},
	{"datalen over the cap", "2 rsp 131073 x\n", relpFrame{}, true},
	{"truncated data", "2 rsp 10 200 OK\n", relpFrame{}, true},
	{"empty", "", relpFrame{}, true},
	{"no command", "2  6 200 OK\n", relpFrame{2, "", ""}, true},
}

func TestReadRELPFrame(t *testing.T) {
	for _, tc := range relpFrameCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readRELPFrame(bufio.NewReader(strings.NewReader(tc.in)))
			if tc.bad {
				if err == nil {
					t.Errorf("got %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	code, text := relpStatus("500 queue full\nmore")
	if code != 500 || text != "queue full" {
		t.Errorf("relpStatus: %d %q", code, text)
	}
}

// FuzzReadRELPFrame: the answer parser never panics on garbage, and what it
// accepts re-encodes to a frame it reads back the same.
func FuzzReadRELPFrame(f *testing.F) {
	for _, tc := range relpFrameCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("1 rsp 6 200 OK\n2 rsp 6 200 OK\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for range 4 { // a stream holds several frames
			fr, err := readRELPFrame(br)
			if err != nil {
				return
			}
			if fr.txnr < 0 || fr.txnr > relpMaxTxnr || len(fr.data) > relpMaxFrameData {
				t.Fatalf("accepted out-of-range frame %+v", fr)
			}
			relpStatus(fr.data) // must not panic either
			enc := strconv.Itoa(fr.txnr) + " " + fr.cmd + " " + strconv.Itoa(len(fr.data))
			if fr.data != "" {
				enc += " " + fr.data
			}
			again, err := readRELPFrame(bufio.NewReader(strings.NewReader(enc + "\n")))
			if err != nil || again != fr {
				t.Fatalf("frame %+v re-encoded as %q reads back as %+v, %v", fr, enc, again, err)
			}
		}
	})
}
