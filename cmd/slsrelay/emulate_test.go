package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
)

// emulateOutput is a goroutine-safe stdout for runEmulate.
type emulateOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *emulateOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *emulateOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// startEmulate runs the subcommand and returns its one output line's fields.
func startEmulate(t *testing.T, args ...string) (map[string]string, string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &emulateOutput{}, &emulateOutput{}
	done := make(chan error, 1)
	go func() { done <- runEmulate(ctx, args, out, errOut) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(out.String(), "\n") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("emulate returned early: %v; stderr %s", err, errOut)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("emulate printed nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := out.String()
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	fields["addr"] = strings.Fields(line)[3]
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("emulate did not stop")
		}
	}
	t.Cleanup(func() { stop() })
	return fields, line, stop
}

func emulateClient(f map[string]string, secret string) *sls.Client {
	c := sls.CreateNormalInterface(f["endpoint"], f["access-key-id"], secret, "").(*sls.Client)
	c.SetHTTPClient(&http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, f["addr"])
		},
	}})
	return c
}

func countLogs(t *testing.T, c *sls.Client, project, logstore string, shards int) int {
	t.Helper()
	n := 0
	for shard := 0; shard < shards; shard++ {
		cur, err := c.GetCursor(project, logstore, shard, "begin")
		if err != nil {
			t.Fatal(err)
		}
		gl, _, err := c.PullLogs(project, logstore, shard, cur, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gl.LogGroups {
			n += len(g.Logs)
		}
	}
	return n
}

func TestEmulate_Run(t *testing.T) {
	t.Run("serves seeded logs and hides the secret", func(t *testing.T) {
		f, line, stop := startEmulate(t, "--listen", "127.0.0.1:0", "--project", "p1", "--logstore", "l1,l2",
			"--shards", "2", "--ttl", "72h", "--access-key-id", "id1", "--access-key-secret", "s3cr3t-value",
			"--seed", "web", "--seed-count", "300", "--seed-per-group", "50")
		if strings.Contains(line, "s3cr3t-value") {
			t.Fatalf("output shows the secret: %s", line)
		}
		if f["project"] != "p1" || f["logstores"] != "l1,l2" || f["access-key-id"] != "id1" || !strings.HasPrefix(f["endpoint"], "localhost:") {
			t.Fatalf("output line %q", line)
		}
		c := emulateClient(f, "s3cr3t-value")
		if got := countLogs(t, c, "p1", "l2", 2); got != 300 {
			t.Fatalf("l2 holds %d logs, want 300", got)
		}
		if _, err := emulateClient(f, "wrong").ListShards("p1", "l1"); err == nil {
			t.Fatal("a wrong secret was accepted")
		}
		if err := stop(); err != nil {
			t.Fatalf("emulate returned %v after cancel", err)
		}
	})
	t.Run("seeds a JSON-lines file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "seed.jsonl")
		data := `{"event_id":"a","n":1,"ok":true}` + "\n\n" + `{"event_id":"b","__time__":1700000000,"nested":{"x":[1,2]}}` + "\n"
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		f, _, _ := startEmulate(t, "--seed", path, "--shards", "1")
		c := emulateClient(f, "test-ak-secret")
		cur, _ := c.GetCursor("demo-project", "audit", 0, "begin")
		gl, _, err := c.PullLogs("demo-project", "audit", 0, cur, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		logs := gl.LogGroups[0].Logs
		if len(logs) != 2 || logs[1].GetTime() != 1700000000 {
			t.Fatalf("got %d logs %v", len(logs), logs)
		}
		want := map[string]string{"event_id": "b", "nested": `{"x":[1,2]}`}
		for _, kv := range logs[1].Contents {
			if w, ok := want[kv.GetKey()]; ok && w != kv.GetValue() {
				t.Errorf("%s = %q, want %q", kv.GetKey(), kv.GetValue(), w)
			}
		}
	})
	t.Run("flag errors are one line", func(t *testing.T) {
		for _, args := range [][]string{{"--shards", "0"}, {"--nope"}, {"extra"}} {
			var errOut bytes.Buffer
			err := runEmulate(context.Background(), args, &bytes.Buffer{}, &errOut)
			if !errors.Is(err, errUsage) || !strings.HasPrefix(errOut.String(), "slsrelay emulate: ") || strings.Count(errOut.String(), "\n") != 1 || !strings.Contains(errOut.String(), "--help") {
				t.Errorf("args %v: err %v, stderr %q", args, err, errOut.String())
			}
		}
	})
}
