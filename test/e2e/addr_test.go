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
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	if _, failed := launch(t, topo, bin, durableConfig, t.TempDir()); failed != "" {
		t.Fatal(failed)
	}
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
