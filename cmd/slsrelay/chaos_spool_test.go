package main

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"slsrelay/deliver"
	"slsrelay/deliver/hectest"
	"slsrelay/spool"
)

// Scenarios 21–23: the edges of the spool — a damaged dead-letter queue, a
// record that passes its checksum but will not decode, a disk filled to
// the last byte.

// fileEntries returns the offsets and lengths of the length-prefixed
// entries of b (a spool segment or an undamaged dead-letter file: both
// are a sequence of 4-byte big-endian lengths, each followed by that
// many bytes).
func fileEntries(b []byte) (offs, lens []int) {
	for off := 0; off+4 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if off+4+n > len(b) {
			break
		}
		offs, lens = append(offs, off), append(lens, 4+n)
		off += 4 + n
	}
	return offs, lens
}

// rejectedDL reports whether the dead-letter scenario's SIEM rejects this
// event id as bad data (about one in 50).
func rejectedDL(id string) bool { return strings.HasSuffix(id, "07") || strings.HasSuffix(id, "57") }

func TestChaos_DeadLetterDamage(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	rounds := pick(2, 12)
	w := newChaosWorld(t, chaosShards, 2001)
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr})
	log := filepath.Join(w.dir, "relay.log")
	h := w.hecs[0]
	h.SetFault(hectest.Fault{RejectEvent: func(ev hectest.Event) (int, int, string, bool) {
		return 400, 6, "Invalid data format", rejectedDL(eventID(ev.Event))
	}})
	sd := filepath.Join(dd, "spool", "hec0")
	dlFile := filepath.Join(sd, "deadletter.log")
	rng := rand.New(rand.NewPCG(20, uint64(rounds)))
	p := startProc(t, bin, cfg, log)
	pass := true
	damagedEvents, damaged, exits := 0, 0, 0
	var kinds []string
	// accounted waits until every event is delivered or dead-lettered,
	// but those of the damaged entries (lost for good).
	accounted := func() bool {
		return waitUntil(2*time.Minute, func() bool { time.Sleep(200 * time.Millisecond); return w.reconcile(dd).Lost <= damagedEvents })
	}
	for r := range rounds {
		// This round's dead letters are appended from here on: earlier
		// damage stays before it.
		var from int64
		if fi, err := os.Stat(dlFile); err == nil {
			from = fi.Size()
		}
		w.write(40, chaosPerGroup)
		if !accounted() {
			pass = false
			t.Errorf("round %d: not every event delivered or dead-lettered within 2 minutes", r)
		}
		p.kill()
		// Damage one of this round's entries, as a disk might: a burst of
		// flipped bytes inside it, or its length field.
		b, err := os.ReadFile(dlFile)
		if err != nil {
			t.Fatal(err)
		}
		offs, lens := fileEntries(b[from:])
		if len(offs) == 0 {
			t.Fatalf("round %d: no new dead letters", r)
		}
		k := rng.IntN(len(offs))
		off, n := int(from)+offs[k], lens[k]
		ids, err := entryIDs(t, b[off:off+n])
		if err != nil {
			t.Fatal(err)
		}
		kind := "flipped bytes"
		if rng.IntN(2) == 0 {
			binary.BigEndian.PutUint32(b[off:], uint32(rng.Int32N(1<<30)))
			kind = "length field"
		} else {
			start := off + 8 + rng.IntN(n-24)
			for i := start; i < start+1+rng.IntN(16); i++ {
				b[i] ^= byte(1 + rng.IntN(255))
			}
		}
		if err := os.WriteFile(dlFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, kind)
		damaged++
		damagedEvents += ids
		p = startProc(t, bin, cfg, log)
		if !waitUntil(time.Minute, func() bool { return p.exited() || metric(maddr, "slsrelay_spool_dead_letters") >= 0 }) || p.exited() {
			exits++
			pass = false
			t.Errorf("round %d: the relay did not start after the dead-letter damage:\n%s", r, tail(log, 5))
			p = startProc(t, bin, cfg, log)
		}
	}
	// A last batch after all the damage: its dead letters are appended
	// behind the damaged regions and readable.
	w.write(40, chaosPerGroup)
	okLast := accounted()
	_, clean := p.term(time.Minute)
	st, err := spool.Inspect(sd)
	if err != nil {
		t.Fatal(err)
	}
	tl := w.reconcile(dd)
	logged := strings.Count(readFile(log), "damaged dead-letter entry")
	pass = pass && okLast && clean && exits == 0 && tl.Lost <= damagedEvents &&
		st.DeadLetterDamaged == int64(damaged) && tl.Quarantined >= damaged && logged >= damaged
	report(t, chaosRow{ID: 21, Name: "dead-letter damage",
		Load:   fmt.Sprintf("%d shards; %d rounds of 40 groups of %d logs; the SIEM rejects 1 in 50 events as bad data (400 code 6)", chaosShards, rounds+1, chaosPerGroup),
		Faults: fmt.Sprintf("after each round: kill -9, then one entry of the dead-letter file damaged (%s), then a restart", strings.Join(kinds, ", ")),
		Bound:  "always starts; lost ≤ the events of the damaged entries; every other dead letter, before and after the damage, stays readable; each damaged region kept, shown as a corrupt entry and counted",
		T:      tl,
		Figures: []string{
			fmt.Sprintf("damaged entries %d holding %d events; lost %d; damaged regions counted by spool stat %d; shown as corrupt entries %d; logged %d", damaged, damagedEvents, tl.Lost, st.DeadLetterDamaged, tl.Quarantined, logged),
			fmt.Sprintf("dead letters readable at the end: %d entries (%d bytes of dead-letter file)", st.DeadLetters, st.DeadLetterBytes),
			fmt.Sprintf("restarts refused: %d; last batch delivered or dead-lettered: %v", exits, okLast),
		},
		Pass:    pass,
		Notes:   "the events of a damaged dead-letter entry cannot be named (its bytes are kept, unreadable): they count as lost here",
		Elapsed: time.Since(begin),
	})
}

// entryIDs counts the event ids in one dead-letter entry (its bytes),
// read back through a dead-letter file of its own.
func entryIDs(t *testing.T, entry []byte) (int, error) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "deadletter.log"), entry, 0o600); err != nil {
		return 0, err
	}
	n := 0
	for d, err := range spool.ReadDeadLetters(dir) {
		if err != nil {
			return 0, err
		}
		if d.Record == nil {
			return 0, fmt.Errorf("entry is not a record: %s", d.Reason)
		}
		evs, err := deliver.Decode(d.Record)
		if err != nil {
			return 0, err
		}
		n += len(evs)
	}
	return n, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// spoilRecord makes the record in frame b (length prefix included) of a
// spool segment undecodable while keeping its checksum valid: it claims
// one more payload byte than the stored bytes decode to, and the header
// CRC is recomputed (record layout: spool/codec.go).
func spoilRecord(b []byte) {
	const crcOff, rawLenOff, fixed = 8, 60, 76
	rec := b[4:]
	hdr := fixed
	for i := range 4 {
		hdr += int(binary.BigEndian.Uint16(rec[68+2*i:]))
	}
	binary.BigEndian.PutUint32(rec[rawLenOff:], binary.BigEndian.Uint32(rec[rawLenOff:])+1)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Checksum(rec[hdr:], castagnoli)
	c = crc32.Update(c, castagnoli, rec[:crcOff])
	c = crc32.Update(c, castagnoli, rec[crcOff+4:hdr])
	binary.BigEndian.PutUint32(rec[crcOff:], c)
}

func TestChaos_UndecodableFrame(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	rounds := pick(1, 10)
	const groupsPerRound = 40
	w := newChaosWorld(t, chaosShards, 2101)
	dd := filepath.Join(w.dir, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr})
	log := filepath.Join(w.dir, "relay.log")
	h := w.hecs[0]
	sd := filepath.Join(dd, "spool", "hec0")
	ingested := func() float64 { return metric(maddr, "slsrelay_ingest_logs_total") }
	pass := true
	spoiled, exits, stuck := 0, 0, 0
	p := startProc(t, bin, cfg, log)
	for r := range rounds {
		// Spool a batch with the SIEM down, crash, spoil one record.
		h.SetFault(hectest.Fault{Down: true})
		var m0 float64
		waitUntil(time.Minute, func() bool {
			a := ingested()
			time.Sleep(100 * time.Millisecond)
			m0 = ingested()
			return a >= 0 && m0 == a
		})
		n := w.write(groupsPerRound, chaosPerGroup)
		if !waitUntil(2*time.Minute, func() bool { return p.exited() || ingested() >= m0+float64(n) }) || p.exited() {
			t.Fatalf("round %d: the batch was not spooled:\n%s", r, tail(log, 5))
		}
		p.kill()
		// The newest record: the last frame of the last segment holding
		// any (older segments may hold records already acknowledged).
		segs, _ := filepath.Glob(filepath.Join(sd, "spool.diskqueue.0*.dat"))
		sort.Strings(segs)
		done := false
		for i := len(segs) - 1; i >= 0 && !done; i-- {
			b, err := os.ReadFile(segs[i])
			if err != nil {
				t.Fatal(err)
			}
			offs, lens := fileEntries(b)
			if len(offs) == 0 {
				continue
			}
			k := len(offs) - 1
			spoilRecord(b[offs[k] : offs[k]+lens[k]])
			if err := os.WriteFile(segs[i], b, 0o600); err != nil {
				t.Fatal(err)
			}
			done = true
		}
		if !done {
			t.Fatalf("round %d: no segment with records to spoil", r)
		}
		spoiled++
		// The relay must carry on past it: everything else delivered.
		h.SetFault(hectest.Fault{})
		p = startProc(t, bin, cfg, log)
		drained := func() bool { return p.exited() || metric(maddr, "slsrelay_spool_records") == 0 }
		if !waitUntil(2*time.Minute, drained) {
			stuck++
		}
		if p.exited() {
			exits++
			t.Errorf("round %d: the relay stopped at the undecodable record:\n%s", r, tail(log, 5))
			p = startProc(t, bin, cfg, log)
			continue
		}
		// What is missing now is the spoiled record's events; after
		// another crash and restart, new events all arrive.
		lostSoFar := w.reconcile(dd).Lost
		p.kill()
		p = startProc(t, bin, cfg, log)
		w.write(4, chaosPerGroup)
		if !waitUntil(2*time.Minute, func() bool { return p.exited() || w.reconcile(dd).Lost <= lostSoFar }) || p.exited() {
			exits++
			t.Errorf("round %d: after a second restart the relay did not carry on:\n%s", r, tail(log, 5))
			if p.exited() {
				p = startProc(t, bin, cfg, log)
			}
		}
	}
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	quarantinedUndecodable := 0
	for d, err := range spool.ReadDeadLetters(sd) {
		if err != nil {
			t.Fatal(err)
		}
		if d.Record == nil && strings.Contains(d.Reason, "does not decode") {
			quarantinedUndecodable++
		}
	}
	recordEvents := chaosMaxFetch * chaosPerGroup
	pass = pass && clean && exits == 0 && stuck == 0 && quarantinedUndecodable == spoiled && tl.Lost <= spoiled*recordEvents
	report(t, chaosRow{ID: 22, Name: "undecodable frame",
		Load:   fmt.Sprintf("%d shards; %d rounds of %d groups of %d logs spooled with the SIEM down", chaosShards, rounds, groupsPerRound, chaosPerGroup),
		Faults: "after each round: kill -9, then one spooled record made undecodable with its CRC still valid (its payload length claims one byte more), then a restart with the SIEM up, then another kill -9 and restart",
		Bound:  fmt.Sprintf("the relay carries on, also after a restart; lost ≤ the events of the spoiled record (≤ %d per round); each spoiled record quarantined with its reason and counted", recordEvents),
		T:      tl,
		Figures: []string{
			fmt.Sprintf("spoiled records %d; quarantined as undecodable %d; lost %d events (%.1f records of %d)", spoiled, quarantinedUndecodable, tl.Lost, float64(tl.Lost)/float64(recordEvents), recordEvents),
			fmt.Sprintf("relay stopped at the record: %d times; spools that did not drain: %d", exits, stuck),
		},
		Pass:    pass,
		Notes:   "the events of a quarantined record cannot be named (raw bytes): they count as lost here; the dead-letter queue holds the record's bytes and the decoder's reason",
		Elapsed: time.Since(begin),
	})
}

func TestChaos_DiskFullNoRestart(t *testing.T) {
	bin := chaosBinary(t)
	chaosParallel(t)
	begin := time.Now()
	diskMiB, floorMiB := pick(24, 40), 4
	w := newChaosWorld(t, chaosShards, 2201)
	disk := filepath.Join(w.dir, "disk")
	smallDisk(t, disk, diskMiB)
	dd := filepath.Join(disk, "data")
	maddr := freeAddr(t)
	cfg := w.writeConfig("relay", chaosConfig{DataDir: dd, MaxFetch: chaosMaxFetch, MetricsAddr: maddr, MinFree: fmt.Sprintf("%dMiB", floorMiB)})
	log := filepath.Join(w.dir, "relay.log")
	h := w.hecs[0]
	spooled := func() float64 { return metric(maddr, "slsrelay_ingest_logs_total") }
	stalled := func(d time.Duration) bool {
		a := spooled()
		time.Sleep(d)
		b := spooled()
		return a >= 0 && b-a < chaosMaxFetch*chaosPerGroup*chaosShards
	}
	h.SetFault(hectest.Fault{Down: true})
	stop := w.load(chaosPerGroup, chaosPeriod/2)
	p := startProc(t, bin, cfg, log)
	pid := p.cmd.Process.Pid
	// Some backlog first, then another program takes every free byte.
	waitUntil(2*time.Minute, func() bool { return metric(maddr, "slsrelay_spool_bytes") > 2<<20 })
	filler := filepath.Join(disk, "other-program.dat")
	if err := fill(filler, -1); err != nil {
		t.Fatal(err)
	}
	paused := waitUntil(2*time.Minute, func() bool { return stalled(2 * time.Second) })
	visible := waitUntil(time.Minute, func() bool {
		return strings.Contains(readFile(log), "no space left on device")
	})
	os.Remove(filler)
	s0 := spooled()
	resumed := waitUntil(2*time.Minute, func() bool { return p.exited() || spooled() > s0+5000 }) && !p.exited()
	alive := !p.exited() && p.cmd.Process.Pid == pid
	stop()
	h.SetFault(hectest.Fault{})
	ok := w.waitAll(pick(2*time.Minute, 3*time.Minute), dd)
	_, clean := p.term(time.Minute)
	tl := w.reconcile(dd)
	report(t, chaosRow{ID: 23, Name: "disk full, no restart",
		Load:   fmt.Sprintf("%d shards; up to %d events/s; spool on a %d MiB tmpfs, min_free_bytes %d MiB; SIEM down while the disk is full", chaosShards, int(2*float64(chaosPerGroup)/chaosPeriod.Seconds()), diskMiB, floorMiB),
		Faults: "another program takes every free byte of the disk at once (ENOSPC in go-diskqueue's writes and metadata, in the checkpoint database), then frees it",
		Bound:  "ingest stops and says why; once the space is free it resumes by itself, with the same process (no restart); lost 0",
		T:      tl,
		Figures: []string{
			fmt.Sprintf("ingest stopped %v; error in the log %v; resumed by itself once space was freed %v; same process throughout %v; all delivered %v", paused, visible, resumed, alive, ok),
		},
		Pass:    paused && visible && resumed && alive && ok && clean && tl.Lost == 0,
		Elapsed: time.Since(begin),
	})
}
