package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"slsrelay/deliver/syslogtest"
	"slsrelay/ingest/slstest"
)

// groupWorld is a chaos world whose relays share one consumer group and
// deliver to the same two sinks: the world's HEC and an rsyslog RELP
// receiver.
type groupWorld struct {
	*chaosWorld
	relp  *syslogtest.Rsyslog
	sink  string // the RELP sink's YAML
	group string
}

func newGroupWorld(t *testing.T, shards int, seed int64) *groupWorld {
	w := newChaosWorld(t, shards, seed)
	rs := syslogtest.StartRsyslog(t, syslogtest.RsyslogOptions{RELP: true})
	sink := fmt.Sprintf("  - name: relp\n    type: syslog\n    syslog:\n      address: %s\n      network: relp\n      write_timeout: 2s\n", rs.RELPAddr)
	return &groupWorld{chaosWorld: w, relp: rs, sink: sink, group: "relays"}
}

func (g *groupWorld) config(name, dataDir string) string {
	return g.writeConfig(name, chaosConfig{DataDir: dataDir, MaxFetch: chaosMaxFetch, Group: g.group, Sinks: []int{0}, ExtraSinks: g.sink})
}

// owners counts the shards each consumer holds.
func (g *groupWorld) owners() map[string]int {
	m := map[string]int{}
	for _, c := range g.sls.Assignments(testProject, testLogstore, g.group) {
		m[c]++
	}
	return m
}

// relpTally reconciles the RELP receiver's records with what was written.
func (g *groupWorld) relpTally() (lost, dups int) {
	recv := map[string]int{}
	for _, r := range g.relp.Records() {
		if id := eventID([]byte(r.Msg)); id != "" {
			recv[id]++
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for id := range g.written {
		switch n := recv[id]; {
		case n == 0:
			lost++
		default:
			dups += n - 1
		}
	}
	return lost, dups
}

// backwards lists the group's checkpoint updates that moved a shard back.
func (g *groupWorld) backwards() []string {
	var out []string
	for _, u := range g.sls.CheckpointUpdates(testProject, testLogstore, g.group) {
		if u.Backwards() {
			out = append(out, fmt.Sprintf("shard %d by %s: %s -> %s", u.Shard, u.Consumer, u.Previous, u.Cursor))
		}
	}
	return out
}

// Two and three relays in one consumer group, each with two sinks (HEC and
// syslog RELP); one is killed with SIGKILL while logs flow, its shards move
// to the others, then it comes back and drains its spool. Both sinks get
// every log; duplicates at each stay within one pull per moved shard (plus
// one batch in flight); no shard's SLS checkpoint ever moves backwards.
func TestRelays_SharedGroupKillOne(t *testing.T) {
	bin := relayBinary(t)
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("relays=%d", n), func(t *testing.T) {
			const shards = 6
			g := newGroupWorld(t, shards, int64(4400+n))
			log := filepath.Join(g.dir, "relay.log")
			dirs, cfgs, names := make([]string, n), make([]string, n), make([]string, n)
			procs := make([]*proc, n)
			for i := range n {
				dirs[i] = filepath.Join(g.dir, fmt.Sprintf("data-%d", i))
				cfgs[i] = g.config(fmt.Sprintf("relay-%d", i), dirs[i])
				var err error
				if names[i], err = defaultConsumerName(dirs[i]); err != nil {
					t.Fatal(err)
				}
				procs[i] = startProc(t, bin, cfgs[i], log)
			}
			stop := g.load(chaosPerGroup, chaosPeriod)
			if !waitUntil(2*time.Minute, func() bool {
				o := g.owners()
				return len(o) == n && o[names[0]] > 0
			}) {
				t.Fatalf("shards never spread over %d relays: %v\n%s", n, g.owners(), tail(log, 40))
			}
			time.Sleep(2 * time.Second)
			moved := g.owners()[names[0]]
			procs[0].kill()
			if !waitUntil(2*time.Minute, func() bool { o := g.owners(); return o[names[0]] == 0 && len(o) == n-1 }) {
				t.Fatalf("the killed relay's shards never moved: %v", g.owners())
			}
			time.Sleep(time.Second)
			procs[0] = startProc(t, bin, cfgs[0], log) // back, with its spool
			time.Sleep(2 * time.Second)
			stop()
			if !g.waitAll(3*time.Minute, dirs...) {
				t.Errorf("HEC: %d logs missing after 3 minutes", g.missing())
			}
			waitUntil(time.Minute, func() bool { l, _ := g.relpTally(); return l == 0 })
			g.relp.Quiet(time.Second, 30*time.Second)
			for _, p := range procs {
				p.term(time.Minute)
			}
			hec := g.reconcile(dirs...)
			relpLost, relpDups := g.relpTally()
			bound := (moved + chaosBatch) * chaosMaxFetch * chaosPerGroup
			t.Logf("%d relays, %d shards moved: written %d; HEC lost %d dup %d; RELP lost %d dup %d; bound %d",
				n, moved, hec.Written, hec.Lost, hec.Duplicates, relpLost, relpDups, bound)
			if hec.Lost != 0 || relpLost != 0 || hec.DeadLettered != 0 {
				t.Errorf("lost: HEC %d (first %v), RELP %d; dead-lettered %d", hec.Lost, hec.LostIDs, relpLost, hec.DeadLettered)
			}
			if hec.Duplicates > bound || relpDups > bound {
				t.Errorf("duplicates HEC %d, RELP %d; bound %d (one pull per moved shard + one batch)", hec.Duplicates, relpDups, bound)
			}
			if b := g.backwards(); len(b) > 0 {
				t.Errorf("checkpoints moved backwards: %v", b)
			}
		})
	}
}

// Shards split and merge while several relays consume: nothing is lost,
// and no checkpoint moves backwards.
func TestRelays_SplitMergeSharedGroup(t *testing.T) {
	bin := relayBinary(t)
	g := newGroupWorld(t, 4, 4500)
	log := filepath.Join(g.dir, "relay.log")
	var dirs []string
	for i := range 3 {
		dd := filepath.Join(g.dir, fmt.Sprintf("data-%d", i))
		dirs = append(dirs, dd)
		startProc(t, bin, g.config(fmt.Sprintf("relay-%d", i), dd), log)
	}
	stop := g.load(chaosPerGroup, chaosPeriod)
	if !waitUntil(2*time.Minute, func() bool { return len(g.owners()) == 3 }) {
		t.Fatalf("shards never spread: %v", g.owners())
	}
	time.Sleep(time.Second)
	kids, err := g.sls.SplitShard(testProject, testLogstore, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.refreshShards(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	merged, err := g.sls.MergeShards(testProject, testLogstore, 2) // shards 2 and 3
	if err != nil {
		t.Fatal(err)
	}
	if err := g.refreshShards(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stop()
	if !g.waitAll(3*time.Minute, dirs...) {
		t.Errorf("HEC: %d logs missing after 3 minutes", g.missing())
	}
	waitUntil(time.Minute, func() bool { l, _ := g.relpTally(); return l == 0 })
	hec := g.reconcile(dirs...)
	relpLost, relpDups := g.relpTally()
	t.Logf("split 1 -> %v, merged 2+3 -> %d: written %d; HEC lost %d dup %d; RELP lost %d dup %d; owners %v",
		kids, merged, hec.Written, hec.Lost, hec.Duplicates, relpLost, relpDups, g.owners())
	if hec.Lost != 0 || relpLost != 0 {
		t.Errorf("lost: HEC %d (first %v), RELP %d", hec.Lost, hec.LostIDs, relpLost)
	}
	if b := g.backwards(); len(b) > 0 {
		t.Errorf("checkpoints moved backwards: %v", b)
	}
	for _, id := range append(kids, merged) {
		if !slices.ContainsFunc(g.sls.CheckpointUpdates(testProject, testLogstore, g.group), func(u slstest.CheckpointUpdate) bool { return u.Shard == id }) {
			t.Errorf("no checkpoint was ever written for new shard %d", id)
		}
	}
}
