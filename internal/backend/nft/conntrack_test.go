package nft

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
)

// TestFlushKeepsNewMappingsFlows: when a port is mapped again to another
// internal host before the background flush of the old mapping runs, the
// flush deletes the old mapping's flows and leaves the new one's. The
// flows are conntrack entries made in the namespace's kernel as berth's
// DNAT makes them (the reply tuple from the internal address:port).
func TestFlushKeepsNewMappingsFlows(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, Config{})
	ct := n.ct
	old := webUDP
	moved := webUDP
	moved.Internal = netip.MustParseAddrPort("192.168.1.12:8080")
	other := game // a mapping that stays
	if err := n.Apply(ctx, add(old, other)); err != nil {
		t.Fatal(err)
	}
	// dnatFlow is a UDP flow from remote to m's external address:port,
	// translated to m's internal one.
	dnatFlow := func(remote string, m mapping.Mapping) conntrack.Flow {
		r := netip.MustParseAddrPort(remote)
		f := conntrack.NewFlow(uint8(mapping.UDP), 0, r.Addr(), m.External.Addr(), r.Port(), m.External.Port(), 600, 0)
		f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort = m.Internal.Addr(), m.Internal.Port()
		return f
	}
	flows := map[string]conntrack.Flow{
		"old mapping's":    dnatFlow("198.51.100.1:4000", old),
		"new mapping's":    dnatFlow("198.51.100.2:4000", moved),
		"other mapping's":  dnatFlow("198.51.100.1:4000", other),
		"old mapping's #2": dnatFlow("198.51.100.3:4001", old),
	}
	for name, f := range flows {
		if err := ct.Create(f); err != nil {
			skipOrFail(t, "cannot create the %s conntrack entry in the namespace: %v", name, err)
		}
	}
	// The replacement queues the flush of old, which runs after both
	// mappings' flows exist.
	if err := n.Apply(ctx, add(moved)); err != nil {
		t.Fatal(err)
	}
	waitFlushed(t, n)
	left, err := ct.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	have := func(f conntrack.Flow) bool {
		for _, l := range left {
			if l.TupleOrig == f.TupleOrig && l.TupleReply == f.TupleReply {
				return true
			}
		}
		return false
	}
	for name, f := range flows {
		want := name == "new mapping's" || name == "other mapping's"
		if got := have(f); got != want {
			t.Errorf("after the flush of %s: the %s flow %s present = %v, want %v", old.Key, name, f.TupleOrig, got, want)
		}
	}
	t.Logf("%d flows left in %s", len(left), ns.name)
}

// TestFlushPaced: a flush after an idle spell runs at once; one queued
// right after it waits minFlushGap (fake clock), so that a storm of
// deletions does not keep a core dumping the conntrack table; and a stop
// flushes what is queued without waiting.
func TestFlushPaced(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewFake(clock.Real{}.Now())
	n, ns := newNft(t, Config{Clock: clk})
	ct := n.ct
	flowTo := func(m mapping.Mapping) conntrack.Flow {
		f := conntrack.NewFlow(uint8(mapping.UDP), 0, netip.MustParseAddr("198.51.100.1"), m.External.Addr(), 4000, m.External.Port(), 600, 0)
		f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort = m.Internal.Addr(), m.Internal.Port()
		return f
	}
	present := func(f conntrack.Flow) bool {
		fs, err := ct.Dump(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range fs {
			if g.TupleOrig == f.TupleOrig {
				return true
			}
		}
		return false
	}
	ms := []mapping.Mapping{webUDP, game, mk(mapping.UDP, "203.0.113.2:5000", "192.168.1.21:5000", "")}
	if err := n.Apply(ctx, add(ms...)); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := ct.Create(flowTo(m)); err != nil {
			skipOrFail(t, "cannot create a conntrack entry in %s: %v", ns.name, err)
		}
	}
	if err := n.Apply(ctx, del(ms[0])); err != nil {
		t.Fatal(err)
	}
	waitFlushed(t, n) // the first flush waits for no clock
	if present(flowTo(ms[0])) {
		t.Fatal("the first deleted mapping's flow outlived its flush")
	}
	if err := n.Apply(ctx, del(ms[1])); err != nil {
		t.Fatal(err)
	}
	// The flusher arms a timer on the clock instead of flushing.
	for i := 0; clk.Pending() == 0; i++ {
		if i == 500 || n.flushIdle() {
			t.Fatal("a flush right after another did not wait for the clock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n.flushIdle() || !present(flowTo(ms[1])) {
		t.Fatal("the second deleted mapping's flow was flushed before the clock moved")
	}
	clk.Advance(minFlushGap)
	waitFlushed(t, n)
	if present(flowTo(ms[1])) {
		t.Fatal("the second deleted mapping's flow outlived its paced flush")
	}
	// A stop does not wait for the clock.
	if err := n.Apply(ctx, del(ms[2])); err != nil {
		t.Fatal(err)
	}
	n.stopFlusher()
	if present(flowTo(ms[2])) {
		t.Fatal("the flow of a mapping deleted before the stop outlived it")
	}
}
