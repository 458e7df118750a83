package main

// profileNotes closes the report: what the relay's profiles showed and what
// was changed because of them. It is kept by hand beside the code that
// measures, and rewritten when a fix lands.
const profileNotes = `## Profiles and fixes

Profiles come from ` + "`bin/slsbench -profile DIR`" + `, which starts the relay with its debug flags
` + "`--cpuprofile`" + ` and ` + "`--memprofile`" + ` (off by default; the latter also writes the heap profile at its
in-use peak, ` + "`*.mem.peak`" + `), read with ` + "`go tool pprof`" + `.

**Before** (200,000-event runs, one each, same shared machine): end to end 28,500 events/s with acks
off and 9,200 with acks on, 22.8 relay CPU s per GB raw, peak RSS 700–800 MiB.

What the profiles showed:

- CPU: the relay used ~45% of one core over the run. Of its CPU, the SDK's pull and protobuf decode
  took 36% (` + "`LogGroupList.Unmarshal`" + ` alone 24%), ingest re-marshalling the decoded list into the
  record 11%, spool lz4 11%, the delivery loop 28% (our protobuf walker, HEC JSON, gzip level 1 11%).
  A third of all samples were memmove/memclr of large per-pull buffers, a quarter allocation and GC.
  On this two-core machine shared with other engineers' tests, the emulator and the receiver in the
  bench process take about as much CPU as the relay: the end-to-end rate is CPU-bound for the machine
  as a whole, not for the relay alone.
- Heap at its peak (227 MB in use for 700 MiB RSS): 60% was the SDK's pulls in flight (decompressed
  bodies and decoded LogGroupLists, ~35 MB per 10 MiB pull, eight shards at once), then deliver's
  decoded events (11%), the re-marshalled payload (9%), HEC encode buffers (7%). RSS was ~3× the
  live heap: GOGC=100 lets the heap double between collections.
- Acks on: one HEC request at a time (the code's default concurrency 1, although docs/CONFIG.md said 4),
  each waiting for its ack poll.

Fixes, each its own commit with before/after (200,000-event runs):

| fix | before | after |
| --- | --- | --- |
| ingest: at most 2 SDK pulls in flight per source (SDK default 50) | peak RSS 707–809 MiB | 409–455 MiB, rate unchanged within noise |
| hec.concurrency defaults to 4, as documented | acks on 9,200 events/s | 22,000 events/s |
| soft memory limit 200 MiB (+64 MiB per extra source/sink) unless GOMEMLIMIT is set | peak RSS 409–455 MiB | 222–245 MiB, CPU per GB unchanged |

What remains (not done in this round): the relay still spends ~19 CPU s per GB raw. The largest
single costs are the SDK decoding every pull into Go objects only for ingest to marshal them back
(~45% of the relay's CPU: a consumer that keeps the pulled bytes, as the emulator's
` + "`GetLogsBytes`" + ` path allows, would remove both), per-record buffers that are allocated and
cleared for every pull instead of reused, and the delivery loop handling one record at a time
(decode, encode and gzip of the next record could overlap the HTTP requests of the current one).
The receiver used here (` + "`deliver/hectest`" + `, encoding/json with indexed fields decoded into maps)
also tops out near 100,000–140,000 events/s on both cores, so the 100,000 events/s end-to-end
target cannot be shown on this machine with this receiver: its ceiling, benchmark 2, is the bound.
`
