package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/mapping"
)

// Bounded waits of the loss tests. lostWithin is generous: it bounds a
// wait, it does not measure checkDelay.
const (
	lostWithin = 5 * time.Second
	quietFor   = 500 * time.Millisecond
)

// waitLost returns the next reason on n.Lost, failing the test after
// lostWithin.
func waitLost(t *testing.T, n *Nft, after string) string {
	t.Helper()
	select {
	case why := <-n.Lost():
		return why
	case <-time.After(lostWithin):
		t.Fatalf("no report on Lost within %v after %s", lostWithin, after)
		return ""
	}
}

// expectQuiet fails the test if n.Lost receives within quietFor.
func expectQuiet(t *testing.T, n *Nft, after string) {
	t.Helper()
	select {
	case why := <-n.Lost():
		t.Errorf("Lost reported %q after %s, want nothing", why, after)
	case <-time.After(quietFor):
	}
}

// nftMsg is an nf_tables message of type typ for family.
func nftMsg(t *testing.T, typ int, family byte, attrs ...netlink.Attribute) netlink.Message {
	t.Helper()
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, b...),
	}
}

func strAttr(typ uint16, s string) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: append([]byte(s), 0)}
}

func u32Attr(typ uint16, v uint32) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: binary.BigEndian.AppendUint32(nil, v)}
}

// TestTransaction feeds the monitor's reader the messages the kernel
// sends for one or more transactions and checks what it reports at each
// NFT_MSG_NEWGEN: only the other processes' changes to table ip berth.
func TestTransaction(t *testing.T) {
	const ip, inet = unix.NFPROTO_IPV4, unix.NFPROTO_INET
	const own = 1000
	obj := func(typ int, family byte, table, name string) netlink.Message {
		attrs := []netlink.Attribute{strAttr(attrTable, table)}
		switch typ {
		case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
			attrs = append(attrs, u32Attr(2, 1), strAttr(attrChainName, name)) // NFTA_CHAIN_HANDLE first, as the kernel sends
		case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE:
		default:
			attrs = append(attrs, strAttr(2, name))
		}
		return nftMsg(t, typ, family, attrs...)
	}
	// gen ends a transaction of process pid, from its first netlink
	// socket, whose port id is the pid.
	gen := func(pid uint32, comm string) netlink.Message {
		attrs := []netlink.Attribute{u32Attr(unix.NFTA_GEN_ID, 42)}
		if pid != 0 {
			attrs = append(attrs, u32Attr(unix.NFTA_GEN_PROC_PID, pid), strAttr(unix.NFTA_GEN_PROC_NAME, comm))
		}
		m := nftMsg(t, unix.NFT_MSG_NEWGEN, unix.AF_UNSPEC, attrs...)
		m.Header.PID = pid
		return m
	}
	flushRuleset := []netlink.Message{
		obj(unix.NFT_MSG_DELRULE, ip, "berth", "prerouting"),
		obj(unix.NFT_MSG_DELSET, ip, "berth", "mappings"),
		obj(unix.NFT_MSG_DELCHAIN, ip, "berth", "prerouting"),
		obj(unix.NFT_MSG_DELTABLE, ip, "berth", ""),
		obj(unix.NFT_MSG_DELTABLE, inet, "fw4", ""),
	}
	tests := []struct {
		name string
		msgs []netlink.Message
		want string
	}{
		{"flush ruleset", append(flushRuleset, gen(4242, "nft")), "table ip berth deleted by nft (pid 4242)"},
		{"own batch", append(flushRuleset, gen(own, "nft.test")), ""},
		{"flush table", []netlink.Message{
			obj(unix.NFT_MSG_DELSETELEM, ip, "berth", "mappings"),
			obj(unix.NFT_MSG_DELRULE, ip, "berth", "prefilter"),
			obj(unix.NFT_MSG_DELRULE, ip, "berth", "prerouting"),
			obj(unix.NFT_MSG_DELRULE, ip, "berth", "prerouting"),
			gen(7, "nft"),
		}, "rules deleted in chain prefilter, prerouting by nft (pid 7)"},
		{"elements", []netlink.Message{
			obj(unix.NFT_MSG_DELSETELEM, ip, "berth", "mappings"),
			obj(unix.NFT_MSG_NEWSETELEM, ip, "berth", "mappings"),
			obj(unix.NFT_MSG_DELSETELEM, ip, "berth", "remote_mappings"),
			gen(7, "nft"),
		}, "elements deleted in map mappings, remote_mappings by nft (pid 7)"},
		{"filter set", []netlink.Message{obj(unix.NFT_MSG_DELSETELEM, ip, "berth", "allowed"), gen(7, "nft")},
			"elements deleted in set allowed by nft (pid 7)"},
		{"element added", []netlink.Message{obj(unix.NFT_MSG_NEWSETELEM, ip, "berth", "snat_udp"), gen(7, "nft")},
			"elements added in map snat_udp by nft (pid 7)"},
		{"dormant", []netlink.Message{obj(unix.NFT_MSG_NEWTABLE, ip, "berth", ""), gen(7, "nft")},
			"table ip berth changed by nft (pid 7)"},
		{"chain policy", []netlink.Message{obj(unix.NFT_MSG_NEWCHAIN, ip, "berth", "forward"), gen(7, "nft")},
			"chain forward added or changed by nft (pid 7)"},
		{"unknown process", []netlink.Message{obj(unix.NFT_MSG_DELTABLE, ip, "berth", ""), gen(0, "")},
			"table ip berth deleted by an unknown process"},
		{"other tables", []netlink.Message{
			obj(unix.NFT_MSG_DELTABLE, inet, "berth", ""),
			obj(unix.NFT_MSG_DELRULE, ip, "nat", "prerouting"),
			obj(unix.NFT_MSG_NEWTABLE, ip, "berth2", ""),
			gen(7, "fw4"),
		}, ""},
		{"objects", []netlink.Message{nftMsg(t, unix.NFT_MSG_NEWOBJ, ip, strAttr(attrTable, "berth")), gen(7, "nft")}, ""},
		{"nothing", []netlink.Message{gen(7, "nft")}, ""},
		// Each NFT_MSG_NEWGEN ends a transaction: berth's deletion of
		// the table is not carried into the next one.
		{"two transactions", []netlink.Message{
			obj(unix.NFT_MSG_DELTABLE, ip, "berth", ""), gen(own, "nft.test"),
			obj(unix.NFT_MSG_DELSETELEM, ip, "berth", "mappings"), gen(7, "nft"),
		}, "elements deleted in map mappings by nft (pid 7)"},
		{"other subsystem", []netlink.Message{
			{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | unix.NFT_MSG_DELTABLE)}, Data: []byte{ip, 0, 0, 0}},
			{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELTABLE)}, Data: []byte{ip}},
			gen(7, "nft"),
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := transaction{table: "berth"}
			var got string
			for i, m := range tt.msgs {
				got = g.add(m, own)
				if got != "" && i != len(tt.msgs)-1 {
					t.Fatalf("message %d reported %q before the transaction's end", i, got)
				}
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	// Without berth's port id (a Conn that is not lasting) its own
	// transactions are reported like anyone's, and checked.
	g := transaction{table: "berth"}
	var got string
	for _, m := range append(flushRuleset, gen(own, "nft.test")) {
		got = g.add(m, 0)
	}
	if want := "table ip berth deleted by nft.test (pid 1000)"; got != want {
		t.Errorf("port id unknown: got %q, want %q", got, want)
	}
}

// lostConfig and lostWant are the state of the loss tests: every map and
// set of the table holds elements.
var lostConfig = Config{WANInterface: "wan0", Hairpin: true, PreserveSourcePort: true}

func lostWant() []mapping.Mapping {
	fweb := web
	fweb.Peers = mapping.NewPeers(peer("198.51.100.0/24", 0), peer("192.0.2.9/32", 443))
	return []mapping.Mapping{fweb, game, ssh, webUDP, second}
}

// TestLost checks that another process's damage to berth's table is
// reported on Lost with its cause, that Sync then restores the table
// exactly, and that Sync's own rebuild is not reported.
func TestLost(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, lostConfig)
	want := lostWant()
	if err := n.Sync(ctx, want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	golden := sortElements(ns.ruleset(t, DefaultTable))
	expectQuiet(t, n, "berth's own Sync")
	tests := []struct {
		name string
		cmd  []string
		why  string // part of the reason
	}{
		{"flush ruleset", []string{"nft", "flush", "ruleset"}, "table ip berth deleted by nft"},
		{"delete table", []string{"nft", "delete", "table", "ip", DefaultTable}, "table ip berth deleted by nft"},
		{"flush table", []string{"nft", "flush", "table", "ip", DefaultTable}, "rules deleted in chain"},
		{"flush map", []string{"nft", "flush", "map", "ip", DefaultTable, mapDNAT}, "elements deleted in map mappings"},
		{"delete element", []string{"nft", "delete", "element", "ip", DefaultTable, mapDNATRemote,
			"{ 198.51.100.7 . 203.0.113.2 . tcp . 2222 }"}, "elements deleted in map remote_mappings"},
		{"filter element", []string{"nft", "delete", "element", "ip", DefaultTable, setAllowed,
			"{ 203.0.113.2 . tcp . 8080 . 192.0.2.9 . 443 }"}, "elements deleted in set allowed"},
		{"dormant", []string{"nft", "add", "table", "ip", DefaultTable, "{ flags dormant; }"}, "table ip berth changed"},
		{"forward policy", []string{"nft", "add", "chain", "ip", DefaultTable, chainForward,
			"{ type filter hook forward priority filter; policy drop; }"}, "chain forward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := strings.Join(tt.cmd, " ")
			ns.run(t, tt.cmd...)
			if why := waitLost(t, n, cmd); !strings.Contains(why, tt.why) {
				t.Errorf("Lost reported %q after %s, want it to contain %q", why, cmd, tt.why)
			}
			if err := n.Sync(ctx, want); err != nil {
				t.Fatalf("Sync after %s: %v", cmd, err)
			}
			if got := sortElements(ns.ruleset(t, DefaultTable)); got != golden {
				t.Errorf("after %s and Sync:\n%s\nwant:\n%s", cmd, got, golden)
			}
			if why := n.verify(); why != "" {
				t.Errorf("after %s and Sync, the check finds %q", cmd, why)
			}
			expectQuiet(t, n, "Sync after "+cmd)
		})
	}
	// A harmless change by another process is checked, not reported: an
	// element added and deleted again in one transaction.
	before := n.mon.checks.Load()
	ns.run(t, "nft", "add element ip berth mappings { 203.0.113.2 . tcp . 1 : 192.168.1.1 . 1 }; "+
		"delete element ip berth mappings { 203.0.113.2 . tcp . 1 }")
	expectQuiet(t, n, "a change undone in the same transaction")
	if n.mon.checks.Load() == before {
		t.Error("no check after another process's change to the table")
	}
}

// TestLostIgnoresOwnChanges checks that berth's own batches are never
// reported, never checked, and that their notifications do not even
// reach the monitor: the kernel drops them (ownFilter).
func TestLostIgnoresOwnChanges(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, lostConfig)
	want := lostWant()
	for i := range 50 {
		m := nth(i)
		if err := n.Apply(ctx, add(m)); err != nil {
			t.Fatalf("Apply add %d: %v", i, err)
		}
		if i%2 == 1 {
			if err := n.Apply(ctx, del(m)); err != nil {
				t.Fatalf("Apply delete %d: %v", i, err)
			}
		}
	}
	if err := n.Apply(ctx, add(want...)); err != nil {
		t.Fatal(err)
	}
	if err := n.Sync(ctx, want[:2]); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, n, "50 Apply and a Sync by berth")
	if c := n.mon.checks.Load(); c != 0 {
		t.Errorf("berth's own batches were checked %d times, want 0", c)
	}
	if r := n.mon.received.Load(); r != 0 {
		t.Errorf("the monitor read %d messages of berth's own batches, want 0", r)
	}
	if why := n.verify(); why != "" {
		t.Errorf("check after berth's own batches: %q", why)
	}

	// A refused batch: the kernel commits nothing and announces nothing.
	ns.run(t, "nft", "delete", "element", "ip", DefaultTable, mapDNAT, "{ 203.0.113.2 . udp . 3074 }")
	if why := waitLost(t, n, "an element deleted by nft"); !strings.Contains(why, "by nft") {
		t.Errorf("Lost reported %q", why)
	}
	if err := n.Apply(ctx, del(game)); err == nil {
		t.Fatal("Apply deleting an element deleted by nft succeeded, want an error")
	}
	if err := n.Sync(ctx, want); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, n, "a refused Apply and a Sync by berth")
}

// TestLostForwarding proves with traffic, in TestForwarding's topology,
// that a mapping stops forwarding after `nft flush ruleset`, that Lost
// reports it, and that it forwards again after Sync.
func TestLostForwarding(t *testing.T) {
	ctx := context.Background()
	n, router, wan, lan := topology(t, Config{WANInterface: "wan0", Hairpin: true})
	srv := exec.Command("ip", "netns", "exec", lan.name, "python3", "-m", "http.server", "80", "--bind", "192.168.1.10")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	open := mk(mapping.TCP, "203.0.113.2:8080", "192.168.1.10:80", "")
	if err := n.Apply(ctx, add(open)); err != nil {
		t.Fatal(err)
	}
	get := func() error {
		return exec.Command("ip", "netns", "exec", wan.name, "curl", "-sf", "-o", "/dev/null", "-m", "1",
			"http://203.0.113.2:8080/").Run()
	}
	// The server needs a moment to start.
	for try := 0; ; try++ {
		err := get()
		if err == nil {
			break
		}
		if try == 100 {
			t.Fatalf("GET through %s: %v", open.Key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	router.run(t, "nft", "flush", "ruleset")
	if err := get(); err == nil {
		t.Errorf("GET through %s succeeded after nft flush ruleset", open.Key)
	}
	t.Logf("Lost: %s", waitLost(t, n, "nft flush ruleset"))
	if err := n.Sync(ctx, []mapping.Mapping{open}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := get(); err != nil {
		t.Errorf("GET through %s after Sync: %v", open.Key, err)
	}
}

// TestCloseStopsMonitor checks that Close ends the monitor's goroutines
// and that nothing is sent on Lost after it returns, even for a change
// made while a check was due.
func TestCloseStopsMonitor(t *testing.T) {
	ns := newNetNS(t)
	c, ct := ns.conn(t), ns.conntrack(t)
	base := runtime.NumGoroutine()
	n, err := New(Config{Conn: c, Conntrack: ct})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Apply(context.Background(), add(web)); err != nil {
		t.Fatal(err)
	}
	if got := runtime.NumGoroutine(); got < base+2 {
		t.Errorf("%d goroutines with the monitor running, want at least %d", got, base+2)
	}
	ns.run(t, "nft", "flush", "ruleset") // a check is now due
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A report sent before Close returned may wait in the channel.
	select {
	case why := <-n.Lost():
		t.Logf("reported before Close returned: %s", why)
	default:
	}
	// Close waits for the goroutines; allow the runtime a moment to
	// retire them.
	deadline := time.After(2 * time.Second)
	for runtime.NumGoroutine() > base {
		select {
		case <-deadline:
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, want at most %d:\n%s",
				runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		case <-time.After(10 * time.Millisecond):
		}
	}
	expectQuiet(t, n, "Close")
}

// TestLostVerify checks the check itself against hand-made changes that
// leave no trace in the rules: an element replaced with another value.
func TestLostVerify(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, lostConfig)
	if err := n.Apply(ctx, add(lostWant()...)); err != nil {
		t.Fatal(err)
	}
	if why := n.verify(); why != "" {
		t.Fatalf("check after Apply: %q", why)
	}
	ns.run(t, "nft", "delete element ip berth mappings { 203.0.113.2 . udp . 3074 }; "+
		"add element ip berth mappings { 203.0.113.2 . udp . 3074 : 192.168.1.99 . 1 }")
	if why := waitLost(t, n, "an element replaced"); !strings.Contains(why, "map mappings") {
		t.Errorf("Lost reported %q, want the map named", why)
	}
	if why := n.verify(); !strings.Contains(why, "1 of 5 installed ones missing or changed") {
		t.Errorf("check = %q, want one mapping changed", why)
	}
	ns.run(t, "nft", "delete element ip berth snat_udp { 192.168.1.20 . 3074 }")
	waitLost(t, n, "a snat_udp element deleted")
	if err := n.Sync(ctx, lostWant()); err != nil {
		t.Fatal(err)
	}
	if why := n.verify(); why != "" {
		t.Errorf("check after Sync: %q", why)
	}
	if _, ok := n.mappings()[game.Key]; !ok || n.mappings()[game.Key].Internal != netip.MustParseAddrPort("192.168.1.20:3074") {
		t.Errorf("installed %v after Sync, want game restored", n.mappings()[game.Key])
	}
}

// TestLostOverrun checks that when the monitor's receive buffer (64 KiB
// here) overruns, the monitor checks the kernel, reports nothing if it
// matches, and goes on working: after a Sync of 5,000 mappings, with the
// reader held up deliberately while another process adds 5,000 elements
// to a set of its own table.
func TestLostOverrun(t *testing.T) {
	ctx := context.Background()
	defer func(b int) { monitorBuffer = b }(monitorBuffer)
	monitorBuffer = 64 << 10
	ns := newNetNS(t)
	c, port := ns.lastingConn(t)
	n, err := New(Config{Conn: c, PortID: port, Conntrack: ns.conntrack(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	want := make([]mapping.Mapping, 5000)
	for i := range want {
		want[i] = nth(i)
	}
	if err := n.Sync(ctx, want); err != nil {
		t.Fatalf("Sync of %d mappings: %v", len(want), err)
	}
	expectQuiet(t, n, "a Sync of 5,000 mappings")
	t.Logf("overruns during berth's Sync: %d", n.mon.overruns.Load())

	// The reader stops at the end of the first transaction that touches
	// berth's table (ours takes mon.mu) while the second one's 5,000
	// element notifications arrive.
	var script strings.Builder
	script.WriteString("add table ip other\nadd set ip other s { type ipv4_addr; }\nadd element ip other s { ")
	for i := range 5000 {
		fmt.Fprintf(&script, "10.%d.%d.1, ", i>>8, i&0xff)
	}
	script.WriteString("}\n")
	path := filepath.Join(t.TempDir(), "other.nft")
	if err := os.WriteFile(path, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	overruns, checks := n.mon.overruns.Load(), n.mon.checks.Load()
	n.mon.mu.Lock()
	ns.run(t, "nft", "add element ip berth mappings { 203.0.113.2 . tcp . 1 : 192.168.1.1 . 1 }; "+
		"delete element ip berth mappings { 203.0.113.2 . tcp . 1 }")
	ns.run(t, "nft", "-f", path)
	n.mon.mu.Unlock()
	// The overrun and the first transaction are checked: the kernel
	// matches (slowly, under -race), so nothing is reported.
	deadline := time.After(lostWithin)
	for n.mon.overruns.Load() == overruns || n.mon.checks.Load() == checks {
		select {
		case why := <-n.Lost():
			t.Fatalf("Lost reported %q, want nothing", why)
		case <-deadline:
			t.Fatalf("after %v: overruns %d, checks %d; want more than %d and %d",
				lostWithin, n.mon.overruns.Load(), n.mon.checks.Load(), overruns, checks)
		case <-time.After(10 * time.Millisecond):
		}
	}
	expectQuiet(t, n, "an overrun")

	// Lost still works. (The reason may name only the harmless change
	// above when its check, slow under -race, sees the flush's damage.)
	ns.run(t, "nft", "flush", "ruleset")
	t.Logf("Lost: %s", waitLost(t, n, "nft flush ruleset"))
}
