// Package ingest consumes SLS logstores through consumer groups and moves
// every pull into the sinks' spools before any checkpoint moves:
//
//	Process(shard, LogGroupList, tracker):
//	  encode → spool.Put (every sink) → spool.Sync (every sink)
//	  → checkpoint.Commit (local, bbolt) → tracker.SaveCheckPoint (SLS)
//
// so that the SLS consumer-group checkpoint never passes a log group that is
// not fsynced into every spool (DESIGN.md invariant 1). While a spool is full
// Put blocks, Process blocks, and the consumer library stops pulling that
// shard: SLS retention is the last buffer.
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
	// defaults 20s and 3× the interval (the SDK's).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// FetchInterval is the pause between pulls of a caught-up shard;
	// default 200ms.
	FetchInterval time.Duration
	// MaxFetchGroups is the most log groups per pull, 1..1000; default 1000.
	MaxFetchGroups int
	// CheckpointInterval is how often the SDK commits the SLS consumer-group
	// checkpoint; default 5s. The local checkpoint is committed every pull.
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
	// ShutdownTimeout bounds how long Run waits for the consumer library to
	// stop and flush its checkpoints once ctx ends; default 30s.
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
