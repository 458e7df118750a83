// Package slstest is a local emulator of Alibaba Cloud Log Service (SLS), in
// the spirit of net/http/httptest: the unmodified aliyun-log-go-sdk client
// (v0.1.124) and its consumer library work against it as against the cloud.
//
// # Starting it
//
//	s := slstest.NewServer(t, slstest.Options{})          // tests; closed by t.Cleanup
//	s, err := slstest.New(slstest.Options{Listen: addr}) // anything else; call Close
//
// The defaults give project "demo-project", logstore "audit" with 4 shards
// and the AccessKey pair test-ak-id / test-ak-secret. The command
// "slsrelay emulate" serves one from the command line.
//
// # Pointing the SDK at it
//
// The SDK always sends a project's requests to the host
// "{project}.{Endpoint}". Endpoint() is "localhost:PORT"; such names do not
// resolve through DNS here, so route them to the listener with the
// server's dialer:
//
//	client := sls.CreateNormalInterface(s.Endpoint(), id, secret, "")
//	client.SetHTTPClient(s.HTTPClient())     // or LogHubConfig{Endpoint: s.Endpoint(), HTTPClient: s.HTTPClient()}
//
// Any HTTP client whose dialer connects to Addr() works the same (the relay
// sets sls.connect_to). The project is taken from the Host header's first
// label.
//
// # Emulated API calls
//
//   - GetProject, ListLogStore, GetLogStore, CreateLogStore, DeleteLogStore.
//   - ListShards, SplitShard (key= or shardCount=), MergeShards: the parent
//     becomes read-only and stays readable; children get 32-hex-digit MD5
//     key ranges; ListShards reports status, inclusiveBeginKey,
//     exclusiveEndKey and createTime.
//   - PutLogs and PostLogStoreLogs (/shards/route?key= or x-log-hashkey),
//     bodies uncompressed, lz4, zstd or deflate. Unrouted writes go round
//     robin over readwrite shards. The server stamps each group's receive
//     time and adds the tag "__receive_time__" to it.
//   - GetCursor (begin, end, unix time by receive time), GetCursorTime.
//   - PullLogs with count, end_cursor and Accept-Encoding lz4, zstd,
//     deflate or none; headers x-log-cursor, x-log-count (groups),
//     x-log-bodyrawsize, x-log-compresstype, x-log-read-last-cursor,
//     x-log-cursor-time, x-log-end-of-cursor and, with a query,
//     x-log-rawdatasize, x-log-rawdatacount, x-log-rawdatalines,
//     x-log-resultlines, x-log-failedlines. A pull at the end of a shard
//     answers the same cursor. Cursors are base64 of a decimal sequence
//     number, as the service's.
//   - PullLogs query: only "*" and "* | where K = 'V' [and K2 != 'V2' ...]"
//     (keys bare or double-quoted, values single-quoted, SQL null semantics
//     for missing keys); anything else gets 400 InvalidQueryString.
//   - Consumer groups: create (400 ConsumerGroupAlreadyExist on duplicates),
//     update, list, delete, heartbeat, get and update checkpoints. Heartbeats
//     balance shards (n/k or n/k+1 per live consumer, sticky), drop a
//     consumer silent for longer than the group's timeout, and hand a moving
//     shard to its new consumer only once the old one stopped reporting it.
//     A read-only shard stops being assigned once its checkpoint reaches its
//     end; with order=true, children wait for their parents. Updating a
//     checkpoint without forceSuccess=true needs the shard to be assigned to
//     the caller (else 400 ConsumerNotMatch, or 404 ConsumerNotExist); with
//     forceSuccess=true anyone may move it. The SDK's consumer library always
//     commits with forceSuccess=true. Group and checkpoint errors use the
//     statuses, codes and messages of the service's API reference
//     (ConsumerGroupNotExist, ConsumerGroupAlreadyExist, JsonInfoInvalid,
//     InvalidShardCheckPoint, ConsumerNotExist, ShardNotExist).
//   - Retention: LogstoreOptions.TTL or SetTTL, by receive time. A cursor or
//     checkpoint into expired data gets 400 InvalidCursor on PullLogs and
//     GetCursorTime; GetCursor begin then answers the oldest retained group.
//     The official Java consumer library (aliyun-log-consumer-java,
//     LogHubFetchTask.java) recognises exactly this: a pull error whose code
//     contains "InvalidCursor" makes it fetch a fresh cursor.
//   - Authentication on every request: signature v1 ("LOG id:sig",
//     HMAC-SHA1, Content-MD5 checked) and v4 (SLS4-HMAC-SHA256, any region,
//     x-log-content-sha256 checked) against Options.AccessKeys; the Date or
//     x-log-date must be within 15 minutes. An unknown id or a missing
//     header gets 401 Unauthorized, a wrong signature 401 SignatureNotMatch.
//     An x-acs-security-token is accepted with any configured id.
//   - Errors are {"errorCode","errorMessage"} JSON; every answer carries
//     x-log-requestid.
//
// Not emulated (400 NotSupported): GetLogs/GetHistograms and other queries,
// indexes, machine groups, Logtail configs, alerts, dashboards, ETL,
// shippers, project creation and listing, metric stores, and calls without a
// project in the Host header.
//
// # Data management and faults
//
// Append, Seed and the Generator load data without HTTP; Shards, LogCount,
// Checkpoints, CheckpointUpdates (every accepted UpdateCheckpoint, the
// newest 50,000 to 100,000 per group), Assignments and Stats inspect. SetFaults adds latency, a
// bandwidth cap, failure fractions (500, 503, 403, reset, truncated,
// garbage) or unreachability, per logstore, per project or globally, at
// run time.
//
// # Storage
//
// Each log group is kept as written: its serialized protobuf bytes,
// lz4-compressed on its own (kept raw when that does not make it smaller),
// with its receive time and log count. When a group is stored its lz4 block
// is parsed once and checked (every sequence within the block, offsets
// within the group, a literal-only last sequence, the decoded size), and
// the positions of its first sequence's literals, its first match and its
// last sequence are kept with it.
//
// A PullLogs answer is a LogGroupList: each group behind its field header
// (0x0a and a uvarint length). When the client accepts lz4 and no query
// filters the pull, the answer's lz4 block is stitched from the stored
// blocks without decompressing or compressing anything: lz4 offsets count
// back from the output position, so a group's matches stay valid behind
// other bytes. At each boundary the previous group's trailing literals, the
// next group's field header and that group's first literals become the
// literals of one merged sequence ending with its first match; the rest of
// its block up to its last sequence is copied as it is; a group stored raw
// or as a single literal run only adds literals. The answer ends with the
// last group's own last literals, so lz4's end-of-block rules hold as they
// held for that group. Stitched blocks share no matches across groups: for
// the generator's audit logs an answer is about 5% larger than one
// compressed whole (raw/wire 3.89 instead of 4.10), for a fraction of the
// CPU. Filtered pulls, zstd, deflate and uncompressed answers, and pulls
// touching a group whose block did not parse, concatenate the decompressed
// groups and compress the answer once, as before.
//
// # Known differences from the cloud
//
//   - A consumer joining a group is answered with at most one new shard
//     until its client was seen reading (a GetCursor or PullLogs whose
//     User-Agent is the consumer library's "{group}_{consumer}"), or 10 s
//     passed: SDK v0.1.124's Client.initHttpClient writes fields without
//     synchronisation on first use, and shard workers starting together
//     would trip the race detector in every -race test.
//   - Status codes of rare errors the API reference does not list
//     (ConsumerNotMatch 400, ShardReadOnly 400) and the message of
//     ConsumerNotMatch are best guesses; the SDK's consumer library compares
//     the misspelt "ConsumerNotExsit"/"ShardNotExsit", the emulator sends the
//     spellings of the SDK's error_code.go.
//   - No quotas, throttling or shard auto-split; 403 only when injected.
//     One PullLogs answer holds at most 10 MiB uncompressed (at least one
//     group); the cloud's own limit may differ.
//   - Logs' own times are not validated (no InvalidTimestamp); TTL is any
//     duration, not whole days; read-only shards are never deleted.
//   - Faults "garbage" on a write stores the data and garbles the answer;
//     "reset" and "truncated" drop the write.
//   - Only the tag __receive_time__ is added (no __client_ip__).
package slstest
