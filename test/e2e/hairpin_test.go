package e2e

import (
	"net/netip"
	"testing"
	"time"
)

// A second host on the LAN, on the same segment as the first: the
// router's lan0 becomes a bridge with a port to each LAN namespace,
//
//	ns lan  (192.168.77.10) ──veth── lanp0 ┐
//	                                        ├─ bridge lan0 (192.168.77.1) ns router: berthd ── wan
//	ns lan2 (192.168.77.20) ──veth── lanp1 ┘
//
// as on a home router whose LAN ports share one bridge. On one segment,
// the mapped host would answer a second host's hairpinned connection
// straight across the bridge, from its own address rather than the
// external one, unless the router also rewrites the source: that is what
// TestHairpinOtherHost proves berth does.
var lan2Host = netip.MustParseAddr("192.168.77.20")

// addLANHost turns the router's lan0 into a bridge and attaches a second
// LAN namespace to it, which it returns; berthd must not be running yet.
// The namespace is removed when the test ends.
func addLANHost(t *testing.T, topo *topology) string {
	t.Helper()
	lan2 := topo.lan + "2"
	addNetns(t, lan2)
	r := topo.router
	prefix := routerLAN.String() + "/24"
	steps := [][]string{
		{"-n", r, "link", "set", "lan0", "down"},
		{"-n", r, "addr", "del", prefix, "dev", "lan0"},
		{"-n", r, "link", "set", "lan0", "name", "lanp0"},
		// Without STP a port forwards at once.
		{"-n", r, "link", "add", "lan0", "type", "bridge", "stp_state", "0"},
		{"-n", r, "link", "set", "lanp0", "master", "lan0"},
		{"-n", r, "link", "add", "lanp1", "type", "veth", "peer", "name", "lan0", "netns", lan2},
		{"-n", r, "link", "set", "lanp1", "master", "lan0"},
		{"-n", r, "addr", "add", prefix, "dev", "lan0"},
		{"-n", r, "link", "set", "lan0", "up"},
		{"-n", r, "link", "set", "lanp0", "up"},
		{"-n", r, "link", "set", "lanp1", "up"},
		{"-n", lan2, "link", "set", "lo", "up"},
		{"-n", lan2, "addr", "add", lan2Host.String() + "/24", "dev", "lan0"},
		{"-n", lan2, "link", "set", "lan0", "up"},
		{"-n", lan2, "route", "add", "default", "via", routerLAN.String()},
	}
	ipSteps(t, steps)
	// With br_netfilter loaded, bridged frames would pass the router's
	// IPv4 hooks too and conntrack could fix up the mapped host's direct
	// answer; the test is about the routed path alone. Without the module
	// the key does not exist and there is nothing to turn off.
	run(t, 10*time.Second, r, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
	// The segment works: the hosts reach each other directly.
	waitTCP(t, lan2, netip.AddrPortFrom(lanHost, lanHTTP), true)
	return lan2
}

// TestHairpinOtherHost: a second LAN host reaches the first host's
// mapping through the router's external address, and stops reaching it
// once the mapping is deleted.
func TestHairpinOtherHost(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	startHTTP(t, topo)
	lan2 := addLANHost(t, topo)
	if failed := startBerthd(t, topo, bin, config); failed != "" {
		t.Fatal(failed)
	}
	natpmpc(t, topo, 18087, lanHTTP, "tcp", 20)
	waitTCP(t, topo.wan, ext(18087), true)
	waitTCP(t, lan2, ext(18087), true)
	natpmpc(t, topo, 18087, lanHTTP, "tcp", 0)
	waitTCP(t, lan2, ext(18087), false)
}
