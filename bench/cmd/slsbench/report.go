package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// report collects every benchmark's runs and renders docs/PERFORMANCE.md.
type report struct {
	opts     options
	started  time.Time
	took     time.Duration
	machine  machine
	workload loaded

	e2e, e2eAck []e2eResult
	latency     []latencyResult
	ceiling     []ceilingResult
	ceilingPool string
	spool       []spoolFigures
	drainStore  loaded
	drain       []drainResult
	memSmall    []memResult
	memLarge    []memResult
	wanLZ4      []wanResult
	wanZstd     []wanResult
	peer        []peerFigures
	peerErr     string
	replay      []replayResult
	archive     []archiveResult
	missing     []string // benchmarks this build lacks
}

// spoolFigures are one spool-vs-dd run (benchmark 3, spooldd.go). Bytes
// are record payloads (uncompressed, as Put takes them); DiskBytes what the
// spool held on disk for them (s2, framing included). Ratio is
// WriteMBps / DDMBps.
type spoolFigures struct {
	Bytes, DiskBytes                    int64
	Records                             int
	Write, Drain                        time.Duration
	PutTime, SyncTime                   time.Duration // of Write: in Put (encode, compress, write(2)) and in Sync (fsync)
	WriteCPU, WriteWait                 time.Duration // over Write, this process's threads on a CPU / runnable waiting for one
	WriteMBps, DrainMBps, DDMBps, Ratio float64
}

// peerFigures are one syslog-ng run (benchmark 7, peer_syslogng.go).
type peerFigures struct {
	Events       int
	Dups         int
	Elapsed      time.Duration
	EventsPerSec float64
	RawBytes     int64
	PeakRSSBytes int64
	CPU          time.Duration
}

// Targets of the issue.
const (
	targetE2E         = 100_000.0
	targetVsPeer      = 1.5
	targetVsCeiling   = 0.5
	targetSpoolDD     = 0.7
	targetDrainXWAN   = 10.0
	targetRSS         = 256 << 20
	targetFlat        = 1.25 // large-backlog RSS at most this times the small one
	wanBudgetMBps     = 4.0  // the seed's WAN budget, compressed
	notMeasured       = "n/a"
	summaryPrefix     = "bench: "
	reportTitle       = "# slsrelay performance"
	reportGeneratedBy = "bench/cmd/slsbench"
)

func (r *report) e2eRate() float64 {
	return median(pluck(r.e2e, func(x e2eResult) float64 { return x.EventsPerSec }))
}
func (r *report) ceilingRate() float64 {
	return median(pluck(r.ceiling, func(x ceilingResult) float64 { return x.EventsPerSec }))
}
func (r *report) peerRate() float64 {
	return median(pluck(r.peer, func(x peerFigures) float64 { return x.EventsPerSec }))
}
func (r *report) spoolRatio() float64 {
	return median(pluck(r.spool, func(x spoolFigures) float64 { return x.Ratio }))
}
func (r *report) drainRate() float64 {
	return median(pluck(r.drain, func(x drainResult) float64 { return x.DrainMBps }))
}
func (r *report) lz4Ratio() float64 {
	return median(pluck(r.wanLZ4, func(x wanResult) float64 { return x.Ratio }))
}

// maxRSS is the largest relay peak RSS over every benchmark that ran it.
func (r *report) maxRSS() int64 {
	var m int64
	for _, x := range r.e2e {
		m = max(m, x.PeakRSS)
	}
	for _, x := range r.e2eAck {
		m = max(m, x.PeakRSS)
	}
	for _, x := range r.latency {
		m = max(m, x.PeakRSS)
	}
	for _, x := range r.drain {
		m = max(m, x.PeakRSS)
	}
	for _, x := range append(append([]memResult(nil), r.memSmall...), r.memLarge...) {
		m = max(m, x.Peak)
	}
	return m
}

// wanRawMBps is the raw MB/s the seed's WAN budget carries with lz4 pulls.
func (r *report) wanRawMBps() float64 {
	if q := r.lz4Ratio(); q > 0 {
		return wanBudgetMBps / q
	}
	return 0
}

func num(v float64, f string) string {
	if v == 0 {
		return notMeasured
	}
	return fmt.Sprintf(f, v)
}

// summary is the one line `make bench` ends with and the report starts with.
func (r *report) summary() string {
	rss := notMeasured
	if m := r.maxRSS(); m > 0 {
		rss = fmt.Sprintf("%.0f", mib(m))
	}
	return fmt.Sprintf("%se2e %s events/s, ceiling %s events/s, syslog-ng %s events/s, spool/dd %s, drain %s MB/s, replay %s events/s, from archive %s events/s, max RSS %s MiB",
		summaryPrefix, num(r.e2eRate(), "%.0f"), num(r.ceilingRate(), "%.0f"), num(r.peerRate(), "%.0f"),
		num(r.spoolRatio(), "%.2f"), num(r.drainRate(), "%.0f"), num(r.replayRate(), "%.0f"), num(r.archiveReplayRate(), "%.0f"), rss)
}

// target is one line of the targets table.
type target struct {
	what, want, got string
	met             bool
	measured        bool
}

func (r *report) targets() []target {
	var ts []target
	e2e, ceil, peer := r.e2eRate(), r.ceilingRate(), r.peerRate()
	ts = append(ts, target{"end to end, barrier on", "≥ 100,000 events/s", num(e2e, "%.0f events/s"), e2e >= targetE2E, e2e > 0})
	if peer > 0 && e2e > 0 {
		ts = append(ts, target{"vs syslog-ng reliable, same run", "≥ 1.5×", fmt.Sprintf("%.2f×", e2e/peer), e2e/peer >= targetVsPeer, true})
	} else {
		ts = append(ts, target{"vs syslog-ng reliable, same run", "≥ 1.5×", notMeasured, false, false})
	}
	if ceil > 0 && e2e > 0 {
		ts = append(ts, target{"vs the ceiling", "≥ 0.5×", fmt.Sprintf("%.2f×", e2e/ceil), e2e/ceil >= targetVsCeiling, true})
	} else {
		ts = append(ts, target{"vs the ceiling", "≥ 0.5×", notMeasured, false, false})
	}
	sr := r.spoolRatio()
	ts = append(ts, target{"spool write vs dd conv=fsync", "≥ 0.70", num(sr, "%.2f"), sr >= targetSpoolDD, sr > 0})
	if d, w := r.drainRate(), r.wanRawMBps(); d > 0 && w > 0 {
		ts = append(ts, target{"backlog drain vs the WAN budget", "≥ 10×", fmt.Sprintf("%.1f× (%.0f MB/s raw vs %.1f MB/s raw)", d/w, d, w), d/w >= targetDrainXWAN, true})
	} else {
		ts = append(ts, target{"backlog drain vs the WAN budget", "≥ 10×", notMeasured, false, false})
	}
	if m := r.maxRSS(); m > 0 {
		ts = append(ts, target{"relay RSS, every benchmark", "≤ 256 MiB", fmt.Sprintf("%.0f MiB (peak)", mib(m)), m <= targetRSS, true})
	}
	small := median(pluck(r.memSmall, func(x memResult) float64 { return float64(x.Steady) }))
	large := median(pluck(r.memLarge, func(x memResult) float64 { return float64(x.Steady) }))
	if small > 0 && large > 0 {
		ts = append(ts, target{"RSS flat under backlog", fmt.Sprintf("%s backlog ≤ %.2f× %s", gb(r.opts.backlogBytes), targetFlat, gb(r.opts.backlogSmall)),
			fmt.Sprintf("%.2f× (%.0f vs %.0f MiB)", large/small, large/(1<<20), small/(1<<20)), large/small <= targetFlat, true})
	}
	return ts
}

func gb(n int64) string { return fmt.Sprintf("%g GB", float64(n)/1e9) }

// write renders the report to path and the drain plot to plotPath.
func (r *report) write(path, plotPath string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	plotName := ""
	if plotPath != "" && len(r.drain) > 0 {
		if err := writeDrainPlot(plotPath, r.medianDrain()); err != nil {
			return err
		}
		if rel, err := filepath.Rel(filepath.Dir(path), plotPath); err == nil {
			plotName = rel
		}
	}
	var b strings.Builder
	r.render(&b, plotName)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// medianDrain is the drain run with the median rate (the plotted one).
func (r *report) medianDrain() drainResult {
	m := r.drainRate()
	best := r.drain[0]
	for _, d := range r.drain {
		if abs(d.DrainMBps-m) < abs(best.DrainMBps-m) {
			best = d
		}
	}
	return best
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func writeFileWith(path string, f func(io.Writer) (int64, error)) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func yesNo(ok, measured bool) string {
	switch {
	case !measured:
		return "not measured"
	case ok:
		return "**met**"
	default:
		return "**missed**"
	}
}

func (r *report) render(w io.Writer, plotName string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	o := r.opts
	p("%s", r.summary())
	p("")
	p("%s", reportTitle)
	p("")
	p("Generated by `make bench` (%s) on %s in %s: %d run(s) of each benchmark; a cell reads",
		reportGeneratedBy, r.machine.Date, r.took.Round(time.Second), o.runs)
	p("*median (min–max)* over the runs. The first line above is the summary `make bench` prints last")
	p("(medians; max RSS is the largest relay peak of any run). Speed is measured here, never asserted in tests.")
	p("")
	p("## Targets")
	p("")
	p("| target | wanted | measured | |")
	p("| --- | --- | --- | --- |")
	for _, t := range r.targets() {
		p("| %s | %s | %s | %s |", t.what, t.want, t.got, yesNo(t.met, t.measured))
	}
	p("")
	m := r.machine
	p("## Machine")
	p("")
	p("| | |")
	p("| --- | --- |")
	p("| CPU | %s, %d cores (shared with other engineers' builds and tests: figures are noisy) |", m.CPU, m.Cores)
	p("| memory | %s |", m.Memory)
	p("| OS, kernel | %s, Linux %s |", m.OS, m.Kernel)
	p("| spool filesystem | %s |", m.FS)
	p("| Go | %s |", m.Go)
	p("| date | %s |", m.Date)
	p("")
	p("Everything runs on this one machine: the SLS emulator and the HEC receiver inside the")
	p("`slsbench` process, the relay as a subprocess, syslog-ng as a subprocess, all on loopback.")
	p("The relay competes with them for the two cores.")
	p("")
	p("## Workload and definitions")
	p("")
	wl := r.workload
	if wl.Logs > 0 {
		p("- %d ActionTrail-like audit logs per end-to-end run (`slstest` generator, kind `audit`: 21 fields, %.0f B of",
			wl.Logs, float64(wl.ContentBytes)/float64(wl.Logs))
		p("  keys and values, %.0f B serialized), %d per log group, spread over %d shards, generated from a fixed seed",
			float64(wl.RawBytes)/float64(wl.Logs), perGroup, wl.Shards)
		p("  and loaded into the emulator before the relay starts (%s for %d logs).", wl.Took.Round(time.Millisecond), wl.Logs)
	}
	p("- **Raw bytes** are the serialized LogGroup protobuf bytes: what SLS reports as `x-log-bodyrawsize` for a")
	p("  pull and the emulator counts as raw bytes served. MB is 10^6 bytes, MiB 2^20.")
	p("- **Relay config**: the defaults (spool on disk with its fsync barrier, lz4 on the SLS wire, s2 in the spool,")
	p("  HEC gzip, 1 MiB requests, 1000 log groups a pull) except `heartbeat_interval: 1s` (the emulator assigns a")
	p("  new consumer's shards over two heartbeats; with the default 20 s, seven of eight shards would idle for the")
	p("  first 20 s). Each run uses a fresh consumer group and data directory.")
	p("- **Loss check**: the receiver counts distinct `event_id`s in a bitmap; a run ends when every id arrived and")
	p("  fails if one is missing. Duplicates are counted and shown.")
	p("- **CPU** is the relay's user + system time (rusage of the subprocess), **peak RSS** its VmHWM, read from")
	p("  /proc just before it is stopped (not ru_maxrss: Linux carries the bench process's RSS into it at exec).")
	p("")
	if len(r.missing) > 0 {
		p("**Not in this build of slsbench**: %s.", strings.Join(r.missing, ", "))
		p("")
	}
	r.renderE2E(p)
	r.renderCeiling(p)
	r.renderSpool(p)
	r.renderDrain(p, plotName)
	r.renderMemory(p)
	r.renderWAN(p)
	r.renderPeer(p)
	r.renderReplay(p)
	r.renderArchive(p)
	p("## Durability of each figure")
	p("")
	p("- slsrelay (benchmarks 1, 4, 5): every pull is written to the spool and **fsynced** before its checkpoint")
	p("  moves; a record leaves the spool only after HEC answered 2xx (with acks: after the ack). Survives a")
	p("  process crash and a power loss.")
	p("- Spool benchmark (3): records are fsynced (Put + Sync, one barrier per record, i.e. per pull); dd uses `conv=fsync`")
	p("  (one fsync, at the end).")
	p("- syslog-ng (7): `disk-buffer(reliable(yes))` writes every message to its queue file but never calls fsync:")
	p("  it survives a crash of syslog-ng, not a power loss. Its figure therefore has weaker durability than the relay's.")
	p("- Ceiling (2): nothing is stored; it measures loopback and the receiver only.")
	p("")
	p("## How to rerun")
	p("")
	p("```sh")
	p("make bench                      # builds bin/slsrelay and bin/slsbench, runs all nine, rewrites this file")
	p("make bench BENCH_FLAGS='-runs 1 -events 200000 -only e2e,ceiling'   # a quick look at some")
	p("bin/slsbench -h                 # every knob; -profile DIR writes the relay's CPU and heap profiles")
	p("make bench-micro                # the go test -bench micro-benchmarks of the packages")
	p("```")
	p("")
	p("Invocation of this report: `slsbench -runs %d -events %d -drain-bytes %d -backlog-bytes %d -spool-bytes %d`.",
		o.runs, o.events, o.drainBytes, o.backlogBytes, o.spoolBytes)
	p("")
	p("%s", profileNotes)
}

type printer func(format string, args ...any)

func (r *report) renderE2E(p printer) {
	if len(r.e2e) == 0 {
		return
	}
	p("## 1. End to end: emulator → relay → HEC receiver")
	p("")
	p("Data loaded beforehand; the relay binary with the default config; the receiver on loopback with gzip.")
	p("Rate is over *first pull → last event received*; startup (process start → first pull) is shown apart.")
	p("")
	p("| | ack off | indexer acks on |")
	p("| --- | --- | --- |")
	row := func(name, f string, get func(e2eResult) float64) {
		p("| %s | %s | %s |", name, cell(pluck(r.e2e, get), f), cell(pluck(r.e2eAck, get), f))
	}
	row("events/s", "%.0f", func(x e2eResult) float64 { return x.EventsPerSec })
	row("raw MB/s", "%.1f", func(x e2eResult) float64 { return x.RawMBps })
	row("relay CPU s per GB raw", "%.1f", func(x e2eResult) float64 { return x.CPUPerGB })
	row("relay peak RSS, MiB", "%.0f", func(x e2eResult) float64 { return mib(x.PeakRSS) })
	row("elapsed, s", "%.2f", func(x e2eResult) float64 { return x.Elapsed.Seconds() })
	row("startup, s", "%.2f", func(x e2eResult) float64 { return x.Startup.Seconds() })
	row("duplicates", "%.0f", func(x e2eResult) float64 { return float64(x.Dups) })
	row("HEC requests", "%.0f", func(x e2eResult) float64 { return float64(x.Requests) })
	row("HEC JSON bytes per event", "%.0f", func(x e2eResult) float64 { return float64(x.HECBody) / float64(x.Events) })
	row("HEC wire bytes per event (gzip)", "%.0f", func(x e2eResult) float64 { return float64(x.HECWire) / float64(x.Events) })
	row("SLS wire bytes per raw byte", "%.3f", func(x e2eResult) float64 { return float64(x.PullWire) / float64(max(1, x.PullRaw)) })
	p("")
	if len(r.latency) > 0 {
		p("**Latency at half load**: logs written live into a fresh 8-shard logstore at half the median ack-off rate")
		p("for %s, in groups of %d, starting once the relay's heartbeats report every shard held; delay from the", r.opts.latencyFor, perGroup)
		p("emulator's receive stamp (the instant `AppendRaw` returns) to the receiver's receipt, over every event. A")
		p("caught-up shard is pulled again `fetch_interval` (100 ms by default; `idle_fetch_interval`, also 100 ms,")
		p("after a pull that found nothing) after its last pull began and nothing else sleeps (the SDK's consumer library,")
		p("used before, slept up to 500 ms between small pulls, `sleepUtilNextFetch`); the records queued in the")
		p("spool behind the head go to the SIEM together (`batch_records`). The log groups are generated and")
		p("serialized before the clock starts (a real SLS's producers do not share the relay's cores); the")
		p("emulator stores and compresses each as it arrives. The p99 counts every event, the first ones too:")
		p("the load steps from nothing to half at once, the first pulls find up to `idle_fetch_interval` of")
		p("data and the relay is cold. The last column leaves out the events written in the first %s.", settleAfter)
		p("")
		p("| load, events/s | events | p50 | p99 | max | p99 from %s on |", settleAfter)
		p("| --- | --- | --- | --- | --- | --- |")
		p("| %s | %s | %s ms | %s ms | %s ms | %s ms |",
			cell(pluck(r.latency, func(x latencyResult) float64 { return x.Achieved }), "%.0f"),
			cell(pluck(r.latency, func(x latencyResult) float64 { return float64(x.Events) }), "%.0f"),
			cell(pluck(r.latency, func(x latencyResult) float64 { return ms(x.P50) }), "%.0f"),
			cell(pluck(r.latency, func(x latencyResult) float64 { return ms(x.P99) }), "%.0f"),
			cell(pluck(r.latency, func(x latencyResult) float64 { return ms(x.Max) }), "%.0f"),
			cell(settledP99s(r.latency), "%.0f"))
		p("")
	}
}

// settledP99s is the runs' SettledP99 in ms, leaving out runs too short to
// have one (-latency-for up to settleAfter).
func settledP99s(xs []latencyResult) []float64 {
	var out []float64
	for _, x := range xs {
		if x.SettledP99 > 0 {
			out = append(out, ms(x.SettledP99))
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *report) renderCeiling(p printer) {
	if len(r.ceiling) == 0 {
		return
	}
	p("## 2. Ceiling: pre-built HEC batches into the same receiver")
	p("")
	p("The relay's own HEC sink (`deliver.HEC`, default options) rendered workload logs once into a pool of")
	p("requests (%s); a sender that does nothing else replays them over %d connections", r.ceilingPool, ceilingConns)
	p("until %d events were accepted. This is what this machine's loopback and the receiver can take.", r.opts.events)
	p("")
	p("| events/s | HEC JSON MB/s | wire MB/s | relay e2e as a fraction |")
	p("| --- | --- | --- | --- |")
	frac := notMeasured
	if c, e := r.ceilingRate(), r.e2eRate(); c > 0 && e > 0 {
		frac = fmt.Sprintf("%.2f", e/c)
	}
	p("| %s | %s | %s | %s |",
		cell(pluck(r.ceiling, func(x ceilingResult) float64 { return x.EventsPerSec }), "%.0f"),
		cell(pluck(r.ceiling, func(x ceilingResult) float64 { return x.BodyMBps }), "%.1f"),
		cell(pluck(r.ceiling, func(x ceilingResult) float64 { return x.WireMBps }), "%.1f"), frac)
	p("")
}

func (r *report) renderSpool(p printer) {
	if len(r.spool) == 0 {
		return
	}
	p("## 3. Spool alone vs `dd conv=fsync`")
	p("")
	p("%s of records written with the barrier on, then drained (Peek + Ack); `dd if=/dev/zero bs=1M conv=fsync`",
		mibText(r.opts.spoolBytes))
	p("of the same size in the same directory, in the same run (dd and the spool take turns going first).")
	p("Records are in the relay's format, one pull of %d workload groups (%d logs, ~10 MB) each, a pool of", 100, 100*perGroup)
	p("at most %d distinct ones cycled; the spool has the relay's default options (s2, 64 MiB segments) and one", spoolPoolRecords)
	p("writer doing Put + Sync per record, as ingest does per pull. **MB/s are record payload bytes** (the")
	p("serialized LogGroupList, uncompressed, what Put takes) per second; the spool writes them s2-compressed,")
	p("so it puts fewer bytes on disk than dd does for the same figure (*on disk* below). Drain reads what was")
	p("just written, mostly from the page cache.")
	p("")
	p("| spool write MB/s | spool drain MB/s | dd MB/s | spool/dd | on disk per payload byte | write time in Put / in Sync |")
	p("| --- | --- | --- | --- | --- | --- |")
	p("| %s | %s | %s | %s | %s | %s / %s |",
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.WriteMBps }), "%.0f"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.DrainMBps }), "%.0f"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.DDMBps }), "%.0f"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.Ratio }), "%.2f"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return float64(x.DiskBytes) / float64(max(1, x.Bytes)) }), "%.2f"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return 100 * x.PutTime.Seconds() / x.Write.Seconds() }), "%.0f%%"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return 100 * x.SyncTime.Seconds() / x.Write.Seconds() }), "%.0f%%"))
	p("")
	p("*In Put* is encoding (CRC32C, s2 on both cores) and diskqueue's write(2); *in Sync* the fsync barrier. Over the write")
	p("(%s s), this process's threads were on a CPU for %s s in all, and runnable but waiting for a CPU for",
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.Write.Seconds() }), "%.2f"),
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.WriteCPU.Seconds() }), "%.2f"))
	p("%s s in all (`/proc/self/task/*/schedstat`; sums over threads, so either may exceed the wall time).",
		cell(pluck(r.spool, func(x spoolFigures) float64 { return x.WriteWait.Seconds() }), "%.2f"))
	p("`slsbench -profile DIR` writes this process's CPU profile of each write and drain (`spool-N.write.cpu`,")
	p("`spool-N.drain.cpu`).")
	p("")
}

func mibText(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.0f MiB", mib(n))
}

func (r *report) renderDrain(p printer, plotName string) {
	if len(r.drain) == 0 {
		return
	}
	ds := r.drainStore
	p("## 4. Backlog drain")
	p("")
	p("The HEC receiver is down (connection refused) while the relay pulls a %.2f GB-raw backlog (%d logs over",
		float64(ds.RawBytes)/1e9, ds.Logs)
	p("%d shards) into its spool through its normal path; then the receiver comes back. Drain time is from the", ds.Shards)
	p("receiver's return to the last event; the sink's `retry.max_backoff` is 1s here (default 30s) so that the")
	p("return is noticed at once.")
	p("")
	p("| fill, raw MB/s (SIEM down) | spool on disk, MiB | first event after, s | drain, raw MB/s | drain, events/s | CPU s per GB | peak RSS, MiB |")
	p("| --- | --- | --- | --- | --- | --- | --- |")
	p("| %s | %s | %s | %s | %s | %s | %s |",
		cell(pluck(r.drain, func(x drainResult) float64 { return x.FillMBps }), "%.0f"),
		cell(pluck(r.drain, func(x drainResult) float64 { return mib(x.SpoolBytes) }), "%.0f"),
		cell(pluck(r.drain, func(x drainResult) float64 { return x.FirstEvent.Seconds() }), "%.2f"),
		cell(pluck(r.drain, func(x drainResult) float64 { return x.DrainMBps }), "%.0f"),
		cell(pluck(r.drain, func(x drainResult) float64 { return x.EventsPerSec }), "%.0f"),
		cell(pluck(r.drain, func(x drainResult) float64 { return x.CPUPerGB }), "%.1f"),
		cell(pluck(r.drain, func(x drainResult) float64 { return mib(x.PeakRSS) }), "%.0f"))
	p("")
	if w := r.wanRawMBps(); w > 0 {
		p("The seed's WAN budget is %.0f MB/s compressed; with lz4 pulls (benchmark 6: %.3f wire bytes per raw byte)",
			wanBudgetMBps, r.lz4Ratio())
		p("it carries %.1f MB/s of raw logs. The drain runs at **%.1f×** that: a backlog that took an hour of",
			w, r.drainRate()/w)
		p("WAN time to arrive leaves the spool in %.0f minutes.", 60*w/r.drainRate())
		p("")
	}
	if plotName != "" {
		p("![throughput and relay RSS during the drain](%s)", plotName)
		p("")
		p("`%s`: the median run; throughput per 250 ms and the relay's RSS, sampled from /proc.", plotName)
		p("")
	}
}

func (r *report) renderMemory(p printer) {
	if len(r.memLarge) == 0 {
		return
	}
	p("## 5. Memory under backlog")
	p("")
	p("The spool is pre-built directly with the `spool` package (records of the relay's format: one pull of 100")
	p("workload groups each, a pool of 16 distinct records cycled), so that `make bench` need not pull 10 GB")
	p("through the relay. The relay then starts on it with the SIEM down, is assigned %d shards of a logstore", memShards)
	p("receiving a trickle (one group of %d logs per shard per second), and RSS is sampled every 200 ms for", perGroup)
	p("%s; *steady* is the median over the second half of that window.", r.opts.memWindow)
	p("")
	p("| backlog, raw | spool on disk, MiB | shards | steady RSS, MiB | peak RSS, MiB |")
	p("| --- | --- | --- | --- | --- |")
	for _, rows := range [][]memResult{r.memSmall, r.memLarge} {
		if len(rows) == 0 {
			continue
		}
		p("| %.1f GB | %s | %d | %s | %s |", float64(rows[0].BacklogRaw)/1e9,
			cell(pluck(rows, func(x memResult) float64 { return mib(x.SpoolBytes) }), "%.0f"), rows[0].Shards,
			cell(pluck(rows, func(x memResult) float64 { return mib(x.Steady) }), "%.0f"),
			cell(pluck(rows, func(x memResult) float64 { return mib(x.Peak) }), "%.0f"))
	}
	p("")
}

func (r *report) renderWAN(p printer) {
	if len(r.wanLZ4) == 0 {
		return
	}
	p("## 6. WAN efficiency")
	p("")
	p("The whole end-to-end logstore pulled with the SDK as the relay pulls it (1000 groups a request), once per")
	p("compression: response bytes on the SLS wire per raw byte. The emulator compresses like the service")
	p("(lz4 block; zstd at its default level), except that an lz4 answer is stitched from its log groups,")
	p("each compressed on its own when written (no match crosses two groups: about 5% more bytes than")
	p("compressing the answer whole, 0.257 against 0.244 here), so real SLS may differ by a few percent.")
	p("")
	p("| compression | wire bytes per raw byte | raw per wire byte |")
	p("| --- | --- | --- |")
	for _, rows := range [][]wanResult{r.wanLZ4, r.wanZstd} {
		if len(rows) == 0 {
			continue
		}
		p("| %s | %s | %s |", rows[0].Compression, cell(pluck(rows, func(x wanResult) float64 { return x.Ratio }), "%.3f"),
			cell(pluck(rows, func(x wanResult) float64 { return 1 / x.Ratio }), "%.2f"))
	}
	p("")
}

func (r *report) renderPeer(p printer) {
	p("## 7. Peer: syslog-ng in the same run")
	p("")
	if len(r.peer) == 0 {
		if r.peerErr != "" {
			p("Not measured: %s", r.peerErr)
		} else {
			p("Not run.")
		}
		p("")
		return
	}
	p("syslog-ng (Debian's `syslog-ng-core` and `syslog-ng-mod-http`, unpacked, not installed) reads the same")
	p("workload as ~1 KB JSON lines over TCP and forwards them with `http()` and `disk-buffer(reliable(yes))` to")
	p("the same HEC receiver (ack off). See `bench/cmd/slsbench/peer_syslogng.go` for its configuration.")
	p("")
	p("The input is the end-to-end workload's logs (the same generators, so the same event ids), one JSON object of")
	p("a log's contents per line (what the relay's HEC events carry as `event`), fed at full speed from files over")
	p("%d TCP connections into a `network()` source with `flags(no-parse)` and `flags(flow-control)`; `http()` posts", peerConns)
	p("`{\"event\":<line>}` objects, newline-delimited, in batches of up to 1 MiB, %d workers, through a reliable", peerWorkers)
	p("disk buffer. Rate is over *first byte fed → last event received*, as the receiver counts distinct ids.")
	p("")
	p("| | events/s | MB/s of input | CPU s per GB of input | peak RSS, MiB |")
	p("| --- | --- | --- | --- | --- |")
	p("| syslog-ng reliable disk buffer (no fsync) | %s | %s | %s | %s |",
		cell(pluck(r.peer, func(x peerFigures) float64 { return x.EventsPerSec }), "%.0f"),
		cell(pluck(r.peer, func(x peerFigures) float64 { return float64(x.RawBytes) / 1e6 / x.Elapsed.Seconds() }), "%.1f"),
		cell(pluck(r.peer, func(x peerFigures) float64 { return x.CPU.Seconds() / (float64(x.RawBytes) / 1e9) }), "%.1f"),
		cell(pluck(r.peer, func(x peerFigures) float64 { return mib(x.PeakRSSBytes) }), "%.0f"))
	if len(r.e2e) > 0 {
		p("| slsrelay, spool fsynced (benchmark 1) | %s | %s | %s | %s |",
			cell(pluck(r.e2e, func(x e2eResult) float64 { return x.EventsPerSec }), "%.0f"),
			cell(pluck(r.e2e, func(x e2eResult) float64 { return x.RawMBps }), "%.1f"),
			cell(pluck(r.e2e, func(x e2eResult) float64 { return x.CPUPerGB }), "%.1f"),
			cell(pluck(r.e2e, func(x e2eResult) float64 { return mib(x.PeakRSS) }), "%.0f"))
		p("")
		p("Ratio slsrelay / syslog-ng (medians): **%.2f×**. slsrelay does more per event: it decodes the SLS", r.e2eRate()/r.peerRate())
		p("protobuf, re-encodes HEC JSON, and fsyncs its spool. The slsrelay row's MB/s and CPU are per raw (protobuf)")
		p("byte, syslog-ng's per byte of its JSON input.")
	}
	p("")
	p("Differences that favour syslog-ng: it posts uncompressed JSON (the relay gzips, which the same receiver then")
	p("inflates), its events carry no `time` or indexed `fields` (less for the receiver to parse), and its disk")
	p("buffer is never fsynced.")
	if r.peerErr != "" {
		p("")
		p("**A later run failed**: %s", r.peerErr)
	}
	p("")
}
