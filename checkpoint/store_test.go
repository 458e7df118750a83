package checkpoint_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"slsrelay/checkpoint"
)

// holdEnv, when set in the environment, makes the test binary a lock holder:
// see TestMain.
const holdEnv = "CHECKPOINT_TEST_HOLD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		s, err := checkpoint.Open(dir, checkpoint.Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		// Hold the lock until killed or until stdin closes.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		s.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func open(t *testing.T, dir string) *checkpoint.Store {
	t.Helper()
	s, err := checkpoint.Open(dir, checkpoint.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var key0 = checkpoint.ShardKey{Project: "proj", Logstore: "audit", Shard: 0}

func TestStore_CommitReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	s := open(t, dir)
	if _, ok, err := s.Cursor(key0); err != nil || ok {
		t.Fatalf("Cursor on empty store = ok %v, err %v; want none", ok, err)
	}
	updated := time.Date(2024, 5, 1, 12, 0, 0, 123, time.UTC)
	want := map[int]checkpoint.Cursor{
		0: {Cursor: "MTcxNDU2NzA0MDc5MjEzNjU2Mw==", MaxTime: 1714567040, Updated: updated},
		1: {Cursor: "c2hhcmQx", MaxTime: 1714567041, Updated: updated},
		7: {Cursor: "c2hhcmQ3", MaxTime: 1714567042, Updated: updated},
	}
	for shard, c := range want {
		if err := s.Commit(checkpoint.ShardKey{Project: "proj", Logstore: "audit", Shard: shard}, c); err != nil {
			t.Fatal(err)
		}
	}
	// Neighbours that must not show up in proj/audit's cursors.
	for _, k := range []checkpoint.ShardKey{{Project: "proj", Logstore: "audit2", Shard: 0}, {Project: "proj", Logstore: "aud", Shard: 1}, {Project: "proj2", Logstore: "audit", Shard: 2}} {
		if err := s.Commit(k, checkpoint.Cursor{Cursor: "other"}); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite shard 1.
	want[1] = checkpoint.Cursor{Cursor: "c2hhcmQxYg==", MaxTime: 1714567099, Updated: updated}
	if err := s.Commit(checkpoint.ShardKey{Project: "proj", Logstore: "audit", Shard: 1}, want[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	got, err := s.Cursors("proj", "audit")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Cursors = %v, want %v", got, want)
	}
	for shard, w := range want {
		g := got[shard]
		if g.Cursor != w.Cursor || g.MaxTime != w.MaxTime || !g.Updated.Equal(w.Updated) {
			t.Errorf("shard %d: got %+v, want %+v", shard, g, w)
		}
	}
	c, ok, err := s.Cursor(checkpoint.ShardKey{Project: "proj", Logstore: "audit", Shard: 7})
	if err != nil || !ok || c.Cursor != want[7].Cursor {
		t.Errorf("Cursor(shard 7) = %+v, %v, %v; want %+v", c, ok, err, want[7])
	}
}

func TestStore_CommitSetsUpdated(t *testing.T) {
	s := open(t, t.TempDir())
	before := time.Now()
	if err := s.Commit(key0, checkpoint.Cursor{Cursor: "x"}); err != nil {
		t.Fatal(err)
	}
	c, _, err := s.Cursor(key0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Updated.Before(before.Add(-time.Second)) {
		t.Errorf("Updated = %v, want about now", c.Updated)
	}
}

func TestStore_CommitInvalid(t *testing.T) {
	s := open(t, t.TempDir())
	for _, tc := range []struct {
		name string
		key  checkpoint.ShardKey
		cur  checkpoint.Cursor
	}{
		{"empty project", checkpoint.ShardKey{Logstore: "l"}, checkpoint.Cursor{Cursor: "c"}},
		{"empty logstore", checkpoint.ShardKey{Project: "p"}, checkpoint.Cursor{Cursor: "c"}},
		{"NUL in project", checkpoint.ShardKey{Project: "p\x00", Logstore: "l"}, checkpoint.Cursor{Cursor: "c"}},
		{"negative shard", checkpoint.ShardKey{Project: "p", Logstore: "l", Shard: -1}, checkpoint.Cursor{Cursor: "c"}},
		{"empty cursor", key0, checkpoint.Cursor{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Commit(tc.key, tc.cur); err == nil {
				t.Error("Commit succeeded, want error")
			}
		})
	}
}

func TestStore_ConcurrentCommits(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	const shards, commits = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, shards)
	for shard := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := checkpoint.ShardKey{Project: "p", Logstore: "l", Shard: shard}
			for i := range commits {
				if err := s.Commit(k, checkpoint.Cursor{Cursor: fmt.Sprintf("s%d-c%d", shard, i), MaxTime: int64(i)}); err != nil {
					errs <- err
					return
				}
				if _, _, err := s.Cursor(k); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	got, err := s.Cursors("p", "l")
	if err != nil {
		t.Fatal(err)
	}
	for shard := range shards {
		if want := fmt.Sprintf("s%d-c%d", shard, commits-1); got[shard].Cursor != want {
			t.Errorf("shard %d: cursor %q, want %q", shard, got[shard].Cursor, want)
		}
	}
}

func TestStore_Gaps(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	from := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	want := []checkpoint.Gap{
		{Key: key0, From: from, To: from.Add(time.Hour), Detected: from.Add(48 * time.Hour), Reason: "cursor older than retention"},
		{Key: checkpoint.ShardKey{Project: "proj", Logstore: "audit", Shard: 3}, From: from, To: from.Add(2 * time.Hour), Reason: "shard expired"},
	}
	for _, g := range want {
		if err := s.RecordGap(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordGap(checkpoint.Gap{Key: key0, From: from, To: from.Add(-time.Second)}); err == nil {
		t.Error("RecordGap with To before From succeeded")
	}
	s.Close()
	s = open(t, dir)
	got, err := s.Gaps()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d gaps, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || !g.From.Equal(w.From) || !g.To.Equal(w.To) || g.Reason != w.Reason {
			t.Errorf("gap %d = %+v, want %+v", i, g, w)
		}
		if w.Detected.IsZero() && g.Detected.IsZero() {
			t.Errorf("gap %d: Detected not set", i)
		}
	}
}

func TestStore_Closed(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	checks := map[string]error{
		"Commit":    s.Commit(key0, checkpoint.Cursor{Cursor: "c"}),
		"RecordGap": s.RecordGap(checkpoint.Gap{Key: key0}),
	}
	_, _, checks["Cursor"] = s.Cursor(key0)
	_, checks["Cursors"] = s.Cursors("proj", "audit")
	_, checks["Gaps"] = s.Gaps()
	for name, err := range checks {
		if !errors.Is(err, checkpoint.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestOpen_LockedInProcess(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, err := checkpoint.Open(dir, checkpoint.Options{})
	if !errors.Is(err, checkpoint.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	msg := err.Error()
	for _, want := range []string{"another relay", dir, "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := checkpoint.Open(dir, checkpoint.Options{})
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	s2.Close()
}

func TestOpen_LockedBySubprocess(t *testing.T) {
	dir := t.TempDir()
	holder, _ := startHolder(t, dir)

	_, err := checkpoint.Open(dir, checkpoint.Options{})
	if !errors.Is(err, checkpoint.ErrLocked) {
		t.Fatalf("Open while a subprocess holds the lock = %v, want ErrLocked", err)
	}
	if want := "pid " + strconv.Itoa(holder.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder (%s)", err, want)
	}

	// kill -9: the kernel releases the flock with the process.
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	s, err := checkpoint.Open(dir, checkpoint.Options{})
	if err != nil {
		t.Fatalf("Open after the holder was killed = %v", err)
	}
	s.Close()
}

func TestOpen_LockReleasedBySubprocessClose(t *testing.T) {
	dir := t.TempDir()
	holder, stdin := startHolder(t, dir)
	stdin.Close() // the holder closes its store and exits
	if err := holder.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	s, err := checkpoint.Open(dir, checkpoint.Options{})
	if err != nil {
		t.Fatalf("Open after the holder closed = %v", err)
	}
	s.Close()
}

// startHolder re-executes the test binary as a process holding dir's lock,
// and returns once it holds it.
func startHolder(t *testing.T, dir string) (*exec.Cmd, io.Closer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("holder said %q (%v)", line, err)
	}
	return cmd, stdin
}

func TestOpen_Corrupt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			writeFile(t, path, bytes.Repeat([]byte("not a bbolt file "), 1000))
		}},
		{"truncated", func(t *testing.T, path string) {
			makeDB(t, path)
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}},
		// Found by chaos scenario 3: past the meta pages, a cut file made
		// bbolt read its mmap beyond the end of the file (SIGBUS), a fatal
		// error rather than a panic, so the relay could never start again.
		{"truncated after the meta pages", func(t *testing.T, path string) {
			makeDB(t, path)
			if err := os.Truncate(path, int64(2*os.Getpagesize()+100)); err != nil {
				t.Fatal(err)
			}
		}},
		{"meta pages zeroed", func(t *testing.T, path string) {
			makeDB(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			clear(b[:2*os.Getpagesize()])
			writeFile(t, path, b)
		}},
		{"bad record", func(t *testing.T, path string) {
			makeDB(t, path)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("cursors")).Put([]byte("p\x00l\x00\x00\x00\x00\x01"), []byte("{not json"))
			}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, checkpoint.DBFile)
			tc.write(t, path)

			_, err := checkpoint.Open(dir, checkpoint.Options{})
			if !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}

			// The failed Open released the lock; CorruptMoveAside recovers.
			var logs bytes.Buffer
			s, err := checkpoint.Open(dir, checkpoint.Options{
				OnCorrupt: checkpoint.CorruptMoveAside,
				Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
			})
			if err != nil {
				t.Fatalf("Open with CorruptMoveAside = %v", err)
			}
			defer s.Close()
			if got, err := s.Cursors("p", "l"); err != nil || len(got) != 0 {
				t.Errorf("Cursors after recovery = %v, %v; want empty", got, err)
			}
			if err := s.Commit(key0, checkpoint.Cursor{Cursor: "c"}); err != nil {
				t.Errorf("Commit after recovery: %v", err)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Errorf("moved-aside files = %v, want one", aside)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "moved_to=") {
				t.Errorf("recovery not logged loudly: %q", logs.String())
			}
		})
	}
}

func TestOpen_BadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts checkpoint.Options
	}{
		{"negative timeout", checkpoint.Options{Timeout: -1}},
		{"unknown corrupt policy", checkpoint.Options{OnCorrupt: 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := checkpoint.Open(t.TempDir(), tc.opts); err == nil {
				s.Close()
				t.Error("Open succeeded")
			}
		})
	}
}

// makeDB creates a valid checkpoint database at path with one cursor.
func makeDB(t *testing.T, path string) {
	t.Helper()
	s, err := checkpoint.Open(filepath.Dir(path), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Commit(checkpoint.ShardKey{Project: "p", Logstore: "l", Shard: i}, checkpoint.Cursor{Cursor: strings.Repeat("c", 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
