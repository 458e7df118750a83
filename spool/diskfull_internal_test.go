package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

// tmpfs mounts a tmpfs of size bytes at dir for the test (root only; the
// test is skipped where mounting is not allowed).
func tmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs a tmpfs mount (root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// fillDisk writes path until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// A disk that fills to the last byte (another program took the space
// between the floor check and the write) stops writes with ENOSPC, inside
// go-diskqueue too (its metadata write); once the space is free again the
// spool takes writes again by itself, with no reopen, and nothing that a
// Sync reported durable is lost.
func TestSpool_DiskFullRecoversWithoutRestart(t *testing.T) {
	root := t.TempDir()
	disk := filepath.Join(root, "disk")
	tmpfs(t, disk, 2<<20)
	dir := filepath.Join(disk, "spool")
	logs := &lockedBuffer{}
	o := Options{MinFreeBytes: 1, SegmentBytes: 256 << 10, Compression: "none",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	h := defaultHooks()
	// The floor is not under test: the disk fills behind its back.
	h.statfs = func(string) (int64, error) { return 1 << 40, nil }
	s := openHooks(t, dir, o, h)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var durable []int // Put and then Synced without error
	next := 0
	putSync := func() error {
		if err := s.Put(ctx, irec(next, 1000)); err != nil {
			return err
		}
		if err := s.Sync(ctx); err != nil {
			return err
		}
		durable = append(durable, next)
		next++
		return nil
	}
	for range 20 {
		if err := putSync(); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(disk, "other-program.dat")
	fillDisk(t, filler)
	var full error
	for full == nil && next < 5000 {
		full = putSync()
	}
	if !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("writing to a full disk: %v, want ENOSPC", full)
	}
	// go-diskqueue's own sync (its metadata) meets the full disk too.
	for !logs.has("failed to sync") {
		if ctx.Err() != nil {
			t.Fatal("go-diskqueue never tried to sync on the full disk")
		}
		s.Put(ctx, irec(next, 1000)) // gives diskqueue something to sync
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Ingest retries; the spool must take the record again by itself.
	var err error
	for {
		if err = putSync(); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the spool never took writes again after space was freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 20 {
		if err := putSync(); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if st := s.Stats(); st.SyncError != nil {
		t.Fatalf("sticky error after recovery: %v", st.SyncError)
	}
	// Everything durable is delivered: now, and after a reopen.
	got := map[int]bool{}
	for s.Stats().Depth > 0 {
		r, err := s.Peek(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var i int
		fmt.Sscan(r.Cursor, &i)
		got[i] = true
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range durable {
		if !got[i] {
			t.Fatalf("record %d was durable but is not delivered (got %d records)", i, len(got))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openHooks(t, dir, o, h)
	if st := s.Stats(); st.Depth != 0 {
		t.Fatalf("after reopen %d records wait", st.Depth)
	}
}
