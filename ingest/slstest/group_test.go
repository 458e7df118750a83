package slstest_test

import (
	"errors"
	"sort"
	"strings"
	"testing"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/ingest/slstest"
)

// wantSLSError fails t unless err is a service error with this status and
// code, a request id, and a message containing msg (case-insensitive; the
// reference pages print the messages with and without a capital and a final
// period).
func wantSLSError(t *testing.T, what string, err error, status int32, code, msg string) {
	t.Helper()
	var se *sls.Error
	if !errors.As(err, &se) {
		t.Fatalf("%s: err = %v, want %d %s", what, err, status, code)
	}
	if se.HTTPCode != status || se.Code != code || se.RequestID == "" ||
		!strings.Contains(strings.ToLower(se.Message), strings.ToLower(msg)) {
		t.Fatalf("%s: got %d %s %q (request id %q), want %d %s %q", what, se.HTTPCode, se.Code, se.Message, se.RequestID, status, code, msg)
	}
}

// TestConsumerGroup_CreateUpdateListDelete manages consumer groups through
// the SDK's CreateConsumerGroup, ListConsumerGroup, UpdateConsumerGroup and
// DeleteConsumerGroup, with the error answers of the service's API reference.
func TestConsumerGroup_CreateUpdateListDelete(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	list := func() map[string]sls.ConsumerGroup {
		t.Helper()
		gs, err := c.ListConsumerGroup(project, logstore)
		if err != nil {
			t.Fatalf("ListConsumerGroup: %v", err)
		}
		out := map[string]sls.ConsumerGroup{}
		for _, g := range gs {
			out[g.ConsumerGroupName] = *g
		}
		return out
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("new logstore lists groups %v", got)
	}
	for _, g := range []sls.ConsumerGroup{
		{ConsumerGroupName: "siem", Timeout: 20},
		{ConsumerGroupName: "archive", Timeout: 60, InOrder: true},
	} {
		if err := c.CreateConsumerGroup(project, logstore, g); err != nil {
			t.Fatalf("CreateConsumerGroup %s: %v", g.ConsumerGroupName, err)
		}
	}
	err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "siem", Timeout: 5})
	wantSLSError(t, "duplicate create", err, 400, "ConsumerGroupAlreadyExist", "consumer group already exist")
	err = c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "bad"})
	wantSLSError(t, "create without a timeout", err, 400, "JsonInfoInvalid", "consumerGroup or timeout is of error format")

	want := map[string]sls.ConsumerGroup{
		"siem":    {ConsumerGroupName: "siem", Timeout: 20},
		"archive": {ConsumerGroupName: "archive", Timeout: 60, InOrder: true},
	}
	if got := list(); len(got) != 2 || got["siem"] != want["siem"] || got["archive"] != want["archive"] {
		t.Fatalf("ListConsumerGroup = %v, want %v", got, want)
	}

	// UpdateConsumerGroup always sends order, and timeout when it is > 0.
	if err := c.UpdateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "siem", Timeout: 45, InOrder: true}); err != nil {
		t.Fatalf("UpdateConsumerGroup: %v", err)
	}
	if err := c.UpdateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "archive"}); err != nil {
		t.Fatalf("UpdateConsumerGroup order only: %v", err)
	}
	want["siem"] = sls.ConsumerGroup{ConsumerGroupName: "siem", Timeout: 45, InOrder: true}
	want["archive"] = sls.ConsumerGroup{ConsumerGroupName: "archive", Timeout: 60}
	if got := list(); got["siem"] != want["siem"] || got["archive"] != want["archive"] {
		t.Fatalf("after update ListConsumerGroup = %v, want %v", got, want)
	}
	err = c.UpdateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "nope", Timeout: 10})
	wantSLSError(t, "update unknown group", err, 404, "ConsumerGroupNotExist", "consumer group not exist")

	if err := c.DeleteConsumerGroup(project, logstore, "siem"); err != nil {
		t.Fatalf("DeleteConsumerGroup: %v", err)
	}
	got := list()
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) != 1 || names[0] != "archive" {
		t.Fatalf("after delete the logstore lists %v, want [archive]", names)
	}
	err = c.DeleteConsumerGroup(project, logstore, "siem")
	wantSLSError(t, "delete again", err, 404, "ConsumerGroupNotExist", "consumer group not exist")
	_, err = c.GetCheckpoint(project, logstore, "siem")
	wantSLSError(t, "checkpoints of a deleted group", err, 404, "ConsumerGroupNotExist", "consumer group not exist")
	_, err = c.HeartBeat(project, logstore, "siem", "c1", nil)
	wantSLSError(t, "heartbeat to a deleted group", err, 404, "ConsumerGroupNotExist", "consumer group not exist")

	// A group deleted and created again starts empty.
	if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "siem", Timeout: 20}); err != nil {
		t.Fatalf("re-create: %v", err)
	}
	cps, err := c.GetCheckpoint(project, logstore, "siem")
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range cps {
		if cp.CheckPoint != "" || cp.Consumer != "" {
			t.Fatalf("re-created group has checkpoint %+v", cp)
		}
	}
}

// TestConsumerGroup_CheckpointOwnership checks the service's checkpoint
// rules through the SDK's UpdateCheckpoint: without forceSuccess only the
// consumer a shard is assigned to may move its checkpoint, another consumer
// gets ConsumerNotMatch and an unknown one ConsumerNotExist; with
// forceSuccess anyone may. (The SDK's consumer library always commits with
// forceSuccess=true, checkpoint_tracker.go flushCheckPoint, so it never
// sees ConsumerNotMatch from the service; were it to, it would drop the
// shard from its heartbeat and log "consumer has been removed or shard has
// been reassigned".)
func TestConsumerGroup_CheckpointOwnership(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 30}); err != nil {
		t.Fatal(err)
	}
	// Consumer a takes every shard and reports holding them, as the
	// consumer library does: its client, named "{group}_{consumer}" in the
	// User-Agent, reads each shard it is given, and its next heartbeat
	// reports the shard held.
	ca := newClient(s)
	ca.SetUserAgent("g_a")
	var held []int
	for i := 0; i < 10; i++ {
		got, err := ca.HeartBeat(project, logstore, "g", "a", held)
		if err != nil {
			t.Fatalf("HeartBeat a: %v", err)
		}
		if len(got) == 4 && len(held) == 4 {
			break
		}
		for _, shard := range got {
			if _, err := ca.GetCursor(project, logstore, shard, "begin"); err != nil {
				t.Fatal(err)
			}
		}
		held = got
	}
	if len(held) != 4 {
		t.Fatalf("a holds %v, want all 4 shards", held)
	}
	// Consumer b joins: half the shards are reassigned to b, which gets
	// them only once a stops reporting them.
	gotB, err := c.HeartBeat(project, logstore, "g", "b", nil)
	if err != nil {
		t.Fatalf("HeartBeat b: %v", err)
	}
	if len(gotB) != 0 {
		t.Fatalf("b got %v while a still reports every shard", gotB)
	}
	aShard, bShard := -1, -1
	for shard, owner := range s.Assignments(project, logstore, "g") {
		switch owner {
		case "a":
			aShard = shard
		case "b":
			bShard = shard
		}
	}
	if aShard < 0 || bShard < 0 {
		t.Fatalf("assignments %v, want shards for a and b", s.Assignments(project, logstore, "g"))
	}
	cursor := func(shard int) string {
		cur, err := c.GetCursor(project, logstore, shard, "end")
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	checkpointOf := func(shard int) sls.ConsumerGroupCheckPoint {
		cps, err := c.GetCheckpoint(project, logstore, "g")
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range cps {
			if cp.ShardID == shard {
				return *cp
			}
		}
		t.Fatalf("no checkpoint entry for shard %d in %v", shard, cps)
		return sls.ConsumerGroupCheckPoint{}
	}

	if err := c.UpdateCheckpoint(project, logstore, "g", "a", aShard, cursor(aShard), false); err != nil {
		t.Fatalf("owner a updating shard %d: %v", aShard, err)
	}
	if cp := checkpointOf(aShard); cp.CheckPoint != cursor(aShard) || cp.Consumer != "a" || cp.UpdateTime == 0 {
		t.Fatalf("checkpoint after a's update: %+v", cp)
	}
	err = c.UpdateCheckpoint(project, logstore, "g", "b", aShard, cursor(aShard), false)
	wantSLSError(t, "b updating a's shard", err, 400, "ConsumerNotMatch", "")
	err = c.UpdateCheckpoint(project, logstore, "g", "a", bShard, cursor(bShard), false)
	wantSLSError(t, "a updating the shard moving to b", err, 400, "ConsumerNotMatch", "")
	err = c.UpdateCheckpoint(project, logstore, "g", "ghost", aShard, cursor(aShard), false)
	wantSLSError(t, "unknown consumer", err, 404, "ConsumerNotExist", "consumer not exist in the consumer group")
	if cp := checkpointOf(aShard); cp.Consumer != "a" {
		t.Fatalf("a rejected update changed the checkpoint: %+v", cp)
	}

	// forceSuccess=true moves the checkpoint whoever holds the shard.
	for _, who := range []string{"b", "ghost", ""} {
		if err := c.UpdateCheckpoint(project, logstore, "g", who, aShard, cursor(aShard), true); err != nil {
			t.Fatalf("forced update by %q: %v", who, err)
		}
		if cp := checkpointOf(aShard); cp.Consumer != who {
			t.Fatalf("after the forced update by %q the checkpoint is %+v", who, cp)
		}
	}

	err = c.UpdateCheckpoint(project, logstore, "g", "a", 99, cursor(aShard), true)
	wantSLSError(t, "unknown shard", err, 404, "ShardNotExist", "shard not exist")
	err = c.UpdateCheckpoint(project, logstore, "g", "a", aShard, "not base64!", true)
	wantSLSError(t, "checkpoint not base64", err, 400, "InvalidShardCheckPoint", "shard checkpoint not encoded by base64")
	err = c.UpdateCheckpoint(project, logstore, "nope", "a", aShard, cursor(aShard), true)
	wantSLSError(t, "unknown group", err, 404, "ConsumerGroupNotExist", "consumer group not exist")
}

// TestConsumerGroup_NewConsumerSettles checks the emulator's guard against
// the SDK's initHttpClient race (see doc.go): a new consumer gets one shard,
// and the others once its client, named "{group}_{consumer}" as the consumer
// library names it, read from the logstore.
func TestConsumerGroup_NewConsumerSettles(t *testing.T) {
	t.Parallel()
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	c.SetUserAgent("g_x")
	if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 30}); err != nil {
		t.Fatal(err)
	}
	first, err := c.HeartBeat(project, logstore, "g", "x", nil)
	if err != nil || len(first) != 1 {
		t.Fatalf("first heartbeat: %v, %v; want one shard", first, err)
	}
	again, err := c.HeartBeat(project, logstore, "g", "x", first)
	if err != nil || len(again) != 1 || again[0] != first[0] {
		t.Fatalf("heartbeat before any read: %v, %v; want still %v", again, err, first)
	}
	// A read by another client does not count.
	if _, err := newClient(s).GetCursor(project, logstore, first[0], "begin"); err != nil {
		t.Fatal(err)
	}
	if again, err = c.HeartBeat(project, logstore, "g", "x", first); err != nil || len(again) != 1 {
		t.Fatalf("heartbeat after another client's read: %v, %v; want one shard", again, err)
	}
	if _, err := c.GetCursor(project, logstore, first[0], "begin"); err != nil {
		t.Fatal(err)
	}
	// Assignments is the group's table (all 4 are x's by now); Held is
	// what x said it works on.
	if held := s.Held(project, logstore, "g"); len(held) != 1 || held[first[0]] != "x" {
		t.Fatalf("Held = %v, want only shard %d by x", held, first[0])
	}
	all, err := c.HeartBeat(project, logstore, "g", "x", first)
	if err != nil || len(all) != 4 {
		t.Fatalf("heartbeat after its own read: %v, %v; want all 4 shards", all, err)
	}
	if _, err := c.HeartBeat(project, logstore, "g", "x", all); err != nil {
		t.Fatal(err)
	}
	if held := s.Held(project, logstore, "g"); len(held) != 4 {
		t.Fatalf("Held = %v after x reported all 4", held)
	}
}

func TestCheckpointUpdates_RecordsEveryUpdate(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	c := newClient(s)
	if err := c.CreateConsumerGroup(project, logstore, sls.ConsumerGroup{ConsumerGroupName: "g", Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	if _, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 40, 10, 1); err != nil {
		t.Fatal(err)
	}
	begin, _ := c.GetCursor(project, logstore, 0, "begin")
	end, _ := c.GetCursor(project, logstore, 0, "end")
	for _, cur := range []string{end, begin} {
		if err := c.UpdateCheckpoint(project, logstore, "g", "x", 0, cur, true); err != nil {
			t.Fatal(err)
		}
	}
	u := s.CheckpointUpdates(project, logstore, "g")
	if len(u) != 2 || u[0].Cursor != end || u[0].Previous != "" || u[0].Backwards() ||
		u[1].Cursor != begin || u[1].Previous != end || !u[1].Backwards() || u[1].Consumer != "x" || !u[1].Force {
		t.Fatalf("updates = %+v", u)
	}
}
