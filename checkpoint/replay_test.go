package checkpoint_test

import (
	"strings"
	"testing"
	"time"

	"slsrelay/checkpoint"
)

func TestStore_ReplayJob(t *testing.T) {
	dir := t.TempDir()
	s, err := checkpoint.Open(dir, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	job := checkpoint.ReplayJob{ID: "p-l-1", Project: "p", Logstore: "l", From: from, To: from.Add(time.Hour), LogTime: true}
	if _, ok, err := s.ReplayJob(job.ID); ok || err != nil {
		t.Fatalf("job before put: %v %v", ok, err)
	}
	if err := s.CommitReplayShard(job.ID, checkpoint.ReplayShard{Shard: 1, Cursor: "c"}); err == nil {
		t.Fatal("commit without a job succeeded")
	}
	if err := s.PutReplayJob(job); err != nil {
		t.Fatal(err)
	}
	for _, p := range []checkpoint.ReplayShard{
		{Shard: 0, Cursor: "a", End: "z", Events: 5},
		{Shard: 3, Cursor: "q", End: "q", Done: true, Events: 7, MissingFrom: from, MissingTo: from.Add(time.Minute)},
		{Shard: 0, Cursor: "b", End: "z", Events: 9},
	} {
		if err := s.CommitReplayShard(job.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	// Putting the job again keeps the progress.
	if err := s.PutReplayJob(job); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = checkpoint.Open(dir, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok, err := s.ReplayJob(job.ID)
	if err != nil || !ok || !got.From.Equal(job.From) || !got.To.Equal(job.To) || !got.LogTime || got.Created.IsZero() {
		t.Fatalf("job after reopening: %+v %v %v", got, ok, err)
	}
	shards, err := s.ReplayShards(job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 2 || shards[0].Cursor != "b" || shards[0].Events != 9 || !shards[3].Done ||
		!shards[3].MissingTo.Equal(from.Add(time.Minute)) {
		t.Fatalf("shards: %+v", shards)
	}
	if err := s.DeleteReplayJob(job.ID); err != nil {
		t.Fatal(err)
	}
	if shards, _ := s.ReplayShards(job.ID); len(shards) != 0 {
		t.Errorf("shards after delete: %+v", shards)
	}
	for name, bad := range map[string]checkpoint.ReplayJob{
		"no id":    {Project: "p", Logstore: "l", From: from, To: from.Add(1)},
		"inverted": {ID: "x", Project: "p", Logstore: "l", From: from, To: from},
	} {
		if err := s.PutReplayJob(bad); err == nil || !strings.Contains(err.Error(), "replay job") {
			t.Errorf("%s: got %v", name, err)
		}
	}
}
