package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A virtual gateway address (COMPAT S4): routers run in a VRRP or CARP
// pair share 192.168.77.254, which only the active one carries, as a
// secondary address on lan0; LAN hosts use it as their gateway. Here the
// test plays keepalived, adding and deleting the address under berthd:
//
//	ns lan (192.168.77.10) ──veth── lan0: 192.168.77.1 + 192.168.77.254 (virtual, comes and goes) ns router: berthd ── wan
//
// berthd binds the virtual address with IP_FREEBIND, so it serves the
// address whenever it is there and never needs a restart for it. Linux
// keeps a bound socket when its address goes, so a failover and back is
// survived by any socket; it is the start as the standby, without the
// address, that needs IP_FREEBIND.
const vip = "192.168.77.254"

const vipConfig = `
virtual_addresses = ["192.168.77.254"]
`

// msearchAt sends an M-SEARCH for IGD:1 to argv[1]:1900 (a unicast
// address, or the SSDP group for a multicast search) and prints every
// answer's source and LOCATION for argv[2] seconds, or "none".
const msearchAt = `
import socket, sys, time
dst, wait = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
s.bind(("0.0.0.0", 0))
s.sendto(("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
          "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n").encode(), (dst, 1900))
end, n = time.monotonic() + wait, 0
while True:
    left = end - time.monotonic()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        d, a = s.recvfrom(2048)
    except socket.timeout:
        break
    loc = "-"
    for line in d.decode(errors="replace").split("\r\n"):
        if line.lower().startswith("location:"):
            loc = line.split(":", 1)[1].strip()
    print("from %s:%d location %s" % (a[0], a[1], loc))
    n += 1
if n == 0:
    print("none")
`

// msearch runs msearchAt from the LAN host and returns its lines.
func msearch(t *testing.T, topo *topology, dst string) []string {
	t.Helper()
	out := mustRun(t, 10*time.Second, topo.lan, python, "-c", msearchAt, dst, "1.5")
	return strings.Split(strings.TrimSpace(out), "\n")
}

// searchAt sends a unicast M-SEARCH to addr and returns the LOCATION of
// its one answer, which must come from addr:1900 and name addr.
func searchAt(t *testing.T, topo *topology, addr string) string {
	t.Helper()
	lines := msearch(t, topo, addr)
	prefix := "from " + addr + ":1900 location http://" + addr + ":"
	if len(lines) != 1 || !strings.HasPrefix(lines[0], prefix) {
		t.Fatalf("unicast M-SEARCH to %s: got %q, want one answer %q…", addr, lines, prefix)
	}
	return strings.TrimPrefix(lines[0], "from "+addr+":1900 location ")
}

// setVIP adds the virtual address to the router's lan0 or deletes it, as
// keepalived does at a failover.
func setVIP(t *testing.T, topo *topology, op string) {
	t.Helper()
	if out, err := ipCmd("-n", topo.router, "addr", op, vip+"/24", "dev", "lan0"); err != nil {
		t.Fatalf("ip addr %s %s: %v: %s", op, vip, err, out)
	}
}

// pmpAnswers reports whether natpmpc gets the external address from
// gateway gw; natpmpc takes an answer only from gw itself (libnatpmp
// NATPMP_ERR_WRONGPACKETSOURCE). Without an answer natpmpc would retry for
// two minutes: it is stopped after 4 s.
func pmpAnswers(t *testing.T, topo *topology, gw string) (bool, string) {
	t.Helper()
	out, err := run(t, 4*time.Second, topo.lan, "natpmpc", "-g", gw)
	return err == nil && strings.Contains(out, "Public IP address : "+routerWAN.String()), out
}

// waitPMP waits (bounded by settle) until natpmpc to gw gets an answer.
func waitPMP(t *testing.T, topo *topology, gw string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	for {
		ok, out := pmpAnswers(t, topo, gw)
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("natpmpc -g %s: no answer within %v:\n%s", gw, settle, out)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// mapThrough maps TCP port p -> the LAN http server with upnpc at the
// LOCATION loc, checks that WAN traffic reaches it, and deletes it.
func mapThrough(t *testing.T, topo *topology, loc string, p uint16) {
	t.Helper()
	port := strconv.Itoa(int(p))
	out := upnpc(t, topo, "-u", loc, "-a", lanHost.String(), "8080", port, "TCP")
	if want := "external 203.0.113.2:" + port + " TCP is redirected to internal 192.168.77.10:8080"; !strings.Contains(out, want) {
		t.Fatalf("upnpc -u %s -a: no %q in\n%s", loc, want, out)
	}
	waitTCP(t, topo.wan, ext(p), true)
	upnpc(t, topo, "-u", loc, "-d", port, "TCP")
	waitTCP(t, topo.wan, ext(p), false)
}

// TestVIP: berthd answers NAT-PMP, SSDP and UPnP on the virtual address,
// from it and naming it; it keeps doing so across a failover and back
// without a restart; and a berthd started as the standby, without the
// address, serves it once it arrives.
func TestVIP(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	startHTTP(t, topo)
	setVIP(t, topo, "add")
	d, failed := launch(t, topo, bin, vipConfig, t.TempDir())
	if failed != "" {
		t.Fatal(failed)
	}
	gw := routerLAN.String()

	t.Run("1_active", func(t *testing.T) {
		if ok, out := pmpAnswers(t, topo, vip); !ok {
			t.Fatalf("natpmpc -g %s:\n%s", vip, out)
		}
		loc := searchAt(t, topo, vip)
		// A multicast search gets one answer, from the virtual address:
		// the router's own address is not advertised on lan0 any more.
		if lines := msearch(t, topo, "239.255.255.250"); len(lines) != 1 || lines[0] != "from "+vip+":1900 location "+loc {
			t.Fatalf("multicast M-SEARCH: got %q, want only %q", lines, "from "+vip+":1900 location "+loc)
		}
		// A search sent to the router's own address is still answered,
		// from it.
		searchAt(t, topo, gw)
		mapThrough(t, topo, loc, 18090)
	})

	t.Run("2_failover_and_back", func(t *testing.T) {
		setVIP(t, topo, "del")
		if ok, out := pmpAnswers(t, topo, vip); ok {
			t.Fatalf("natpmpc -g %s answered with the address gone:\n%s", vip, out)
		}
		setVIP(t, topo, "add")
		waitPMP(t, topo, vip) // the same berthd, never restarted
		mapThrough(t, topo, searchAt(t, topo, vip), 18091)
	})

	t.Run("3_standby_start", func(t *testing.T) {
		d.stop()
		setVIP(t, topo, "del")
		standby, failed := launch(t, topo, bin, vipConfig, t.TempDir())
		if failed != "" {
			t.Fatalf("berthd did not start as the standby: %s", failed)
		}
		if ok, out := pmpAnswers(t, topo, vip); ok {
			t.Fatalf("natpmpc -g %s answered before the address was added:\n%s", vip, out)
		}
		// The standby stays silent on lan0's multicast: its own address
		// is not advertised and it cannot send from the virtual one.
		if lines := msearch(t, topo, "239.255.255.250"); len(lines) != 1 || lines[0] != "none" {
			t.Fatalf("multicast M-SEARCH to the standby: got %q, want no answer", lines)
		}
		searchAt(t, topo, gw)
		// Becoming the active one, berthd announces at once: the LAN
		// hears the external address from the virtual gateway.
		heard := listenAnnouncement(t, topo, routerWAN)
		setVIP(t, topo, "add") // this router becomes the active one
		if from := heard(); from != vip {
			t.Fatalf("announcement after the address arrived: from %q, want %v", from, vip)
		}
		// Heard because berthd noticed, not because a start-up repeat
		// happened to fall after the address came. (The log line may
		// reach the test a little after the announcement.)
		if !standby.waitMsg("virtual gateway address arrived: announcing", 5*time.Second) {
			t.Fatalf("berthd did not notice the virtual address arriving:\n%s", standby.dump())
		}
		waitPMP(t, topo, vip)
		mapThrough(t, topo, searchAt(t, topo, vip), 18092)
	})
}
