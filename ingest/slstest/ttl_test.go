package slstest_test

import (
	"errors"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

func TestServer_SetTTL(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
	c := newClient(s)
	if err := s.SetTTL(project, logstore, time.Second); err != nil {
		t.Fatal(err)
	}
	g := slstest.NewGenerator(slstest.KindWeb, 1)
	if err := s.Append(project, logstore, 0, g.LogGroup(10)); err != nil {
		t.Fatal(err)
	}
	old, err := c.GetCursor(project, logstore, 0, "begin")
	if err != nil {
		t.Fatal(err)
	}
	expiry := time.Now().Add(1100 * time.Millisecond)
	waitFor(t, 3*time.Second, "TTL to pass", func() bool { return time.Now().After(expiry) })
	if err := s.Append(project, logstore, 0, g.LogGroup(5)); err != nil {
		t.Fatal(err)
	}

	t.Run("a cursor into expired data gets 400 InvalidCursor", func(t *testing.T) {
		_, _, err := c.PullLogs(project, logstore, 0, old, "", 100)
		var se *sls.Error
		if !errors.As(err, &se) || se.HTTPCode != 400 || se.Code != "InvalidCursor" {
			t.Fatalf("err = %v, want 400 InvalidCursor", err)
		}
	})
	t.Run("begin is the oldest retained data", func(t *testing.T) {
		begin, err := c.GetCursor(project, logstore, 0, "begin")
		if err != nil {
			t.Fatal(err)
		}
		if begin == old {
			t.Fatal("begin cursor did not move past expired data")
		}
		gl, _, err := c.PullLogs(project, logstore, 0, begin, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(gl.LogGroups) != 1 || len(gl.LogGroups[0].Logs) != 5 {
			t.Fatalf("got %d groups, want the 1 retained group of 5 logs", len(gl.LogGroups))
		}
	})
	t.Run("a consumer whose checkpoint expired sees InvalidCursor", func(t *testing.T) {
		if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 3}); err != nil {
			t.Fatal(err)
		}
		if err := c.UpdateCheckpoint(project, logstore, "g", "someone", 0, old, true); err != nil {
			t.Fatal(err)
		}
		seen := newIDSet()
		cons := startConsumer(t, s, seen, consumerOpts{group: "g", name: "c"})
		defer cons.stop()
		waitFor(t, 10*time.Second, "InvalidCursor in the consumer log", func() bool { return cons.logs.contains("InvalidCursor") })
		if seen.len() != 0 {
			t.Fatalf("consumer read %d logs past an expired checkpoint", seen.len())
		}
	})
}
