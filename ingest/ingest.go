// Package ingest consumes SLS logstores through consumer groups and moves
// every pull into the sinks' spools before any checkpoint moves:
//
//	pull [cursor, next) → spool.Put (every sink) → spool.Sync (every sink)
//	  → checkpoint.Commit (local, bbolt) → UpdateCheckpoint (SLS, every
//	    full pull's worth of groups or CheckpointInterval, and when a shard
//	    is released)
//
// so that the SLS consumer-group checkpoint never passes a log group that is
// not fsynced into every spool (docs/DESIGN.md, invariant 1). While a spool is full
// Put blocks and that shard stops pulling: SLS retention is the last buffer.
//
// # The consumer-group protocol
//
// Ingest drives the group itself on the SDK's public client
// (sls.ClientInterface); signing, STS and v4 auth stay the SDK's. It follows
// the SDK's consumer library (aliyun-log-go-sdk v0.1.124, consumer/) where
// the protocol is the service's:
//
//   - CreateConsumerGroup once (an existing group is fine), then a
//     HeartBeat every HeartbeatInterval carrying the shards this consumer
//     still works on; the answer is the shards the group assigns it. Like
//     the library (heart_beat.go: heartShards ∪ heldShards), a shard stays
//     in the heartbeat until its loop has stopped and committed its last
//     durable position, so the service hands it to another consumer only
//     after that (the emulator does the same).
//   - A shard starts from the group's checkpoint (GetCheckpoint), else from
//     the start position (GetCursor begin, end or a time).
//   - Pulls are PullLogs with a count and, optionally, a query; the answer's
//     next cursor is the end of the pull.
//   - After HeartbeatTimeout + HeartbeatInterval without a successful
//     heartbeat, the consumer gives up its shards (the library resets its
//     held shards the same way).
//
// Where it deliberately differs:
//
//   - A pull is a fixed range [cursor, next): its bytes are kept until they
//     are durable in every spool and retried as exactly that range; the
//     library calls Process again and, on shutdown, skips a failed pull
//     and may commit past it. Pulls are fetched as bytes
//     (GetLogsBytesWithQuery) and spooled as they are, never decoded.
//   - Checkpoints are written for held shards only and without
//     forceSuccess, so the service refuses a consumer the shard was taken
//     from; only the last commit of a shard being released is forced, and
//     only if nobody else moved its checkpoint (the library always forces).
//     No checkpoint is written before the position the shard started from.
//   - At start each assigned shard resumes from the later of the local
//     checkpoint (what this relay spooled) and the group's (what the last
//     holder spooled): both are durable somewhere, so the later one loses
//     nothing and never moves the group's checkpoint back. Cursors are
//     compared as the service encodes them (base64 of a sequence number);
//     when they cannot be compared the group's wins unless this relay wrote
//     it. The old design force-wrote every local checkpoint at start,
//     rewinding shards other relays had advanced.
//   - An expired cursor is recognised from the pull's own error code
//     (GapCodes, InvalidCursor as the Java library does): the lost range is
//     dated with GetCursorTime, recorded with what is known and resumed from
//     the oldest data; the library retries such a pull for ever.
//   - A read-only shard (split or merge parent) is read to its end,
//     committed and dropped from the heartbeat, so that its children are
//     assigned; the library keeps it and sleeps. Shards created while the
//     relay runs start at begin whatever the start position.
//   - A caught-up shard is pulled again FetchInterval (100 ms) after its
//     last pull began if that pull returned data, IdleFetchInterval (also
//     100 ms; the library's one interval is 200 ms) if it found none, and
//     nothing else sleeps (the library sleeps up to 500 ms after a small
//     pull).
//   - Pulls held in memory are bounded per source (maxHeldPulls) however
//     many shards there are; a slot is taken before the request and given
//     back on every path.
//   - Shutdown waits at most ShutdownTimeout; a pull still in flight is
//     abandoned with nothing checkpointed for it (the library retries its
//     shutdown flush for ever). A heartbeat or shard listing in flight is
//     not waited for either: the SDK's requests take no context and end
//     only with the HTTP client's timeout.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"slsrelay/checkpoint"
	"slsrelay/spool"
)

// Spool is what ingest needs of a sink's spool; *spool.Spool satisfies it.
type Spool interface {
	// Put appends r; it blocks while the spool is over budget.
	Put(ctx context.Context, r *spool.Record) error
	// Sync returns once everything Put before it is durable.
	Sync(ctx context.Context) error
}

// Checkpoints is what ingest needs of the checkpoint store;
// *checkpoint.Store satisfies it.
type Checkpoints interface {
	Commit(k checkpoint.ShardKey, c checkpoint.Cursor) error
	Cursors(project, logstore string) (map[int]checkpoint.Cursor, error)
	RecordGap(g checkpoint.Gap) error
}

// Start says where a consumer group with no checkpoint for a shard begins.
type Start struct {
	// Position is "begin" (the oldest data held), "end" (only new data) or
	// "time" (data received at or after Time).
	Position string
	Time     time.Time
}

// Source is one logstore consumed through one consumer group.
type Source struct {
	Project       string
	Logstore      string
	ConsumerGroup string
	// ConsumerName identifies this relay in the group; it must be stable
	// across restarts so that SLS hands the same shards straight back.
	ConsumerName string
	// Endpoint is the SLS endpoint, e.g. "cn-hangzhou.log.aliyuncs.com"
	// (https:// or http:// prefix allowed).
	Endpoint string
	// Credentials supplies AccessKey pairs and STS tokens; re-asked on every
	// request, so rotating providers work.
	Credentials sls.CredentialsProvider
	// AuthVersion is sls.AuthV1 (default) or sls.AuthV4 with Region.
	AuthVersion sls.AuthVersionType
	Region      string
	// HTTPClient carries every SLS request (custom dialers, proxies, TLS).
	// Nil means the SDK's default client.
	HTTPClient *http.Client
	Start      Start
	// Query is an optional server-side filter (SPL).
	Query string
	// Compression of pulled data on the wire: "lz4" (default) or "zstd".
	Compression string

	// HeartbeatInterval and HeartbeatTimeout govern shard assignment;
	// defaults 20s and 3× the interval (the SDK's). The timeout is the
	// group's, set when this relay creates it.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// FetchInterval and IdleFetchInterval pace a caught-up shard (see
	// ShardReader): defaults DefaultFetchInterval, DefaultIdleFetchInterval.
	FetchInterval, IdleFetchInterval time.Duration
	// MaxFetchGroups is the most log groups per pull, 1..1000; default 1000.
	MaxFetchGroups int
	// CheckpointInterval is the longest a shard's SLS consumer-group
	// checkpoint trails what is durably spooled; default 5s. It is also
	// committed as soon as a full pull's worth of log groups (MaxFetchGroups)
	// is durable past it, so that a shard moving to another relay after a
	// crash is read again by less than one pull. The local checkpoint is
	// committed every pull.
	CheckpointInterval time.Duration
}

// Options configures an Ingest.
type Options struct {
	Sources []Source
	// Spools receive every pull, in order; all must be durable before any
	// checkpoint moves.
	Spools      []Spool
	Checkpoints Checkpoints
	// GapCodes are the SLS error codes that mean a cursor points into data
	// that has aged out; default DefaultGapCodes.
	GapCodes []string
	// ShutdownTimeout bounds how long Run waits for the shards to stop and
	// commit their checkpoints once ctx ends; default 30s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// DefaultGapCodes are the error codes SLS answers a pull with when the cursor
// is older than the logstore's retention.
var DefaultGapCodes = []string{"InvalidCursor", "CursorOutOfRange"}

// Ingest runs one Worker per source.
type Ingest struct {
	opts    Options
	workers []*Worker
}

// New checks opts and builds the workers; it starts nothing.
func New(opts Options) (*Ingest, error) {
	if len(opts.Spools) == 0 {
		return nil, errors.New("ingest: at least one spool is required")
	}
	if opts.Checkpoints == nil {
		return nil, errors.New("ingest: a checkpoint store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.GapCodes) == 0 {
		opts.GapCodes = DefaultGapCodes
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	in := &Ingest{opts: opts}
	for i, src := range opts.Sources {
		w, err := newWorker(src, opts)
		if err != nil {
			return nil, fmt.Errorf("ingest: sources[%d]: %w", i, err)
		}
		in.workers = append(in.workers, w)
	}
	return in, nil
}

// Workers returns the per-source workers (for stats).
func (in *Ingest) Workers() []*Worker { return in.workers }

// Run consumes every source until ctx ends (then nil) or a worker fails
// fatally (then that error, after stopping the others).
func (in *Ingest) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(in.workers))
	for _, w := range in.workers {
		go func() { errc <- w.Run(ctx) }()
	}
	var first error
	for range in.workers {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
