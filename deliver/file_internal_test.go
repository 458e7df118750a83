package deliver

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var fileTestMeta = &Meta{Project: "proj", Logstore: "audit", Shard: 1, Source: "10.0.0.1"}

// fileBatch is n events whose field "n" counts from first.
func fileBatch(first, n int) *Batch {
	b := &Batch{Seq: uint64(first)}
	for i := first; i < first+n; i++ {
		b.Events = append(b.Events, Event{Time: time.Unix(1700000000+int64(i), 0), Meta: fileTestMeta,
			Fields: []Field{{"n", strconv.Itoa(i)}, {"msg", "a line of an audit log, long enough to matter"}}})
	}
	return b
}

// fakeFile records what reaches it; sync fails while failSync is set.
type fakeFile struct {
	ops      *[]string
	data     bytes.Buffer
	failSync error
}

func (f *fakeFile) Write(p []byte) (int, error) {
	*f.ops = append(*f.ops, fmt.Sprintf("write %d", len(p)))
	return f.data.Write(p)
}

func (f *fakeFile) Sync() error {
	*f.ops = append(*f.ops, "sync")
	return f.failSync
}

func (f *fakeFile) Truncate(n int64) error {
	*f.ops = append(*f.ops, fmt.Sprintf("truncate %d", n))
	f.data.Truncate(int(n))
	return nil
}

func (f *fakeFile) Close() error { *f.ops = append(*f.ops, "close"); return nil }

// TestFile_FsyncBeforeAck: Send returns only after the file's fsync (and
// the directory's for a new file); a failed fsync is not an ack: the file
// is cut back to what was synced, abandoned, and the batch written again
// into a new file.
func TestFile_FsyncBeforeAck(t *testing.T) {
	s, err := OpenFile(FileOptions{Path: filepath.Join(t.TempDir(), "x.jsonl"), Logger: slog.New(slog.DiscardHandler),
		Retry: RetryPolicy{Min: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	var files []*fakeFile
	syncErr := errors.New("EIO")
	s.create = func(name string) (fileIO, error) {
		ops = append(ops, "create "+filepath.Base(name))
		f := &fakeFile{ops: &ops}
		if len(files) == 1 {
			f.failSync = syncErr // the second file's fsync fails once
		}
		files = append(files, f)
		return f, nil
	}
	s.syncDir = func(string) error { ops = append(ops, "sync dir"); return nil }

	ctx := context.Background()
	if err := s.Send(ctx, fileBatch(0, 3)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ops, ", "); !strings.HasPrefix(got, "create x-000001.jsonl, sync dir, write ") || !strings.HasSuffix(got, ", sync") {
		t.Fatalf("first send: %s", got)
	}
	synced := files[0].data.Len()

	// Fail the fsync of the next batch: the first attempt must not count.
	files[0].failSync = syncErr
	ops = nil
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, fileBatch(3, 2)) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ops, ", ")
	want := fmt.Sprintf("sync, truncate %d, close, create x-000002.jsonl, sync dir, write", synced)
	if !strings.Contains(got, want) {
		t.Fatalf("after a failed fsync: %s\nwant it to contain %s", got, want)
	}
	if files[0].data.Len() != synced {
		t.Errorf("the abandoned file holds %d bytes, want the %d synced", files[0].data.Len(), synced)
	}
	// The second file's own fsync failed once too (empty file removed),
	// then a third took the batch.
	if n := len(files); n != 3 || !strings.HasSuffix(got, "sync") {
		t.Fatalf("%d files, ops %s", n, got)
	}
	if lines := strings.Count(files[2].data.String(), "\n"); lines != 2 {
		t.Errorf("the batch's file has %d lines, want 2", lines)
	}
}

// TestFile_KillMidWrite kills a process writing through the file sink with
// SIGKILL at random instants: every batch it acknowledged is in the files,
// and once the sink reopens them every line is whole. Before that, at most
// the last line of the last file is torn, and a line reader skips it. The
// writer's file hands the kernel 4 KiB per write(2), as a large write may
// be cut by a signal, so that kills land inside a batch's bytes.
func TestFile_KillMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("kills subprocesses")
	}
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			acked, torn := -1, 0 // highest n acknowledged
			for kill := range 4 {
				acked = runFileWriter(t, path, gz, acked+1, kill)
				if checkBeforeRepair(t, path, gz) {
					torn++
				}
			}
			s, err := OpenFile(FileOptions{Path: path, Gzip: gz, MaxBytes: fileHelperMax, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			seen := map[int]bool{}
			lines := 0
			for _, l := range readAllLines(t, s) {
				var v struct{ Event struct{ N string } }
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Fatalf("after repair, line %q: %v", l, err)
				}
				n, _ := strconv.Atoi(v.Event.N)
				seen[n] = true
				lines++
			}
			for n := 0; n <= acked; n++ {
				if !seen[n] {
					t.Fatalf("event %d was acknowledged but is not in the files", n)
				}
			}
			t.Logf("%d events acknowledged over 4 kills, %d lines, %d kills left a torn tail", acked+1, lines, torn)
		})
	}
}

// readAllLines returns the lines of every file of s (gzip members joined).
func readAllLines(t *testing.T, s *File) []string {
	t.Helper()
	names, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.opts.Gzip {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("%s does not end with a newline after repair", name)
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

const fileHelperMax = 1 << 20

// runFileWriter starts this test binary as a writer from event first, lets
// it acknowledge a few batches, SIGKILLs it, and returns the highest event
// number it acknowledged.
func runFileWriter(t *testing.T, path string, gz bool, first, kill int) int {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFile_HelperProcess$")
	cmd.Env = append(os.Environ(), "FILE_SINK_HELPER="+path, "FILE_SINK_GZIP="+strconv.FormatBool(gz),
		"FILE_SINK_FIRST="+strconv.Itoa(first))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	acked, want := first-1, 1+rand.IntN(5)
	sc := bufio.NewScanner(out)
	for i := 0; i < want && sc.Scan(); i++ {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("helper said %q", sc.Text())
		}
		acked = n
	}
	time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // acknowledged before the kill landed
		if n, err := strconv.Atoi(sc.Text()); err == nil {
			acked = n
		}
	}
	if acked < first {
		t.Fatalf("kill %d: the helper acknowledged nothing", kill)
	}
	return acked
}

// checkBeforeRepair reads the files a killed writer left, as a reader
// would before any sink reopens them: every line but possibly the last of
// the last file is valid JSON, and that one has no newline. It reports
// whether there was a torn tail.
func checkBeforeRepair(t *testing.T, path string, gz bool) (torn bool) {
	t.Helper()
	dir, base := filepath.Split(path)
	names, _ := filepath.Glob(filepath.Join(dir, strings.TrimSuffix(base, ".jsonl")+"-*"))
	for i, name := range names {
		last := i == len(names)-1
		b, _ := os.ReadFile(name)
		if gz {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				if last && len(b) < 20 {
					return true // a header cut short
				}
				t.Fatalf("%s: %v", name, err)
			}
			b, err = io.ReadAll(zr)
			if err != nil && !(last && errors.Is(err, io.ErrUnexpectedEOF)) {
				t.Fatalf("%s: %v", name, err)
			}
			torn = torn || err != nil
		}
		lines := strings.Split(string(b), "\n")
		for j, l := range lines {
			if l == "" {
				continue
			}
			if !json.Valid([]byte(l)) {
				if last && j == len(lines)-1 {
					torn = true
					continue // torn, without its newline: skipped
				}
				t.Fatalf("%s line %d is not valid JSON: %.80q", name, j, l)
			}
		}
	}
	return torn
}

// chunkedFile hands the kernel at most 4 KiB per write(2).
type chunkedFile struct{ *os.File }

func (c chunkedFile) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 4096)
		m, err := c.File.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		time.Sleep(100 * time.Microsecond) // widen the window a kill can land in
	}
	return n, nil
}

// TestFile_HelperProcess is the writer of TestFile_KillMidWrite: it sends
// batches of 2000 events for ever and prints the last event number of each
// once Send returned.
func TestFile_HelperProcess(t *testing.T) {
	path := os.Getenv("FILE_SINK_HELPER")
	if path == "" {
		t.Skip("helper process of TestFile_KillMidWrite")
	}
	first, _ := strconv.Atoi(os.Getenv("FILE_SINK_FIRST"))
	s, err := OpenFile(FileOptions{Path: path, Gzip: os.Getenv("FILE_SINK_GZIP") == "true",
		MaxBytes: fileHelperMax, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s.create = func(name string) (fileIO, error) {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		return chunkedFile{f}, nil
	}
	if s.f != nil { // the reopened last file
		s.f = chunkedFile{s.f.(*os.File)}
	}
	for {
		if err := s.Send(context.Background(), fileBatch(first, 2000)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		first += 2000
		fmt.Println(first - 1)
	}
}
