package ingest

import (
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	consumer "github.com/aliyun/aliyun-log-go-sdk/consumer"
)

// settleSDKClient works around a data race in aliyun-log-go-sdk v0.1.124:
// (*sls.Client).initHttpClient fills RequestTimeOut and RetryTimeOut lazily,
// unsynchronised, on the first request of every caller, and the consumer
// library's shard workers make their first requests concurrently. The write
// is of a constant, so in production it is benign, but it trips the race
// detector our tests run under. The library keeps its client unexported, so
// the timeouts are set here, through reflection, before Start. If the SDK's
// layout changes this does nothing and says so.
func settleSDKClient(cw *consumer.ConsumerWorker, requestTimeout time.Duration) bool {
	inner, ok := sdkClientField(cw)
	if !ok {
		return false
	}
	c, ok := inner.Interface().(*sls.Client)
	if !ok {
		return false
	}
	if c.RequestTimeOut == 0 {
		c.RequestTimeOut = requestTimeout
	}
	if c.RetryTimeOut == 0 {
		c.RetryTimeOut = 90 * time.Second // the SDK's default
	}
	return true
}
