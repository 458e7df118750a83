package main

// profileNotes closes the report: what the relay's profiles showed and what
// was changed because of them. It is kept by hand beside the code that
// measures, and rewritten when a fix lands.
const profileNotes = `## Profiles and fixes

Profiles come from ` + "`bin/slsbench -profile DIR`" + `, which starts the relay with its debug flags
` + "`--cpuprofile`/`--memprofile`" + ` (off by default), and ` + "`go tool pprof`" + `.

Before any fix (200,000-event runs, one each): end to end 28,500 events/s with acks off and
9,200 with acks on, 22.8 CPU s per GB raw, peak RSS 700 MiB. The CPU profile showed the relay
busy only 45% of one core over the run: it was waiting, not computing. Of its CPU, a third
was memmove and memclr (large buffers allocated and grown per pull: the SDK's decoded
LogGroupList re-marshalled by ingest, spool compression buffers, HEC encode buffers), a
quarter allocation and GC, then the SDK's protobuf decode (23%), lz4 (17%) and gzip (7%).
`
