package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// TestQuietSync checks that a large Sync of berth's own is committed with
// the monitor deaf: no event reaches it (no message, no overrun, no
// check), nothing is reported, and the kernel holds exactly the mappings.
func TestQuietSync(t *testing.T) {
	ctx := context.Background()
	n, _ := newNft(t, lostConfig)
	expectQuiet(t, n, "New") // the table's creation is read by now
	received := n.mon.received.Load()
	want := make([]mapping.Mapping, 5000)
	for i := range want {
		want[i] = nth(i)
	}
	if err := n.Sync(ctx, want); err != nil {
		t.Fatalf("Sync of %d mappings: %v", len(want), err)
	}
	if err := n.Sync(ctx, want[:100]); err != nil { // 4,900 deletions
		t.Fatalf("Sync down to 100 mappings: %v", err)
	}
	expectQuiet(t, n, "two large Syncs by berth")
	if r := n.mon.received.Load() - received; r > 0 {
		t.Errorf("the monitor read %d messages during berth's own Syncs, want none", r)
	}
	if o := n.mon.overruns.Load(); o != 0 {
		t.Errorf("the monitor's buffer overran %d times during berth's own Syncs, want 0", o)
	}
	if c := n.mon.checks.Load(); c != 0 {
		t.Errorf("berth's own Syncs were checked %d times, want 0", c)
	}
	if why := n.verify(); why != "" {
		t.Errorf("after the Syncs the check finds %q", why)
	}
}

// TestQuietSeesOthers checks that what another process commits while the
// monitor is out of its group is not missed: a harmless change is checked
// and not reported; damage to berth's table is reported.
func TestQuietSeesOthers(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, lostConfig)
	want := lostWant()
	if err := n.Sync(ctx, want); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, n, "berth's own Sync")

	before := n.mon.checks.Load()
	err := n.mon.quiet(func() error {
		ns.run(t, "nft", "add", "table", "ip", "other")
		return n.Apply(ctx, add(nth(1)))
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	expectQuiet(t, n, "another process's table added while the monitor was deaf")
	if n.mon.checks.Load() == before {
		t.Error("no check after another process committed while the monitor was deaf")
	}

	err = n.mon.quiet(func() error {
		ns.run(t, "nft", "delete", "element", "ip", DefaultTable, mapDNAT, "{ 203.0.113.2 . udp . 3074 }")
		return n.Apply(ctx, add(nth(2)))
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if why := waitLost(t, n, "an element deleted while the monitor was deaf"); !strings.Contains(why, "other processes") {
		t.Errorf("Lost reported %q, want it to name the other processes' transaction", why)
	}

	// A refused batch of berth's own leaves the generation alone: no
	// check. (The kernel refuses to delete an element another process
	// deleted.)
	if err := n.Sync(ctx, want); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, n, "Sync")
	ns.run(t, "nft", "delete", "element", "ip", DefaultTable, mapDNAT, "{ 203.0.113.2 . udp . 3074 }")
	waitLost(t, n, "an element deleted by nft")
	before = n.mon.checks.Load()
	err = n.mon.quiet(func() error { return n.Apply(ctx, del(game)) })
	if err == nil {
		t.Fatal("Apply deleting an element deleted by nft succeeded, want an error")
	}
	expectQuiet(t, n, "a refused batch")
	if c := n.mon.checks.Load(); c != before {
		t.Errorf("a refused batch of berth's own was checked (%d checks, want %d)", c, before)
	}
}
