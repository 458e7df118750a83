package spool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskqueuePinnedSource reads the source of the go-diskqueue version
// pinned in go.mod (from the module cache) and fails if any fragment the
// spool recognises (log format strings, file names, metadata format, the
// .bad rename; see diskqueue.go) is gone: an upgrade must not silently
// disable recovery.
func TestDiskqueuePinnedSource(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/nsqio/go-diskqueue").Output()
	if err != nil {
		t.Fatalf("locate the pinned go-diskqueue: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("go-diskqueue is not in the module cache (go mod download)")
	}
	src, err := os.ReadFile(filepath.Join(dir, "diskqueue.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range dqRecognised {
		if !strings.Contains(string(src), frag) {
			t.Errorf("go-diskqueue at %s no longer contains %q: check spool/diskqueue.go against its source", dir, frag)
		}
	}
	// The names the spool builds are the ones diskqueue builds.
	if got := segName(3); got != dqName+".diskqueue.000003.dat" {
		t.Errorf("segName(3) = %q", got)
	}
	if got := filepath.Base(metaPath("x")); got != dqName+".diskqueue.meta.dat" {
		t.Errorf("metaPath = %q", got)
	}
}
