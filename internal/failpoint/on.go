//go:build failpoints

package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var (
	armed string
	at    int64 = 1
	hits  atomic.Int64
)

func init() {
	v := os.Getenv(EnvVar)
	if v == "" {
		return
	}
	name, n, ok := strings.Cut(v, "=")
	armed = name
	if ok {
		if i, err := strconv.ParseInt(n, 10, 64); err == nil && i > 0 {
			at = i
		}
	}
}

// Hit kills the process with SIGKILL on the armed point's N-th hit. Safe
// for concurrent use.
func Hit(name string) {
	if name != armed || hits.Add(1) != at {
		return
	}
	os.Stderr.WriteString("failpoint " + name + " hit " + strconv.FormatInt(at, 10) + ": SIGKILL\n")
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never return into the next step
}

// WrapSync returns sync failing with EIO from the armed error point's N-th
// call on (ErrEnvVar), as a dying disk would.
func WrapSync(name string, sync func(*os.File) error) func(*os.File) error {
	v := os.Getenv(ErrEnvVar)
	p, n, _ := strings.Cut(v, "=")
	if p != name {
		return sync
	}
	from, err := strconv.ParseInt(n, 10, 64)
	if err != nil || from < 1 {
		from = 1
	}
	var calls atomic.Int64
	return func(f *os.File) error {
		if calls.Add(1) >= from {
			return &os.PathError{Op: "fsync", Path: f.Name(), Err: syscall.EIO}
		}
		return sync(f)
	}
}
