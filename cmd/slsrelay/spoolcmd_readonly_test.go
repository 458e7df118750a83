package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slsrelay/spool"
)

// treeState is every file under dir with its size, mtime and content hash.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if !d.IsDir() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(c))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// `spool stat` and `spool dump` beside an open spool (a running relay)
// write nothing: not even the temporary file the relay may be writing.
func TestSpoolCommand_StatBesideOpenSpoolWritesNothing(t *testing.T) {
	dd := t.TempDir()
	dir := filepath.Join(dd, "spool", "hec0")
	s, err := spool.Open(dir, spool.Options{MinFreeBytes: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		r := &spool.Record{Project: "p", Logstore: "l", Cursor: fmt.Sprint(i), Count: 1, Payload: []byte("x")}
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Peek(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(r, "hec 400: bad"); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "spool.diskqueue.000004.dat.tmp") // a salvage in progress
	if err := os.WriteFile(tmp, []byte("in progress"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeState(t, dd)
	for _, args := range [][]string{{"stat", "--data-dir", dd}, {"dump", "--data-dir", dd}} {
		var out, errb bytes.Buffer
		if err := runSpool(ctx, args, &out, &errb); err != nil {
			t.Fatalf("spool %s: %v: %s", args[0], err, errb.String())
		}
		if args[0] == "stat" && !regexpLine(out.String(), `^hec0\s+3\s+.*\s1\s+`) {
			t.Fatalf("stat output:\n%s", out.String())
		}
		if after := treeState(t, dd); after != before {
			t.Fatalf("spool %s changed the data directory:\nbefore:\n%s\nafter:\n%s", args[0], before, after)
		}
	}
	// The open spool is unharmed.
	if err := s.Put(ctx, &spool.Record{Project: "p", Logstore: "l", Count: 1, Payload: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// spool stat counts the damaged regions of a dead-letter file beside its
// readable entries.
func TestSpoolCommand_StatShowsDamagedDeadLetters(t *testing.T) {
	dd := t.TempDir()
	dir := filepath.Join(dd, "spool", "hec0")
	s, err := spool.Open(dir, spool.Options{MinFreeBytes: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.DeadLetter(&spool.Record{Project: "p", Logstore: "l", Cursor: fmt.Sprint(i), Count: 1, Payload: []byte("x")}, "hec 400"); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, "deadletter.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55 // inside the second entry
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := runSpool(context.Background(), []string{"stat", "--data-dir", dd}, &out, &errb); err != nil {
		t.Fatalf("spool stat: %v: %s", err, errb.String())
	}
	if !regexpLine(out.String(), `^hec0\s+0\s+0B\s+-\s+-\s+2 \(\+1 damaged\)\s`) {
		t.Fatalf("stat output:\n%s", out.String())
	}
}
