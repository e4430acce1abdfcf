package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/ti-mo/conntrack"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// mk returns a mapping; remote may be "" for any remote host.
func mk(p mapping.Protocol, ext, in, remote string) mapping.Mapping {
	m := mapping.Mapping{
		Key:      mapping.Key{Proto: p, External: netip.MustParseAddrPort(ext)},
		Internal: netip.MustParseAddrPort(in),
	}
	if remote != "" {
		m.Remote = netip.MustParseAddr(remote)
	}
	m.Client = m.Internal.Addr()
	return m
}

func add(ms ...mapping.Mapping) []backend.Change {
	cs := make([]backend.Change, len(ms))
	for i, m := range ms {
		cs[i] = backend.Change{Op: backend.Add, Mapping: m}
	}
	return cs
}

func del(ms ...mapping.Mapping) []backend.Change {
	cs := add(ms...)
	for i := range cs {
		cs[i].Op = backend.Delete
	}
	return cs
}

// newNft creates the backend in a fresh namespace.
func newNft(t *testing.T, c Config) (*Nft, *netNS) {
	t.Helper()
	ns := newNetNS(t)
	c.Conn, c.PortID = ns.lastingConn(t)
	if c.Conntrack == nil {
		c.Conntrack = ns.conntrack(t)
	}
	n, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n, ns
}

var (
	web    = mk(mapping.TCP, "203.0.113.2:8080", "192.168.1.10:80", "")
	game   = mk(mapping.UDP, "203.0.113.2:3074", "192.168.1.20:3074", "")
	ssh    = mk(mapping.TCP, "203.0.113.2:2222", "192.168.1.10:22", "198.51.100.7")
	webUDP = mk(mapping.UDP, "203.0.113.2:8080", "192.168.1.11:8080", "")
	second = mk(mapping.TCP, "203.0.113.3:8080", "192.168.1.12:80", "")
)

// TestLifecycle walks the kernel state through New, Apply, Sync, a
// refused batch and Close, checking each step against a golden file.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, Config{})
	golden(t, "new", ns.ruleset(t, DefaultTable))

	if err := n.Apply(ctx, add(web, game, ssh, webUDP, second)); err != nil {
		t.Fatalf("Apply add: %v", err)
	}
	golden(t, "add", ns.ruleset(t, DefaultTable))

	if err := n.Apply(ctx, del(webUDP, second)); err != nil {
		t.Fatalf("Apply delete: %v", err)
	}
	golden(t, "delete", ns.ruleset(t, DefaultTable))

	// Replace: delete and re-add web with another internal host; an Add
	// of installed game with another internal port; an identical re-add
	// of ssh; a Delete of something not installed.
	web2 := web
	web2.Internal = netip.MustParseAddrPort("192.168.1.30:8080")
	game2 := game
	game2.Internal = netip.MustParseAddrPort("192.168.1.20:3075")
	cs := append(del(web), add(web2, game2, ssh)...)
	cs = append(cs, del(second)...)
	if err := n.Apply(ctx, cs); err != nil {
		t.Fatalf("Apply replace: %v", err)
	}
	golden(t, "replace", ns.ruleset(t, DefaultTable))

	// Sync: a hand-made change is fixed (game2's element edited), ssh is
	// extra and removed, second is missing and added, web2 is kept.
	ns.run(t, "nft", "delete", "element", "ip", "berth", "mappings", "{ 203.0.113.2 . udp . 3074 }")
	ns.run(t, "nft", "add", "element", "ip", "berth", "mappings", "{ 203.0.113.2 . udp . 3074 : 192.168.1.99 . 1 }")
	if err := n.Sync(ctx, []mapping.Mapping{web2, game2, second}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	golden(t, "sync", ns.ruleset(t, DefaultTable))
	if got := len(n.mappings()); got != 3 {
		t.Errorf("installed %d mappings after Sync, want 3", got)
	}

	// A refused batch changes nothing: second is deleted behind berth's
	// back, so deleting it again fails in the kernel (ENOENT), and the
	// adds earlier in the same batch must not stay.
	ns.run(t, "nft", "delete", "element", "ip", "berth", "mappings", "{ 203.0.113.3 . tcp . 8080 }")
	before := ns.ruleset(t, DefaultTable)
	cs = append(add(webUDP, ssh), del(web2, second)...)
	err := n.Apply(ctx, cs)
	if err == nil {
		t.Fatal("Apply of a batch deleting a missing element succeeded, want an error")
	}
	t.Logf("refused batch: %v", err)
	if after := ns.ruleset(t, DefaultTable); after != before {
		t.Errorf("refused batch changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, ok := n.mappings()[webUDP.Key]; ok {
		t.Error("refused batch changed the installed state")
	}
	if s := n.Stats(); s.Failed != 1 || s.Mappings != 3 {
		t.Errorf("Stats = %+v, want Failed 1, Mappings 3", s)
	}
	// Sync recovers.
	if err := n.Sync(ctx, []mapping.Mapping{web2, game2, second}); err != nil {
		t.Fatalf("Sync after refused batch: %v", err)
	}
	golden(t, "sync", ns.ruleset(t, DefaultTable))

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := ns.tables(t); got != "" {
		t.Errorf("tables after Close: %q, want none", got)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := n.Apply(ctx, add(web)); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v, want ErrClosed", err)
	}
}

// TestSyncRecreatesTable checks that Sync re-installs berth's table after
// another tool removed it (a firewall reload), in one batch.
func TestSyncRecreatesTable(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, Config{})
	if err := n.Apply(ctx, add(web, game, ssh)); err != nil {
		t.Fatal(err)
	}
	want := ns.ruleset(t, DefaultTable)
	for _, cmd := range [][]string{
		{"nft", "flush", "ruleset"},
		{"nft", "flush", "table", "ip", DefaultTable},
		{"nft", "delete", "rule", "ip", DefaultTable, "forward", "handle", "0"},
	} {
		if cmd[2] == "rule" {
			// Delete the forward chain's only rule, by its handle.
			out := ns.run(t, "nft", "-a", "list", "chain", "ip", DefaultTable, "forward")
			i := strings.LastIndex(out, "# handle ")
			cmd[len(cmd)-1] = strings.Fields(out[i+len("# handle "):])[0]
		}
		ns.run(t, cmd...)
		if err := n.Sync(ctx, []mapping.Mapping{web, game, ssh}); err != nil {
			t.Fatalf("Sync after %s: %v", strings.Join(cmd, " "), err)
		}
		if got := ns.ruleset(t, DefaultTable); got != want {
			t.Errorf("after %s and Sync:\n%s\nwant:\n%s", strings.Join(cmd, " "), got, want)
		}
	}
}

// TestNewReplacesStaleTable checks that New replaces a table left by a
// previous run, and that a custom table name and hairpin work.
func TestNewReplacesStaleTable(t *testing.T) {
	ns := newNetNS(t)
	ns.run(t, "nft", "add", "table", "ip", "gw")
	ns.run(t, "nft", "add", "chain", "ip", "gw", "stale")
	n, err := New(Config{Conn: ns.conn(t), Conntrack: ns.conntrack(t), Table: "gw", WANInterface: "wan0", Hairpin: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer n.Close()
	golden(t, "hairpin", ns.ruleset(t, "gw"))
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ns.tables(t); got != "" {
		t.Errorf("tables after Close: %q, want none", got)
	}
}

// TestReleaseAndAdopt: Release leaves the table and its mappings in the
// kernel; a next backend with Adopt keeps them until its first Sync, which
// reconciles them; a stale or damaged table is still replaced.
func TestReleaseAndAdopt(t *testing.T) {
	ns := newNetNS(t)
	cfg := Config{Table: "gw", WANInterface: "wan0", Hairpin: true, PreserveSourcePort: true}
	open := func(adopt bool) *Nft {
		t.Helper()
		c := cfg
		c.Conn, c.Conntrack, c.Adopt = ns.conn(t), ns.conntrack(t), adopt
		n, err := New(c)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return n
	}
	a, b := mk(mapping.UDP, "203.0.113.2:4000", "192.168.77.10:4000", ""), mk(mapping.TCP, "203.0.113.2:4001", "192.168.77.11:80", "")
	first := open(false)
	if err := first.Apply(context.Background(), add(a, b)); err != nil {
		t.Fatal(err)
	}
	before := ns.ruleset(t, "gw")
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close after Release: %v", err)
	}
	if got := ns.ruleset(t, "gw"); got != before {
		t.Fatalf("after Release the table changed:\n%s\nwant\n%s", got, before)
	}
	second := open(true)
	defer second.Close()
	if got := ns.ruleset(t, "gw"); got != before {
		t.Fatalf("adopting replaced the table:\n%s\nwant\n%s", got, before)
	}
	if err := second.Sync(context.Background(), []mapping.Mapping{a}); err != nil {
		t.Fatal(err)
	}
	got := ns.ruleset(t, "gw")
	if !strings.Contains(got, "4000") || strings.Contains(got, "192.168.77.11") {
		t.Fatalf("after Sync to one mapping:\n%s", got)
	}
	if err := second.Release(); err != nil {
		t.Fatal(err)
	}
	// A damaged table is not adopted: flush the chains and adopt again.
	ns.run(t, "nft", "flush", "chain", "ip", "gw", chainPrerouting)
	third := open(true)
	defer third.Close()
	if got := ns.ruleset(t, "gw"); strings.Contains(got, "4000") {
		t.Fatalf("a damaged table was adopted with its elements:\n%s", got)
	}
}

// TestCounters checks that every mapping has a kernel counter.
func TestCounters(t *testing.T) {
	ctx := context.Background()
	n, _ := newNft(t, Config{})
	if err := n.Apply(ctx, add(web, ssh)); err != nil {
		t.Fatal(err)
	}
	cs, err := n.Counters(ctx)
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	if len(cs) != 2 {
		t.Fatalf("Counters = %v, want 2 entries", cs)
	}
	for _, k := range []mapping.Key{web.Key, ssh.Key} {
		if c, ok := cs[k]; !ok || c != (Counter{}) {
			t.Errorf("counter of %s = %+v, %v; want zero, true", k, c, ok)
		}
	}
}

// TestRefused checks mappings the maps cannot hold fail the whole batch
// with the right sentinel and change nothing.
func TestRefused(t *testing.T) {
	peers := mapping.NewPeers(mapping.Peer{Prefix: netip.MustParsePrefix("198.51.100.0/24")})
	filtered := ssh // filters on a mapping restricted to one remote host
	filtered.Peers = peers
	tests := []struct {
		name string
		m    mapping.Mapping
		want error
	}{
		{"peers", filtered, mapping.ErrUnsupported},
		{"ipv6 external", mk(mapping.TCP, "[2001:db8::1]:80", "192.168.1.10:80", ""), mapping.ErrUnsupported},
		{"ipv6 internal", mk(mapping.TCP, "203.0.113.2:80", "[fd00::1]:80", ""), mapping.ErrUnsupported},
		{"ipv6 remote", mk(mapping.TCP, "203.0.113.2:80", "192.168.1.10:80", "2001:db8::7"), mapping.ErrUnsupported},
		{"sctp", mk(132, "203.0.113.2:80", "192.168.1.10:80", ""), mapping.ErrUnsupported},
		{"no external address", mk(mapping.TCP, "0.0.0.0:80", "192.168.1.10:80", ""), mapping.ErrInvalid},
		{"external port 0", mk(mapping.TCP, "203.0.113.2:0", "192.168.1.10:80", ""), mapping.ErrInvalid},
		{"internal port 0", mk(mapping.TCP, "203.0.113.2:80", "192.168.1.10:0", ""), mapping.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := validate(tt.m); !errors.Is(err, tt.want) {
				t.Errorf("validate(%s) = %v, want %v", tt.m, err, tt.want)
			}
		})
	}
	// In the kernel: a good Add before a refused one does not stay.
	n, ns := newNft(t, Config{})
	before := ns.ruleset(t, DefaultTable)
	if err := n.Apply(context.Background(), add(web, filtered)); !errors.Is(err, mapping.ErrUnsupported) {
		t.Errorf("Apply with Peers = %v, want ErrUnsupported", err)
	}
	if got := ns.ruleset(t, DefaultTable); got != before {
		t.Errorf("refused Apply changed the kernel:\n%s", got)
	}
	if err := n.Sync(context.Background(), []mapping.Mapping{web, web}); !errors.Is(err, mapping.ErrInvalid) {
		t.Errorf("Sync with a duplicate = %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Apply(ctx, add(web)); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled ctx = %v, want context.Canceled", err)
	}
	if got := ns.ruleset(t, DefaultTable); !strings.Contains(got, "map mappings") || got != before {
		t.Errorf("kernel changed:\n%s", got)
	}
}

// TestElementRoundTrip checks decode(element(m)) keeps Key and Internal,
// and that IPv4-mapped addresses are normalised.
func TestElementRoundTrip(t *testing.T) {
	n := &Nft{}
	n.dnat, n.remote = newSets(n)
	mapped := mk(mapping.UDP, "[::ffff:203.0.113.2]:53", "[::ffff:192.168.1.5]:5353", "::ffff:198.51.100.1")
	for _, m := range []mapping.Mapping{web, game, ssh, mapped} {
		v, err := validate(m)
		if err != nil {
			t.Fatalf("validate(%s): %v", m, err)
		}
		set, e := n.element(v)
		got, err := decode(set == n.remote, e)
		if err != nil {
			t.Fatalf("decode(%s): %v", m, err)
		}
		if got.Key != normalKey(m.Key) || got.Internal != v.Internal {
			t.Errorf("round trip of %s = %s", m, got)
		}
	}
}

// TestPreserveSourcePort walks snat_udp through Apply and Sync: one
// element per internal address:port of the UDP mappings, the mapping open
// to any remote host winning over a restricted one, then the lowest
// external port.
func TestPreserveSourcePort(t *testing.T) {
	ctx := context.Background()
	if _, err := New(Config{Conn: &nftables.Conn{}, PreserveSourcePort: true}); !errors.Is(err, mapping.ErrInvalid) {
		t.Errorf("New with PreserveSourcePort and no WAN interface = %v, want ErrInvalid", err)
	}
	n, ns := newNft(t, Config{WANInterface: "wan0", PreserveSourcePort: true})
	// game, game's internal restricted to a remote host on another
	// port, and on a third port open to all: game (3074) wins.
	gameRemote := mk(mapping.UDP, "203.0.113.2:3000", "192.168.1.20:3074", "198.51.100.7")
	gameHigh := mk(mapping.UDP, "203.0.113.2:4000", "192.168.1.20:3074", "")
	if err := n.Apply(ctx, add(web, game, gameRemote, gameHigh, webUDP, ssh)); err != nil {
		t.Fatalf("Apply add: %v", err)
	}
	golden(t, "snat", ns.ruleset(t, DefaultTable))

	// Deleting game hands 192.168.1.20:3074 to gameHigh; moving webUDP
	// to another internal port moves its element.
	webUDP2 := webUDP
	webUDP2.Internal = netip.MustParseAddrPort("192.168.1.11:8081")
	cs := append(del(game), add(webUDP2)...)
	if err := n.Apply(ctx, cs); err != nil {
		t.Fatalf("Apply delete: %v", err)
	}
	golden(t, "snat_delete", ns.ruleset(t, DefaultTable))
	want := ns.ruleset(t, DefaultTable)

	// Sync fixes a hand-edited element, and recreates the table.
	ns.run(t, "nft", "delete", "element", "ip", "berth", mapSNATUDP, "{ 192.168.1.20 . 3074 }")
	ns.run(t, "nft", "add", "element", "ip", "berth", mapSNATUDP, "{ 192.168.1.20 . 3074 : 203.0.113.2 . 1 }")
	all := []mapping.Mapping{web, gameRemote, gameHigh, webUDP2, ssh}
	if err := n.Sync(ctx, all); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := ns.ruleset(t, DefaultTable); sortElements(got) != sortElements(want) {
		t.Errorf("after Sync:\n%s\nwant:\n%s", got, want)
	}
	ns.run(t, "nft", "flush", "ruleset")
	if err := n.Sync(ctx, all); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := ns.ruleset(t, DefaultTable); sortElements(got) != sortElements(want) {
		t.Errorf("after flush ruleset and Sync:\n%s\nwant:\n%s", got, want)
	}
	// Deleting everything empties snat_udp.
	if err := n.Apply(ctx, del(all...)); err != nil {
		t.Fatalf("Apply delete all: %v", err)
	}
	if got := ns.ruleset(t, DefaultTable); strings.Contains(got, "elements") {
		t.Errorf("elements left after deleting every mapping:\n%s", got)
	}
}

// TestFlowOf checks which conntrack entries a deleted mapping's flush
// selects.
func TestFlowOf(t *testing.T) {
	flow := func(proto uint8, src, dst, rsrc, rdst string, status conntrack.Status) conntrack.Flow {
		tuple := func(s, d string) conntrack.Tuple {
			sp, dp := netip.MustParseAddrPort(s), netip.MustParseAddrPort(d)
			return conntrack.Tuple{
				IP:    conntrack.IPTuple{SourceAddress: sp.Addr(), DestinationAddress: dp.Addr()},
				Proto: conntrack.ProtoTuple{Protocol: proto, SourcePort: sp.Port(), DestinationPort: dp.Port()},
			}
		}
		return conntrack.Flow{TupleOrig: tuple(src, dst), TupleReply: tuple(rsrc, rdst), Status: status}
	}
	tests := []struct {
		name string
		f    conntrack.Flow
		ms   []mapping.Mapping
		want bool
	}{
		{"inbound", flow(6, "198.51.100.1:4000", "203.0.113.2:8080", "192.168.1.10:80", "198.51.100.1:4000", conntrack.StatusDstNAT), []mapping.Mapping{web}, true},
		// The port mapped again to another internal address:port: its
		// flows are the new mapping's.
		{"inbound, port mapped to another host", flow(6, "198.51.100.1:4000", "203.0.113.2:8080", "192.168.1.30:80", "198.51.100.1:4000", conntrack.StatusDstNAT), []mapping.Mapping{web}, false},
		{"inbound, port mapped to another port", flow(6, "198.51.100.1:4000", "203.0.113.2:8080", "192.168.1.10:81", "198.51.100.1:4000", conntrack.StatusDstNAT), []mapping.Mapping{web}, false},
		{"inbound, not translated", flow(6, "198.51.100.1:4000", "203.0.113.2:8080", "203.0.113.2:8080", "198.51.100.1:4000", 0), []mapping.Mapping{web}, false},
		{"hairpin", flow(6, "192.168.1.20:4000", "203.0.113.2:8080", "192.168.1.10:80", "192.168.1.1:4000", conntrack.StatusDstNAT|conntrack.StatusSrcNAT), []mapping.Mapping{web}, true},
		{"other port", flow(6, "198.51.100.1:4000", "203.0.113.2:8081", "192.168.1.10:80", "198.51.100.1:4000", conntrack.StatusDstNAT), []mapping.Mapping{web}, false},
		{"other proto", flow(17, "198.51.100.1:4000", "203.0.113.2:8080", "192.168.1.10:80", "198.51.100.1:4000", conntrack.StatusDstNAT), []mapping.Mapping{web}, false},
		{"remote", flow(6, "198.51.100.7:4000", "203.0.113.2:2222", "192.168.1.10:22", "198.51.100.7:4000", conntrack.StatusDstNAT), []mapping.Mapping{ssh}, true},
		{"other remote", flow(6, "198.51.100.8:4000", "203.0.113.2:2222", "203.0.113.2:2222", "198.51.100.8:4000", 0), []mapping.Mapping{ssh}, false},
		{"outbound udp", flow(17, "192.168.1.20:3074", "198.51.100.1:9", "198.51.100.1:9", "203.0.113.2:3074", conntrack.StatusSrcNAT), []mapping.Mapping{web, game}, true},
		{"outbound not translated", flow(17, "192.168.1.20:3074", "198.51.100.1:9", "198.51.100.1:9", "192.168.1.20:3074", 0), []mapping.Mapping{game}, false},
		// Several removed mappings on one port, for different remote
		// hosts: each one's flows are found.
		{"second remote on a port", flow(6, "198.51.100.8:4000", "203.0.113.2:2222", "192.168.1.10:22", "198.51.100.8:4000", conntrack.StatusDstNAT), []mapping.Mapping{ssh, mk(mapping.TCP, "203.0.113.2:2222", "192.168.1.10:22", "198.51.100.8")}, true},
		{"outbound other source", flow(17, "192.168.1.21:3074", "198.51.100.1:9", "198.51.100.1:9", "203.0.113.2:3074", conntrack.StatusSrcNAT), []mapping.Mapping{game}, false},
	}
	for _, tt := range tests {
		if got := indexFlows(tt.ms).flowOf(tt.f); got != tt.want {
			t.Errorf("%s: flowOf = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestBatchMessages: a batch's elements share one netlink message per map
// (each message costs the kernel an acknowledgement and berth a read), so
// a burst of TCP and UDP mappings, with source-port preservation, takes
// two messages: the DNAT map and snat_udp.
func TestBatchMessages(t *testing.T) {
	n, _ := newNft(t, Config{WANInterface: "wan0", PreserveSourcePort: true})
	var ms []mapping.Mapping
	for i := range 16 {
		p := mapping.TCP
		if i%2 == 0 {
			p = mapping.UDP
		}
		ms = append(ms, mk(p, fmt.Sprintf("203.0.113.2:%d", 4000+i), fmt.Sprintf("192.168.1.%d:%d", 10+i, 4000+i), ""))
	}
	before := n.Stats()
	if err := n.Apply(context.Background(), add(ms...)); err != nil {
		t.Fatal(err)
	}
	after := n.Stats()
	if got := after.Messages - before.Messages; got != 2 || after.Batches != before.Batches+1 {
		t.Errorf("16 mappings took %d messages in %d batches, want 2 in 1", got, after.Batches-before.Batches)
	}
	// With remote-peer filters (PCP FILTER), each mapping also has
	// elements in the sets filtered and allowed: one message for each of
	// the three, not three per mapping. (snat_udp does not change: the
	// internal ends are the first batch's, whose external ports are lower
	// and win.)
	var fs []mapping.Mapping
	for i, m := range ms {
		m.External = netip.AddrPortFrom(m.External.Addr(), uint16(5000+i))
		m.Peers = mapping.NewPeers(peer(fmt.Sprintf("198.51.100.%d/32", 1+i), 0), peer(fmt.Sprintf("10.0.%d.0/24", i), 443))
		fs = append(fs, m)
	}
	before = n.Stats()
	if err := n.Apply(context.Background(), add(fs...)); err != nil {
		t.Fatal(err)
	}
	after = n.Stats()
	if got := after.Messages - before.Messages; got != 3 {
		t.Errorf("16 filtered mappings took %d messages, want 3", got)
	}
}

// TestFullMessagesFit: a message holds up to maxElemsPerMsg elements, and
// netlink attribute lengths are 16 bits, which the netlink library wraps
// without an error. Batches of three full messages of the largest
// elements (a mapping restricted to one remote host, and one with source
// -port preservation and hairpin) must reach the kernel whole, as a Sync
// of a large table does at start.
func TestFullMessagesFit(t *testing.T) {
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprintf("remote=%v", remote), func(t *testing.T) {
			n, ns := newNft(t, Config{WANInterface: "wan0", PreserveSourcePort: true, Hairpin: true})
			var ms []mapping.Mapping
			for i := range 3 * maxElemsPerMsg {
				r := ""
				if remote {
					r = fmt.Sprintf("198.51.%d.%d", 1+i/250, 1+i%250)
				}
				ms = append(ms, mk(mapping.UDP, fmt.Sprintf("203.0.113.2:%d", 1024+i), fmt.Sprintf("192.168.%d.%d:%d", 1+i/250, 1+i%250, 1024+i), r))
			}
			if err := n.Apply(context.Background(), add(ms...)); err != nil {
				t.Fatalf("Apply of %d mappings: %v", len(ms), err)
			}
			got := ns.ruleset(t, DefaultTable)
			for _, m := range []mapping.Mapping{ms[0], ms[maxElemsPerMsg-1], ms[len(ms)-1]} {
				if !strings.Contains(got, m.Internal.Addr().String()+" . "+fmt.Sprint(m.Internal.Port())) {
					t.Errorf("%v missing from the kernel's ruleset", m)
				}
			}
		})
	}
}
