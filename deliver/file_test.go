package deliver_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"slsrelay/deliver"
)

func openFileSink(t *testing.T, o deliver.FileOptions) *deliver.File {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t, nil)
	}
	s, err := deliver.OpenFile(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readLines returns every line of the sink's files, oldest first, and the
// number of files; a gzip file is read member by member.
func readLines(t *testing.T, s *deliver.File) ([]string, int) {
	t.Helper()
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("%s does not end with a newline", name)
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines, len(files)
}

// lineN returns the "n" field of a json (event.n) or raw (n) line.
func lineN(t *testing.T, line string) string {
	t.Helper()
	var v struct {
		N     string `json:"n"`
		Event struct {
			N string `json:"n"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if v.Event.N != "" {
		return v.Event.N
	}
	return v.N
}

func TestFile_Formats(t *testing.T) {
	ctx := context.Background()
	t.Run("json is the HEC event object", func(t *testing.T) {
		s := openFileSink(t, deliver.FileOptions{Path: filepath.Join(t.TempDir(), "out.jsonl"), Sourcetype: "sls:audit"})
		if err := s.Send(ctx, batchOf(t, 1, 7, 1)); err != nil {
			t.Fatal(err)
		}
		lines, _ := readLines(t, s)
		want := `{"time":1700000007.123456789,"host":"10.0.0.1","source":"sls:proj:audit-log","sourcetype":"sls:audit",` +
			`"event":{"n":"7","msg":"hello"},"fields":{"sls_project":"proj","sls_logstore":"audit-log","sls_shard":"3",` +
			`"sls_topic":"audit","sls_source":"10.0.0.1","sls_tag_hostname":"web-1"}}`
		if len(lines) != 1 || lines[0] != want {
			t.Errorf("got %q\nwant %q", lines, want)
		}
	})
	t.Run("fixed indexed fields", func(t *testing.T) {
		s := openFileSink(t, deliver.FileOptions{Path: filepath.Join(t.TempDir(), "out.jsonl"),
			Fields: map[string]string{"replay": "job-1", "a": "\"q\""}})
		if err := s.Send(ctx, batchOf(t, 1, 7, 1)); err != nil {
			t.Fatal(err)
		}
		lines, _ := readLines(t, s)
		if len(lines) != 1 || !strings.HasSuffix(lines[0], `"sls_tag_hostname":"web-1","a":"\"q\"","replay":"job-1"}}`) {
			t.Errorf("got %q", lines)
		}
	})
	t.Run("raw is the fields", func(t *testing.T) {
		s := openFileSink(t, deliver.FileOptions{Path: filepath.Join(t.TempDir(), "out.jsonl"), Format: deliver.FileRaw})
		if err := s.Send(ctx, batchOf(t, 1, 7, 2)); err != nil {
			t.Fatal(err)
		}
		lines, _ := readLines(t, s)
		if got := strings.Join(lines, "|"); got != `{"n":"7","msg":"hello"}|{"n":"8","msg":"hello"}` {
			t.Errorf("got %s", got)
		}
	})
	t.Run("names", func(t *testing.T) {
		dir := t.TempDir()
		for _, c := range []struct {
			path string
			gz   bool
			want string
		}{
			{"audit.jsonl", false, "audit-000001.jsonl"},
			{"audit.jsonl", true, "audit-000001.jsonl.gz"},
			{"audit.jsonl.gz", true, "audit-000001.jsonl.gz"},
			{"audit", false, "audit-000001"},
			{".hidden.log", false, ".hidden-000001.log"},
		} {
			s := openFileSink(t, deliver.FileOptions{Path: filepath.Join(dir, c.path), Gzip: c.gz})
			if got := filepath.Base(s.FileName(1)); got != c.want {
				t.Errorf("%s (gzip %v): got %s, want %s", c.path, c.gz, got, c.want)
			}
			s.Close()
		}
	})
	t.Run("one writer per path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		s := openFileSink(t, deliver.FileOptions{Path: path})
		if _, err := deliver.OpenFile(deliver.FileOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "are being written by another process (pid ") {
			t.Fatalf("second sink on the same path: %v", err)
		}
		s.Close()
		openFileSink(t, deliver.FileOptions{Path: path}) // free again
	})
	t.Run("bad options", func(t *testing.T) {
		for _, c := range []struct {
			name string
			o    deliver.FileOptions
			want string
		}{
			{"no path", deliver.FileOptions{}, "Path is required"},
			{"directory", deliver.FileOptions{Path: t.TempDir() + "/"}, "names a directory"},
			{"format", deliver.FileOptions{Path: "x", Format: "csv"}, `Format "csv"`},
			{"small", deliver.FileOptions{Path: "x", MaxBytes: 100}, "MaxBytes 100"},
			{"template", deliver.FileOptions{Path: "x", Index: "{{nope}}"}, "unknown placeholder"},
		} {
			_, err := deliver.OpenFile(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
			}
		}
	})
}

func TestFile_Rotation(t *testing.T) {
	ctx := context.Background()
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			const max = 8192
			s := openFileSink(t, deliver.FileOptions{Path: path, MaxBytes: max, Gzip: gz})
			next := 0
			for seq := uint64(1); seq <= 30; seq++ {
				n := int(seq % 40)
				if err := s.Send(ctx, batchOf(t, seq, next, n)); err != nil {
					t.Fatal(err)
				}
				next += n
			}
			lines, files := readLines(t, s)
			if files < 2 {
				t.Errorf("%d files, want rotation into several", files)
			}
			names, _ := s.Files()
			for _, name := range names {
				if st, err := os.Stat(name); err != nil || st.Size() > max {
					t.Errorf("%s: %v, size over %d", name, err, max)
				}
			}
			assertSequence(t, lines, 0, next)

			// Reopening continues the last file, then rotates on.
			s.Close()
			s2 := openFileSink(t, deliver.FileOptions{Path: path, MaxBytes: max, Gzip: gz})
			if err := s2.Send(ctx, batchOf(t, 99, next, 5)); err != nil {
				t.Fatal(err)
			}
			lines, files2 := readLines(t, s2)
			if files2 > files+1 {
				t.Errorf("%d files after reopening, had %d", files2, files)
			}
			assertSequence(t, lines, 0, next+5)
		})
	}
}

// assertSequence checks that lines carry n = first, first+1, … last-1 once
// each, in order.
func assertSequence(t *testing.T, lines []string, first, end int) {
	t.Helper()
	if len(lines) != end-first {
		t.Fatalf("%d lines, want %d", len(lines), end-first)
	}
	for i, l := range lines {
		if got := lineN(t, l); got != strconv.Itoa(first+i) {
			t.Fatalf("line %d has n=%s, want %d", i, got, first+i)
		}
	}
}

func TestFile_TornTail(t *testing.T) {
	ctx := context.Background()
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			s := openFileSink(t, deliver.FileOptions{Path: path, Gzip: gz})
			if err := s.Send(ctx, batchOf(t, 1, 0, 10)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			name := s.FileName(1)
			good, _ := os.ReadFile(name)
			// What a kill during the write of the next batch leaves: part
			// of a line (plain), part of a member (gzip).
			tail := []byte(`{"time":1700000010,"event":{"n":"1`)
			if gz {
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				zw.Write([]byte(strings.Repeat(`{"n":"x"}`+"\n", 100)))
				zw.Close()
				tail = b.Bytes()[:b.Len()-7]
			}
			f, _ := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(tail)
			f.Close()

			s2 := openFileSink(t, deliver.FileOptions{Path: path, Gzip: gz})
			if got, _ := os.ReadFile(name); !bytes.Equal(got, good) {
				t.Fatalf("after reopening the file is %d bytes, want the %d acknowledged ones", len(got), len(good))
			}
			if err := s2.Send(ctx, batchOf(t, 2, 10, 5)); err != nil {
				t.Fatal(err)
			}
			lines, files := readLines(t, s2)
			if files != 1 {
				t.Errorf("%d files, want the repaired one continued", files)
			}
			assertSequence(t, lines, 0, 15)
		})
	}
}
