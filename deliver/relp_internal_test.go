package deliver

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadRELPFrame(t *testing.T) {
	for _, tc := range []struct {
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
		{"datalen without data", "2 rsp 5\n", relpFrame{}, true},
		{"huge datalen", "2 rsp 99999999999 x\n", relpFrame{}, true},
	} {
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
