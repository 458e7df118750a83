package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"slsrelay/ingest/slstest"
	"slsrelay/spool"
)

// Benchmark 3: the spool alone against dd conv=fsync.
//
// Records of the relay's format (one pull of 100 workload groups each, the
// serialized LogGroupList as ingest encodes it; a pool of up to 16 distinct
// ones cycled) are written into a fresh spool with the relay's default options
// (s2, 64 MiB segments) until their payloads reach -spool-bytes, with
// Put + Sync per record as ingest does per pull; then drained with Peek +
// Ack (Ack fsyncs the acknowledged Seq) until empty. In the same directory
// and the same run, `dd if=/dev/zero bs=1M conv=fsync` writes the same
// number of bytes. MB/s are payload bytes (uncompressed, what Put takes)
// per second, 1e6; the spool stores them s2-compressed, so it writes
// fewer bytes to disk than dd (shown apart as DiskBytes).

func init() { benchFuncs["spool"] = (*bench).benchSpool }

// spoolPoolRecords is how many distinct records are cycled.
const spoolPoolRecords = 16

// spoolRecordPool builds the records the spool benchmark writes: one pull
// of 100 workload groups each, spoolPoolRecords of them or fewer when
// fewer hold size bytes.
func spoolRecordPool(seed, size int64) ([]spool.Record, error) {
	g := slstest.NewGenerator(slstest.KindAudit, genSeed(seed, 960))
	pool := make([]spool.Record, 0, spoolPoolRecords)
	var bytes int64
	for i := 0; i < spoolPoolRecords && bytes < size; i++ {
		p, err := g.Pull(100, perGroup)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		pool = append(pool, spool.Record{Project: benchProject, Logstore: "spool", Shard: i % 8,
			Cursor: fmt.Sprintf("MTcwMDAwMDAwMDAwMDAwMDAw%04d", i), NextCursor: fmt.Sprintf("MTcwMDAwMDAwMDAwMDAwMDAw%04d", i+1),
			Count: 100 * perGroup, MinTime: now.Unix(), MaxTime: now.Unix(), ReceivedAt: now, Payload: p})
		bytes += int64(len(p))
	}
	return pool, nil
}

func (b *bench) benchSpool(ctx context.Context, rep *report) error {
	if _, err := exec.LookPath("dd"); err != nil {
		return fmt.Errorf("dd not found: %w", err)
	}
	pool, err := spoolRecordPool(b.opts.seed, b.opts.spoolBytes)
	if err != nil {
		return err
	}
	var poolBytes int64
	for _, r := range pool {
		poolBytes += int64(len(r.Payload))
	}
	b.logf("spool: %d distinct records of %.1f MB payload on average; writing %s per run",
		len(pool), float64(poolBytes)/float64(len(pool))/1e6, mibText(b.opts.spoolBytes))
	for i := 0; i < b.opts.runs; i++ {
		r, err := b.runSpool(ctx, pool, i)
		if err != nil {
			return err
		}
		b.logf("spool run %d: %d records, %.0f MiB payload (%.0f MiB on disk): write %.0f MB/s (%.0f%% of it in Put, %.0f%% in Sync; over its %.2f s, %.2f s on a CPU and %.2f s runnable waiting for one), drain %.0f MB/s; dd conv=fsync %.0f MB/s; spool/dd %.2f",
			i+1, r.Records, mib(r.Bytes), mib(r.DiskBytes), r.WriteMBps, 100*r.PutTime.Seconds()/r.Write.Seconds(),
			100*r.SyncTime.Seconds()/r.Write.Seconds(), r.Write.Seconds(), r.WriteCPU.Seconds(), r.WriteWait.Seconds(),
			r.DrainMBps, r.DDMBps, r.Ratio)
		rep.spool = append(rep.spool, r)
	}
	return nil
}

// runSpool is one write + drain of the spool and one dd, in alternating
// order from run to run so that neither always meets a warmer disk.
func (b *bench) runSpool(ctx context.Context, pool []spool.Record, run int) (spoolFigures, error) {
	var res spoolFigures
	dir := filepath.Join(b.work, fmt.Sprintf("spool-%d", run))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	doDD := func() error {
		d, err := runDD(ctx, filepath.Join(dir, "dd.bin"), b.opts.spoolBytes)
		if err != nil {
			return err
		}
		res.DDMBps = float64(b.opts.spoolBytes) / 1e6 / d.Seconds()
		return nil
	}
	if run%2 == 1 {
		if err := doDD(); err != nil {
			return res, err
		}
	}
	prof := ""
	if b.opts.profileDir != "" {
		prof = filepath.Join(b.opts.profileDir, fmt.Sprintf("spool-%d", run))
	}
	if err := spoolWriteDrain(ctx, filepath.Join(dir, "spool"), pool, b.opts.spoolBytes, prof, &res); err != nil {
		return res, err
	}
	if run%2 == 0 {
		if err := doDD(); err != nil {
			return res, err
		}
	}
	res.Ratio = res.WriteMBps / res.DDMBps
	return res, nil
}

// spoolWriteDrain writes records from pool into a fresh spool at dir until
// their payloads reach size (Put + Sync per record), then drains it (Peek +
// Ack), filling res. With prof set, the CPU profile of this process during
// the write goes to prof+".write.cpu" and during the drain to
// prof+".drain.cpu".
func spoolWriteDrain(ctx context.Context, dir string, pool []spool.Record, size int64, prof string, res *spoolFigures) error {
	opts := spool.Options{MaxBytes: max(spool.DefaultMaxBytes, 2*size), MinFreeBytes: 64 << 20,
		Logger: slog.New(slog.DiscardHandler)}
	sp, err := spool.Open(dir, opts)
	if err != nil {
		return err
	}
	defer sp.Close()
	stopProf, err := startCPUProfile(prof, ".write.cpu")
	if err != nil {
		return err
	}
	cpu0, wait0 := selfSched()
	t0 := time.Now()
	for res.Bytes < size {
		r := pool[res.Records%len(pool)]
		r.ReceivedAt = time.Now()
		tp := time.Now()
		if err := sp.Put(ctx, &r); err != nil {
			return fmt.Errorf("spool put: %w", err)
		}
		ts := time.Now()
		if err := sp.Sync(ctx); err != nil {
			return fmt.Errorf("spool sync: %w", err)
		}
		res.PutTime += ts.Sub(tp)
		res.SyncTime += time.Since(ts)
		res.Records++
		res.Bytes += int64(len(r.Payload))
	}
	res.Write = time.Since(t0)
	cpu1, wait1 := selfSched()
	res.WriteCPU, res.WriteWait = cpu1-cpu0, wait1-wait0
	stopProf()
	res.DiskBytes = sp.Stats().Bytes
	res.WriteMBps = float64(res.Bytes) / 1e6 / res.Write.Seconds()
	if stopProf, err = startCPUProfile(prof, ".drain.cpu"); err != nil {
		return err
	}
	t1 := time.Now()
	var drained int64
	for n := 0; n < res.Records; n++ {
		r, err := sp.Peek(ctx)
		if err != nil {
			return fmt.Errorf("spool peek: %w", err)
		}
		drained += int64(len(r.Payload))
		if err := sp.Ack(r.Seq); err != nil {
			return fmt.Errorf("spool ack: %w", err)
		}
	}
	res.Drain = time.Since(t1)
	stopProf()
	if drained != res.Bytes {
		return fmt.Errorf("spool drained %d payload bytes, wrote %d", drained, res.Bytes)
	}
	if st := sp.Stats(); st.Depth != 0 {
		return fmt.Errorf("spool not empty after the drain: %d records", st.Depth)
	}
	res.DrainMBps = float64(res.Bytes) / 1e6 / res.Drain.Seconds()
	return sp.Close()
}

// selfSched sums this process's threads' time on a CPU and time runnable
// but waiting for a CPU (/proc/self/task/*/schedstat); zeros if unreadable.
func selfSched() (cpu, wait time.Duration) {
	tasks, _ := filepath.Glob("/proc/self/task/*/schedstat")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		var on, delay int64
		if _, err := fmt.Sscan(string(b), &on, &delay); err == nil {
			cpu += time.Duration(on)
			wait += time.Duration(delay)
		}
	}
	return cpu, wait
}

// startCPUProfile profiles this process into prefix+suffix until the
// returned function is called; nothing when prefix is empty.
func startCPUProfile(prefix, suffix string) (func(), error) {
	if prefix == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(prefix), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(prefix + suffix)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// runDD writes size bytes of zeros to path with dd bs=1M conv=fsync and
// returns its wall time (process start to exit).
func runDD(ctx context.Context, path string, size int64) (time.Duration, error) {
	defer os.Remove(path)
	count := (size + 1<<20 - 1) >> 20
	cmd := exec.CommandContext(ctx, "dd", "if=/dev/zero", "of="+path, "bs=1M", fmt.Sprintf("count=%d", count), "conv=fsync")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("dd: %w\n%s", err, out)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != count<<20 {
		return 0, fmt.Errorf("dd wrote %v bytes, want %d (%v)", st, count<<20, err)
	}
	return d, nil
}
