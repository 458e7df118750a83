package ingest

import (
	"log/slog"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"
)

// TestSettleSDKClient fails when an SDK upgrade changes the layout the race
// workaround relies on: then the workaround can go if the race is fixed, or
// must be adapted.
func TestSettleSDKClient(t *testing.T) {
	cw := consumer.InitConsumerWorkerWithCheckpointTracker(consumer.LogHubConfig{
		Endpoint: "127.0.0.1:1", Project: "p", Logstore: "l", ConsumerGroupName: "g", ConsumerName: "c",
		CredentialsProvider: sls.NewStaticCredentialsProvider("id", "secret", ""),
		Logger:              newSDKLogger(discardLogger()),
	}, func(int, *sls.LogGroupList, consumer.CheckPointTracker) (string, error) { return "", nil })
	if !settleSDKClient(cw, 7*time.Second) {
		t.Fatal("settleSDKClient found no *sls.Client inside the consumer worker")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
