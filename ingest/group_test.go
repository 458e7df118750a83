package ingest_test

import (
	"sync"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"

	"slsrelay/ingest/slstest"
)

// A relay and a worker of the SDK's own consumer library share one
// consumer group: the shards are spread between them and every log is read
// by one of them.
func TestIngest_SharesGroupWithSDKConsumer(t *testing.T) {
	s := slstest.NewServer(t, slstest.Options{})
	want, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 200, 10, 21)
	if err != nil {
		t.Fatal(err)
	}
	a := &memSpool{}
	startRelay(t, s, "relay-1", openStore(t), a)
	waitFor(t, 60*time.Second, "the relay holds the shards", func() bool { return len(s.Assignments(project, logstore, group)) == 4 })

	var mu sync.Mutex
	var sdkIDs []string
	cw := consumer.InitConsumerWorkerWithCheckpointTracker(consumer.LogHubConfig{
		Endpoint: s.Endpoint(), HTTPClient: s.HTTPClient(),
		CredentialsProvider: sls.NewStaticCredentialsProvider(slstest.DefaultAKID, slstest.DefaultAKSecret, ""),
		Project:             project, Logstore: logstore, ConsumerGroupName: group, ConsumerName: "sdk-1",
		HeartbeatIntervalInSecond: 1, HeartbeatTimeoutInSecond: 3, DataFetchIntervalInMs: 50,
		CursorPosition: consumer.BEGIN_CURSOR, AutoCommitIntervalInMS: 200, DisableRuntimeMetrics: true,
	}, func(shard int, gl *sls.LogGroupList, _ consumer.CheckPointTracker) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range gl.LogGroups {
			for _, l := range g.Logs {
				sdkIDs = append(sdkIDs, l.Contents[0].GetValue())
			}
		}
		return "", nil
	})
	cw.Start()
	defer cw.StopAndWait()
	waitFor(t, 60*time.Second, "two shards each", func() bool {
		n := map[string]int{}
		for _, who := range s.Assignments(project, logstore, group) {
			n[who]++
		}
		return n["relay-1"] == 2 && n["sdk-1"] == 2
	})
	more, err := slstest.Seed(s, project, logstore, slstest.KindAudit, 200, 10, 22)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, more...)
	var relayIDs []string
	waitFor(t, 60*time.Second, "every log read by the relay or the SDK consumer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		relayIDs = ids(t, a.snapshot())
		return holdsAll(append(append([]string(nil), relayIDs...), sdkIDs...), want)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(relayIDs) == 0 || len(sdkIDs) == 0 {
		t.Errorf("relay read %d logs, SDK consumer %d; want both > 0", len(relayIDs), len(sdkIDs))
	}
	for _, u := range s.CheckpointUpdates(project, logstore, group) {
		if u.Backwards() {
			t.Errorf("shard %d's checkpoint moved backwards by %s: %s -> %s", u.Shard, u.Consumer, u.Previous, u.Cursor)
		}
	}
}
