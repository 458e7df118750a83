package slstest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

// TestServer_SetFaults checks what each fault looks like to the SDK.
func TestServer_SetFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		faults  slstest.Faults
		status  int32  // want an *sls.Error with this status, 0 = another error
		code    string // its code
		retried bool   // the SDK sends the request more than once
	}{
		{"500", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail500: 1}}, 500, "InternalServerError", true},
		{"503", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail503: 1}}, 503, "ServerBusy", true},
		{"403", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.Fail403: 1}}, 403, "ReadQuotaExceed", false},
		{"reset", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.FailReset: 1}}, 0, "", true},
		{"truncated", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.FailTruncated: 1}}, 0, "", false},
		{"garbage", slstest.Faults{Fail: map[slstest.FailMode]float64{slstest.FailGarbage: 1}}, 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
			if _, err := slstest.Seed(s, project, logstore, slstest.KindWeb, 100, 10, 1); err != nil {
				t.Fatal(err)
			}
			c := newClient(s)
			c.SetRetryTimeout(time.Second)
			begin, err := c.GetCursor(project, logstore, 0, "begin")
			if err != nil {
				t.Fatal(err)
			}
			s.SetFaults(project, logstore, tc.faults)
			before := s.Stats().Requests
			_, _, err = c.PullLogs(project, logstore, 0, begin, "", 1000)
			sent := s.Stats().Requests - before
			switch {
			case err == nil:
				t.Fatal("PullLogs succeeded through the fault")
			case tc.status != 0 && !isSLSError(err, tc.status, tc.code):
				t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
			case tc.retried != (sent > 1):
				t.Fatalf("%d requests sent, retried = %v, want %v (err %v)", sent, sent > 1, tc.retried, err)
			}
			s.SetFaults(project, logstore, slstest.Faults{})
			gl, _, err := c.PullLogs(project, logstore, 0, begin, "", 1000)
			if err != nil || len(gl.LogGroups) != 10 {
				t.Fatalf("after clearing the fault: %d groups, err %v", len(gl.GetLogGroups()), err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		s := slstest.NewServer(t, slstest.Options{})
		c := newClient(s)
		c.SetRetryTimeout(500 * time.Millisecond)
		s.SetFaults("", "", slstest.Faults{Unreachable: true})
		if _, err := c.ListShards(project, logstore); err == nil {
			t.Fatal("ListShards succeeded on an unreachable server")
		}
		if n := s.Stats().Requests; n != 0 {
			t.Fatalf("%d requests reached the handler", n)
		}
		s.SetFaults("", "", slstest.Faults{})
		if _, err := c.ListShards(project, logstore); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		s := slstest.NewServer(t, slstest.Options{})
		c := newClient(s)
		s.SetFaults(project, "", slstest.Faults{Latency: 300 * time.Millisecond})
		start := time.Now()
		if _, err := c.ListShards(project, logstore); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("call took %v, want at least the injected 300ms", d)
		}
	})
	t.Run("bandwidth", func(t *testing.T) {
		t.Parallel()
		s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 1}}})
		if _, err := slstest.Seed(s, project, logstore, slstest.KindOdd, 60, 10, 1); err != nil {
			t.Fatal(err)
		}
		c := newClient(s)
		begin, _ := c.GetCursor(project, logstore, 0, "begin")
		s.SetFaults(project, logstore, slstest.Faults{Bandwidth: 256 << 10})
		before := s.Stats().BytesServed
		start := time.Now()
		if _, _, err := c.PullLogs(project, logstore, 0, begin, "", 1000); err != nil {
			t.Fatal(err)
		}
		d, n := time.Since(start), s.Stats().BytesServed-before
		if min := time.Duration(n) * time.Second / (256 << 10) * 8 / 10; d < min {
			t.Fatalf("%d bytes in %v, faster than the 256 KiB/s cap", n, d)
		}
	})
}

// isSLSError reports whether err is, or (after the SDK's retries gave up)
// wraps the text of, a service error with this status and code.
func isSLSError(err error, status int32, code string) bool {
	var se *sls.Error
	if errors.As(err, &se) {
		return se.HTTPCode == status && se.Code == code
	}
	msg := err.Error()
	return strings.Contains(msg, fmt.Sprintf(`"httpCode": %d`, status)) && strings.Contains(msg, `"errorCode": "`+code+`"`)
}

// TestConsumer_Faults runs a consumer through each fault mode, then clears
// it and checks that consumption completes without loss.
func TestConsumer_Faults(t *testing.T) {
	t.Parallel()
	for _, mode := range []slstest.FailMode{slstest.Fail500, slstest.Fail503, slstest.Fail403, slstest.FailReset, slstest.FailTruncated, slstest.FailGarbage} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
			ids, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 5_000, 10, 2)
			if err != nil {
				t.Fatal(err)
			}
			// The consumer library creates its group once and gives up if
			// that fails, as against the cloud; create it before the faults.
			if err := newClient(s).CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 3}); err != nil {
				t.Fatal(err)
			}
			s.SetFaults(project, logstore, slstest.Faults{Fail: map[slstest.FailMode]float64{mode: 0.3}})
			seen := newIDSet()
			c := startConsumer(t, s, seen, consumerOpts{group: "g", name: "c"})
			defer c.stop()
			waitFor(t, 20*time.Second, "faults injected and logged by the consumer", func() bool {
				return s.Stats().FaultsInjected >= 5 && c.logs.contains("level=warn")
			})
			s.SetFaults(project, logstore, slstest.Faults{})
			waitFor(t, 60*time.Second, "every log consumed", func() bool { return seen.len() >= len(ids) })
			if m := seen.missing(ids); len(m) > 0 {
				t.Fatalf("%d ids never read", len(m))
			}
		})
	}
}

// TestConsumer_SlowAndUnreachable runs a consumer into each of the other
// faults: added latency, a bandwidth cap and the whole service unreachable.
// The consumer switches the fault on itself after its first batch, so the
// fault always starts mid-consumption; the test watches what the SDK's
// HTTP client sees while it lasts, switches it off and checks that
// consumption completes with no loss.
func TestConsumer_SlowAndUnreachable(t *testing.T) {
	t.Parallel()
	const (
		latency   = 300 * time.Millisecond
		bandwidth = 128 << 10 // bytes/s
	)
	for _, tc := range []struct {
		name string
		set  func(s *slstest.Server, on bool)
		// observe waits for the fault to show in what the consumer's HTTP
		// client saw since the fault was switched on at since.
		observe func(t *testing.T, c *consumer, since time.Time)
	}{
		{"latency", func(s *slstest.Server, on bool) {
			f := slstest.Faults{}
			if on {
				f.Latency = latency
			}
			s.SetFaults(project, logstore, f)
		}, func(t *testing.T, c *consumer, since time.Time) {
			waitFor(t, 30*time.Second, "5 answers and a batch under the latency", func() bool {
				return c.wire.answered.Load() >= 5 && c.batches.Load() >= 2
			})
			if d := time.Duration(c.wire.minNanos.Load()); d < latency {
				t.Fatalf("quickest of %d answers took %v, want at least the injected %v", c.wire.answered.Load(), d, latency)
			}
		}},
		{"bandwidth", func(s *slstest.Server, on bool) {
			f := slstest.Faults{}
			if on {
				f.Bandwidth = bandwidth
			}
			s.SetFaults(project, logstore, f)
		}, func(t *testing.T, c *consumer, since time.Time) {
			waitFor(t, 30*time.Second, "3 batches under the cap", func() bool { return c.batches.Load() >= 4 })
			elapsed, got := time.Since(since), c.wire.bodyBytes.Load()
			// The pacer lets rate×t bytes out by time t; one 16 KiB chunk of slack.
			if max := int64(bandwidth*elapsed.Seconds()) + 32<<10; got > max {
				t.Fatalf("the consumer read %d bytes in %v, more than the %d B/s cap allows (%d)", got, elapsed, bandwidth, max)
			}
			t.Logf("under the cap: %d bytes in %v (%.0f B/s)", got, elapsed, float64(got)/elapsed.Seconds())
		}},
		{"unreachable", func(s *slstest.Server, on bool) {
			s.SetFaults("", "", slstest.Faults{Unreachable: on})
		}, func(t *testing.T, c *consumer, since time.Time) {
			waitFor(t, 30*time.Second, "requests failing and the consumer logging it", func() bool {
				return c.wire.failed.Load() >= 3 && c.logs.contains("slstest: unreachable")
			})
			if n := c.wire.answered.Load(); n != 0 {
				t.Fatalf("%d requests answered while the service was unreachable", n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := slstest.NewServer(t, slstest.Options{Logstores: []slstest.LogstoreOptions{{Name: logstore, Shards: 2}}})
			ids, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 5_000, 10, 3)
			if err != nil {
				t.Fatal(err)
			}
			if err := newClient(s).CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 3}); err != nil {
				t.Fatal(err)
			}
			seen := newIDSet()
			c := startConsumer(t, s, seen, consumerOpts{group: "g", name: "c", maxFetch: 10, onBatch: func(c *consumer, n int64) {
				if n == 1 {
					tc.set(s, true)
					c.wire.reset()
				}
			}})
			defer c.stop()
			waitFor(t, 30*time.Second, "the first batch switching the fault on", func() bool { return c.wire.from.Load() != 0 })
			tc.observe(t, c, time.Unix(0, c.wire.from.Load()))
			read := seen.len()
			tc.set(s, false)
			t.Logf("fault off after %v with %d of %d logs read; %d requests sent, %d answered, %d failed",
				time.Since(time.Unix(0, c.wire.from.Load())).Round(time.Millisecond), read, len(ids),
				c.wire.sent.Load(), c.wire.answered.Load(), c.wire.failed.Load())
			if read >= len(ids) {
				t.Fatalf("everything was read while the fault was on")
			}
			waitFor(t, 60*time.Second, "every log consumed", func() bool { return seen.len() >= len(ids) })
			if m := seen.missing(ids); len(m) > 0 {
				t.Fatalf("%d ids never read", len(m))
			}
		})
	}
}
