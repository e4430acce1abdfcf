package nft

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// Keys that google/nftables v0.3.0 cannot encode, each failing a batch
// after a good element was queued before it. netlink attribute lengths
// are 16 bits and MarshalAttributes wraps them silently, failing only when
// the length wraps below a header (4 bytes):
//
//   - queueFails: the key's own attribute is 65,536 bytes long, and
//     SetAddElements returns the error, leaving the good element queued;
//   - poisons: the key encodes, but the message's element list is 65,536
//     bytes long. SetAddElements returns nil and the Conn records the error,
//     which its Flush returns from then on, sending nothing.
var (
	queueFails = nftables.SetElement{Key: make([]byte, 65532)}
	poisons    = nftables.SetElement{Key: make([]byte, 65520)}
)

// TestFailedBatchLeavesNothing: a batch that fails after part of it was
// queued, in the real queuing path of google/nftables, neither sends what
// it queued with the next batch nor makes later batches fail; the kernel
// then holds exactly what the good batches made (the goldens of
// TestLifecycle). With berth's lasting Conn, and with one that opens a
// socket per batch.
func TestFailedBatchLeavesNothing(t *testing.T) {
	for _, lasting := range []bool{true, false} {
		name := "lasting"
		if !lasting {
			name = "per batch"
		}
		t.Run(name, func(t *testing.T) {
			testFailedBatch(t, lasting)
		})
	}
}

func testFailedBatch(t *testing.T, lasting bool) {
	ctx := context.Background()
	var n *Nft
	var ns *netNS
	if lasting {
		n, ns = newNft(t, Config{})
	} else {
		ns = newNetNS(t)
		var err error
		n, err = New(Config{Conn: ns.conn(t), Conntrack: ns.conntrack(t)})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { n.Close() })
	}
	first, firstPort := n.conn, n.mon.port.Load()
	if err := n.Apply(ctx, add(web, game)); err != nil {
		t.Fatal(err)
	}
	// fail commits a batch that adds stray, then an element that does not
	// encode; with create, after the messages that recreate the table,
	// as Sync does for a damaged table.
	stray := mk(mapping.TCP, "203.0.113.2:9999", "192.168.1.99:9999", "")
	fail := func(what string, create bool, bad nftables.SetElement) {
		t.Helper()
		set, e := n.element(stray)
		n.mu.Lock()
		err := n.commit(create, []elemOp{{set: set, elem: e}, {set: n.filtered, elem: bad}})
		n.mu.Unlock()
		if err == nil {
			t.Fatalf("a batch with %s succeeded, want an error", what)
		}
		t.Logf("%s: %v", what, err)
	}

	fail("a key that fails to queue", false, queueFails)
	if err := n.Apply(ctx, add(ssh, webUDP, second)); err != nil {
		t.Fatalf("Apply after a batch that failed to queue: %v", err)
	}
	golden(t, "add", ns.ruleset(t, DefaultTable))

	fail("the table's recreation and a key that fails to queue", true, queueFails)
	if err := n.Apply(ctx, del(webUDP, second)); err != nil {
		t.Fatalf("Apply after a recreation that failed to queue: %v", err)
	}
	golden(t, "delete", ns.ruleset(t, DefaultTable))

	fail("a key that poisons the Conn", false, poisons)
	web2 := web
	web2.Internal = netip.MustParseAddrPort("192.168.1.30:8080")
	game2 := game
	game2.Internal = netip.MustParseAddrPort("192.168.1.20:3075")
	cs := append(del(web), add(web2, game2, ssh)...)
	if err := n.Apply(ctx, append(cs, del(second)...)); err != nil {
		t.Fatalf("Apply after a batch whose Flush failed: %v", err)
	}
	golden(t, "replace", ns.ruleset(t, DefaultTable))
	if _, ok := n.mappings()[stray.Key]; ok {
		t.Error("installed state holds the failed batches' mapping")
	}

	if s := n.Stats(); s.Failed != 3 || s.Renewed != 3 || s.Mappings != 3 {
		t.Errorf("Stats = %+v, want Failed 3, Renewed 3, Mappings 3", s)
	}
	if n.conn == first {
		t.Error("the Conn of the failed batches is still in use")
	}
	if !lasting {
		return
	}
	// The monitor follows the new socket: berth's batches on it are
	// neither read nor checked.
	if p := n.mon.port.Load(); p == 0 || p == firstPort {
		t.Errorf("monitor knows berth's batches by port %d, want the new Conn's (not 0 or %d)", p, firstPort)
	}
	expectQuiet(t, n, "berth's batches after failed ones")
	if c, r := n.mon.checks.Load(), n.mon.received.Load(); c != 0 || r != 0 {
		t.Errorf("berth's own batches on the new Conn were checked %d times and read %d messages, want 0 and 0", c, r)
	}
}

// TestFlushDeadline: the deadline flush sets on the lasting socket ends a
// wait for answers that never come (the kernel's silence after a batch it
// aborted), with an error that renews the Conn, and is gone afterwards.
func TestFlushDeadline(t *testing.T) {
	ns := newNetNS(t)
	c, _ := ns.lastingConn(t)
	v, ok := sockets.Load(c)
	if !ok {
		t.Fatal("Dial did not record the Conn's socket")
	}
	sock := v.(*netlink.Conn)
	done := make(chan error, 1)
	go func() {
		// Nothing was sent, so no answer comes: only the deadline ends it.
		done <- withDeadline(c, 100*time.Millisecond, func() error { _, err := sock.Receive(); return err })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v, want a deadline error", err)
		}
	case <-time.After(20 * time.Second): // a guard against hanging the suite, not a timing check
		t.Fatal("a read on the socket outlived its deadline")
	}
	// The deadline is cleared: a batch on the same Conn, well past it,
	// still goes through.
	n, err := New(Config{Conn: c, Conntrack: ns.conntrack(t)})
	if err != nil {
		t.Fatalf("New on the Conn after the deadline: %v", err)
	}
	defer n.Close()
	m := mapping.Mapping{Key: mapping.Key{Proto: mapping.UDP, External: netip.MustParseAddrPort("203.0.113.2:4000")},
		Internal: netip.MustParseAddrPort("192.168.77.10:4000")}
	if err := n.Apply(context.Background(), []backend.Change{{Op: backend.Add, Mapping: m}}); err != nil {
		t.Fatalf("Apply after the deadline: %v", err)
	}
}
