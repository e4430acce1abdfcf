package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A routed LAN subnet (COMPAT S9): hosts behind a second router on the LAN
// side, here the lan namespace forwarding for a far namespace:
//
//	ns router (192.168.77.1) ── ns lan (192.168.77.10, forwards) ──veth── ns far (10.77.5.10, 10.77.6.10)
//
// The router routes 10.77.5.0/24 and 10.77.6.0/24 through the lan host.
// berthd is told that 10.77.5.0/24 is a routed LAN subnet and nothing about
// 10.77.6.0/24.
var (
	farHost    = netip.MustParseAddr("10.77.5.10") // in lan_routed
	farOutside = netip.MustParseAddr("10.77.6.10") // routed to, not served
)

const routedConfig = `
lan_routed = ["10.77.5.0/24"]
`

// addFar adds the far namespace behind the lan namespace; it is removed
// when the test ends.
func addFar(t *testing.T, topo *topology) string {
	t.Helper()
	far := topo.lan[:strings.LastIndexByte(topo.lan, '-')+1] + "far"
	addNetns(t, far)
	l, r := topo.lan, topo.router
	steps := [][]string{
		{"-n", far, "link", "set", "lo", "up"},
		{"-n", l, "link", "add", "far0", "type", "veth", "peer", "name", "far0", "netns", far},
		{"-n", l, "addr", "add", "10.77.5.1/24", "dev", "far0"},
		{"-n", l, "addr", "add", "10.77.6.1/24", "dev", "far0"},
		{"-n", far, "addr", "add", farHost.String() + "/24", "dev", "far0"},
		{"-n", far, "addr", "add", farOutside.String() + "/24", "dev", "far0"},
		{"-n", l, "link", "set", "far0", "up"},
		{"-n", far, "link", "set", "far0", "up"},
		{"-n", far, "route", "add", "default", "via", "10.77.5.1"},
		{"-n", r, "route", "add", "10.77.5.0/24", "via", lanHost.String()},
		{"-n", r, "route", "add", "10.77.6.0/24", "via", lanHost.String()},
		{"netns", "exec", l, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	ipSteps(t, steps)
	return far
}

// natpmpFrom sends a NAT-PMP external address request (RFC 6886 §3.2)
// from argv[2] to argv[1]:5351 and prints "answer <result code>" or "none"
// after a second.
const natpmpFrom = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
s.settimeout(1.0)
s.sendto(bytes([0, 0]), (sys.argv[1], 5351))
try:
    d, a = s.recvfrom(64)
    print("answer", struct.unpack("!H", d[2:4])[0], a[0])
except socket.timeout:
    print("none")
`

// msearchFrom sends a unicast M-SEARCH (COMPAT S5) from argv[2] to
// argv[1]:1900 and prints the LOCATION of the first answer, or "none".
const msearchFrom = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
s.settimeout(1.0)
s.sendto(("M-SEARCH * HTTP/1.1\r\nHOST: %s:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
          "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n" % sys.argv[1]).encode(),
         (sys.argv[1], 1900))
try:
    d, a = s.recvfrom(2048)
    for line in d.decode().split("\r\n"):
        if line.lower().startswith("location:"):
            print(line.split(":", 1)[1].strip())
            break
    else:
        print("no location")
except socket.timeout:
    print("none")
`

// TestRoutedSubnet: a host in a configured routed subnet maps a port over
// NAT-PMP, discovers the IGD by unicast SSDP, and WAN traffic reaches it
// through both routers; a host in a subnet the router merely routes to
// gets no answer at all.
func TestRoutedSubnet(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	far := addFar(t, topo)
	if failed := startBerthd(t, topo, bin, routedConfig); failed != "" {
		t.Fatal(failed)
	}
	gw := routerLAN.String()

	out := mustRun(t, 10*time.Second, far, python, "-c", natpmpFrom, gw, farHost.String())
	if want := "answer 0 " + gw; strings.TrimSpace(out) != want {
		t.Fatalf("NAT-PMP from the routed subnet: got %q, want %q", out, want)
	}
	out = mustRun(t, 10*time.Second, far, python, "-c", natpmpFrom, gw, farOutside.String())
	if strings.TrimSpace(out) != "none" {
		t.Fatalf("NAT-PMP from a subnet not served: got %q, want no answer", out)
	}
	out = mustRun(t, 10*time.Second, far, python, "-c", msearchFrom, gw, farHost.String())
	if !strings.HasPrefix(strings.TrimSpace(out), "http://"+gw+":") {
		t.Fatalf("unicast M-SEARCH from the routed subnet: got LOCATION %q, want http://%s:…", out, gw)
	}
	out = mustRun(t, 10*time.Second, far, python, "-c", msearchFrom, gw, farOutside.String())
	if strings.TrimSpace(out) != "none" {
		t.Fatalf("unicast M-SEARCH from a subnet not served: got %q, want no answer", out)
	}

	// natpmpc maps for the address it sends from: the far host's.
	out = mustRun(t, 15*time.Second, far, "natpmpc", "-g", gw, "-a", "19500", "9500", "udp", "20")
	if !strings.Contains(out, "Mapped public port 19500 protocol UDP to local port 9500") {
		t.Fatalf("natpmpc from the routed subnet:\n%s", out)
	}
	waitUDPIn(t, topo, far, ext(19500), netip.AddrPortFrom(farHost, 9500), true)
}
