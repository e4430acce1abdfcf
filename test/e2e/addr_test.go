package e2e

import (
	"bufio"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// announceListen joins 224.0.0.1 on argv[1] and prints the external address
// of the first NAT-PMP announcement (RFC 6886 §3.2.1) carrying argv[2] that
// reaches port 5350, or exits 3 after argv[3] seconds.
const announceListen = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("224.0.0.1", 5350))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("224.0.0.1") + socket.inet_aton(sys.argv[1]))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    while True:
        d, a = s.recvfrom(64)
        if len(d) == 12 and d[0] == 0 and d[1] == 128:
            addr = socket.inet_ntoa(d[8:12])
            if addr == sys.argv[2]:
                print(addr, a[0], flush=True)
                break
except socket.timeout:
    sys.exit(3)
`

// listenAnnouncement starts listening in the LAN namespace for a NAT-PMP
// announcement of addr; the returned function waits (bounded) for it and
// returns its source address, or "" when none came.
func listenAnnouncement(t *testing.T, topo *topology, addr netip.Addr) func() string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	listen := inNetns(ctx, topo.lan, python, "-c", announceListen, lanHost.String(), addr.String(), "20")
	out, err := listen.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := listen.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		listen.Wait()
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("announcement listener did not start: %q", sc.Text())
	}
	return func() string {
		if !sc.Scan() {
			return ""
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return ""
		}
		return f[1]
	}
}

// TestWANAddressChange: the WAN interface's address changes under a
// running berthd (a new DHCP lease, a PPPoE reconnect). berthd must notice
// by itself, announce the new address to the LAN, report it, and move the
// mappings, so that traffic to the new address reaches the LAN host.
func TestWANAddressChange(t *testing.T) {
	topo, _ := launchDurable(t)
	natpmpcGranted(t, topo, 36000, 36000, "udp", 3600, 3600)
	waitUDP(t, topo, ext(36000), 36000, true)

	newWAN := netip.MustParseAddr("203.0.113.3")
	heard := listenAnnouncement(t, topo, newWAN)

	r := topo.router
	mustRun(t, 10*time.Second, r, "sysctl", "-qw", "net.ipv4.conf.wan0.promote_secondaries=1")
	mustRun(t, 10*time.Second, r, "ip", "addr", "add", newWAN.String()+"/24", "dev", "wan0")
	mustRun(t, 10*time.Second, r, "ip", "addr", "del", routerWAN.String()+"/24", "dev", "wan0")
	mustRun(t, 10*time.Second, r, "ip", "route", "replace", "default", "via", wanHost.String())

	if from := heard(); from != routerLAN.String() {
		t.Fatalf("NAT-PMP announcement of %v: from %q, want from %v", newWAN, from, routerLAN)
	}
	out2 := mustRun(t, 15*time.Second, topo.lan, "natpmpc", "-g", routerLAN.String())
	if !strings.Contains(out2, "Public IP address : "+newWAN.String()) {
		t.Fatalf("natpmpc after the change:\n%s", out2)
	}
	waitUDP(t, topo, netip.AddrPortFrom(newWAN, 36000), 36000, true)
}

// pcpAnnounce6 sends a PCP ANNOUNCE request (RFC 6887 §14.1) from argv[2]
// to [argv[1]]:5351 every half second until an answer comes, for at most
// argv[3] seconds, and prints the answer's version, opcode and result.
const pcpAnnounce6 = `
import socket, struct, sys, time
gw, client, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
req = struct.pack("!BBHI", 2, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, client)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((client, 0))
s.settimeout(0.5)
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        s.sendto(req, (gw, 5351))
        d = s.recv(1100)
        print("version", d[0], "opcode", d[1], "result", d[3])
        sys.exit(0)
    except (socket.timeout, ConnectionRefusedError):
        pass
print("none")
sys.exit(3)
`

// TestLANAddressAdded: the LAN interface gets addresses under a running
// berthd: a second IPv4 subnet, and a ULA IPv6 prefix, which the kernel
// checks for duplicates (DAD) for a second before it can be bound.
// berthd serves both without a restart, and a host of the new subnet
// gets a mapping that carries traffic.
func TestLANAddressAdded(t *testing.T) {
	topo, d := launchDurable(t)
	// Control points keep the description's URL: it stays the same.
	location := searchAt(t, topo, routerLAN.String())
	router2, host2 := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("10.78.0.10")
	router6, host6 := netip.MustParseAddr("fd00:78::1"), netip.MustParseAddr("fd00:78::10")
	mustRun(t, 10*time.Second, topo.lan, "ip", "addr", "add", host2.String()+"/24", "dev", "lan0")
	mustRun(t, 10*time.Second, topo.lan, "ip", "addr", "add", host6.String()+"/64", "dev", "lan0", "nodad")
	mustRun(t, 10*time.Second, topo.router, "ip", "addr", "add", router2.String()+"/24", "dev", "lan0")
	mustRun(t, 10*time.Second, topo.router, "ip", "addr", "add", router6.String()+"/64", "dev", "lan0")

	if !d.waitMsg("LAN changed: serving it afresh", 15*time.Second) {
		t.Fatal("berthd did not serve the new LAN addresses")
	}
	out := mustRun(t, 20*time.Second, topo.lan, python, "-c", pcpAnnounce6, router6.String(), host6.String(), "15")
	if !strings.Contains(out, "version 2 opcode 128 result 0") {
		t.Fatalf("PCP ANNOUNCE to %v after DAD: %s", router6, out)
	}
	out = mustRun(t, 15*time.Second, topo.lan, "natpmpc", "-g", router2.String(), "-a", "36100", "36100", "udp", "600")
	if !strings.Contains(out, "Mapped public port 36100 protocol UDP to local port 36100 liftime 600") {
		t.Fatalf("natpmpc -g %v from %v:\n%s", router2, host2, out)
	}
	waitUDPTo(t, topo, ext(36100), netip.AddrPortFrom(host2, 36100), true)
	// The first address is still served, from the same daemon, and UPnP
	// on the new one.
	natpmpcGranted(t, topo, 36101, 36101, "udp", 600, 600)
	if again := searchAt(t, topo, routerLAN.String()); again != location {
		t.Errorf("LOCATION changed from %s to %s", location, again)
	}
	searchAt(t, topo, router2.String())
	select {
	case <-d.exit:
		t.Fatalf("berthd exited: %v", d.err)
	default:
	}
	// A tentative address is not bound: binding it fails (EADDRNOTAVAIL).
	if d.waitLine(func(_, m string) bool { return strings.HasPrefix(m, "cannot serve the changed LAN") }, 0) {
		t.Error("berthd tried to serve an address it could not bind")
	}
}

// TestLANInterfaceCreatedAgain: the LAN interface is deleted and created
// again under the same name with the same address (netifd rebuilding a
// bridge). Its index changes, and the responders check the interface a
// request arrived on by index: berthd must serve the new interface
// without a restart, and keep the mappings it had.
func TestLANInterfaceCreatedAgain(t *testing.T) {
	topo, d := launchDurable(t)
	natpmpcGranted(t, topo, 36200, 36200, "udp", 600, 600)
	r, l := topo.router, topo.lan
	ipSteps(t, [][]string{
		{"-n", r, "link", "del", "lan0"}, // its peer in the LAN namespace goes too
		{"-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", l},
		{"-n", r, "addr", "add", routerLAN.String() + "/24", "dev", "lan0"},
		{"-n", l, "addr", "add", lanHost.String() + "/24", "dev", "lan0"},
		{"-n", r, "link", "set", "lan0", "up"},
		{"-n", l, "link", "set", "lan0", "up"},
		{"-n", l, "route", "add", "default", "via", routerLAN.String()},
	})
	if !d.waitMsg("LAN changed: serving it afresh", 15*time.Second) {
		t.Fatal("berthd did not serve the LAN interface created again")
	}
	natpmpcGranted(t, topo, 36201, 36201, "udp", 600, 600)
	waitUDP(t, topo, ext(36200), 36200, true)
	searchAt(t, topo, routerLAN.String())
}

// TestStartBeforeTheLANHasAnAddress: berthd starts while its LAN
// interface has no address yet (a bridge that comes up after it). It
// serves nothing meanwhile and must not exit; once the address arrives it
// serves the LAN without a restart.
func TestStartBeforeTheLANHasAnAddress(t *testing.T) {
	topo, d := launchWithoutLANv4(t, nil)
	if !d.waitMsg("the LAN has no address yet: NAT-PMP, PCP and UPnP answer once it has one; stored leases wait for it", 0) {
		t.Fatal("berthd did not say that it waits for the LAN's address")
	}
	servedOnceLANv4Returns(t, topo, d, 36300)
}

// launchWithoutLANv4 launches berthd once the router's lan0 has lost its
// IPv4 address, and after prepare (when not nil) has run.
func launchWithoutLANv4(t *testing.T, prepare func(*topology)) (*topology, *berthd) {
	t.Helper()
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	if prepare != nil {
		prepare(topo)
	}
	mustRun(t, 10*time.Second, topo.router, "ip", "addr", "del", routerLAN.String()+"/24", "dev", "lan0")
	d, failed := launch(t, topo, bin, durableConfig, t.TempDir())
	if failed != "" {
		t.Fatal(failed)
	}
	return topo, d
}

// servedOnceLANv4Returns gives the router's lan0 its IPv4 address back and
// checks that berthd serves it without a restart: a NAT-PMP mapping of
// port that carries traffic, and SSDP.
func servedOnceLANv4Returns(t *testing.T, topo *topology, d *berthd, port uint16) {
	t.Helper()
	mustRun(t, 10*time.Second, topo.router, "ip", "addr", "add", routerLAN.String()+"/24", "dev", "lan0")
	mustRun(t, 10*time.Second, topo.lan, "ip", "route", "replace", "default", "via", routerLAN.String())
	if !d.waitMsg("LAN changed: serving it afresh", 15*time.Second) {
		t.Fatal("berthd did not serve the LAN once it had its IPv4 address")
	}
	natpmpcGranted(t, topo, port, port, "udp", 600, 600)
	waitUDP(t, topo, ext(port), port, true)
	searchAt(t, topo, routerLAN.String())
}

// TestStartWithOnlyIPv6OnTheLAN: berthd starts while the router's LAN has
// an IPv6 prefix but not yet its IPv4 address (the order netifd or a DHCP
// client may bring them in). It serves PCP over IPv6 at once, pauses UPnP,
// and serves UPnP and NAT-PMP once the IPv4 address arrives.
func TestStartWithOnlyIPv6OnTheLAN(t *testing.T) {
	router6, host6 := netip.MustParseAddr("fd00:79::1"), netip.MustParseAddr("fd00:79::10")
	topo, d := launchWithoutLANv4(t, func(topo *topology) {
		mustRun(t, 10*time.Second, topo.lan, "ip", "addr", "add", host6.String()+"/64", "dev", "lan0", "nodad")
		mustRun(t, 10*time.Second, topo.router, "ip", "addr", "add", router6.String()+"/64", "dev", "lan0", "nodad")
	})
	if !d.waitMsg("UPnP IGD paused: no IPv4 LAN address; it serves again when one appears", 0) {
		t.Fatal("berthd did not say that UPnP waits for an IPv4 address")
	}
	out := mustRun(t, 20*time.Second, topo.lan, python, "-c", pcpAnnounce6, router6.String(), host6.String(), "15")
	if !strings.Contains(out, "version 2 opcode 128 result 0") {
		t.Fatalf("PCP ANNOUNCE to %v: %s", router6, out)
	}
	servedOnceLANv4Returns(t, topo, d, 36400)
}
