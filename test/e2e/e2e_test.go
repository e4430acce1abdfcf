package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	gonatpmp "github.com/jackpal/go-nat-pmp"
)

// config is berthd's configuration for the suite: the nft backend, named
// (see startBerthd); short NAT-PMP and PCP leases, and UPnP leases as
// short as a client asks for, so expiry is seen within seconds; and a
// static forward.
const config = `

[policy.lifetime.natpmp]
min = "2s"
max = "20s"

[policy.lifetime.pcp]
min = "2s"
max = "20s"

[policy.lifetime.upnp]
min = "2s"

[[forward]]
name = "e2e-static"
proto = "tcp"
external_port = 18081
internal = "192.168.77.10:8080"
`

func ext(port uint16) netip.AddrPort { return netip.AddrPortFrom(routerWAN, port) }

// TestE2E runs the scenarios in order against one topology and one berthd.
func TestE2E(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	startHTTP(t, topo)

	d, failed := launch(t, topo, bin, config, t.TempDir())
	if failed != "" {
		t.Fatal(failed)
	}
	gw := routerLAN.String()
	lan := lanHost.String()

	t.Run("1_upnpc_discover_add_list_delete", func(t *testing.T) {
		// No -u: upnpc finds the IGD by SSDP multicast on lan0. -i: berth
		// reports 203.0.113.2 honestly and miniupnpc 2.2.4 calls an IGD
		// with a TEST-NET external address "not connected".
		out := upnpc(t, topo, "-a", lan, "8080", "18080", "TCP")
		for _, want := range []string{"ExternalIPAddress = 203.0.113.2",
			"external 203.0.113.2:18080 TCP is redirected to internal 192.168.77.10:8080"} {
			if !strings.Contains(out, want) {
				t.Fatalf("upnpc -a: no %q in\n%s", want, out)
			}
		}
		waitTCP(t, topo.wan, ext(18080), true)
		if out := upnpc(t, topo, "-l"); !strings.Contains(out, "TCP 18080->192.168.77.10:8080") {
			t.Fatalf("upnpc -l does not list the mapping:\n%s", out)
		}
		upnpc(t, topo, "-d", "18080", "TCP")
		waitTCP(t, topo.wan, ext(18080), false)
	})

	t.Run("2_natpmpc_udp_map_delete", func(t *testing.T) {
		natpmpc(t, topo, 19000, 9000, "udp", 60)
		// Both ways: the LAN host's answer reaches the WAN host from
		// the mapped external address and port.
		waitUDPExchange(t, topo, ext(19000), netip.AddrPortFrom(lanHost, 9000))
		natpmpc(t, topo, 19000, 9000, "udp", 0)
		waitUDP(t, topo, ext(19000), 9000, false)
	})

	t.Run("3_natpmp_expiry", func(t *testing.T) {
		natpmpc(t, topo, 19001, 9001, "udp", 3) // within [2s, 20s]: granted as asked
		waitUDP(t, topo, ext(19001), 9001, true)
		waitExpired(t, d, "UDP", ext(19001), func() bool {
			_, ok := udpProbe(t, topo.lan, netip.AddrPortFrom(lanHost, 9001), topo.wan, 0, ext(19001))
			return ok
		})
	})

	t.Run("4_static_forward", func(t *testing.T) {
		waitTCP(t, topo.wan, ext(18081), true)
	})

	t.Run("5_pcp_map_delete", func(t *testing.T) {
		const nonce = "8f3c1a2b4d5e6f7011223344"
		out := mustRun(t, 10*time.Second, topo.lan, python, "-c", pcpMap, gw, lan, "6", "8080", "18082", "60", nonce)
		if want := "result 0 lifetime 20 external 203.0.113.2:18082"; !strings.Contains(out, want) {
			t.Fatalf("PCP MAP: got %q, want %q (lifetime clamped to max 20s)", out, want)
		}
		waitTCP(t, topo.wan, ext(18082), true)
		out = mustRun(t, 10*time.Second, topo.lan, python, "-c", pcpMap, gw, lan, "6", "8080", "18082", "0", nonce)
		if !strings.Contains(out, "result 0 lifetime 0") {
			t.Fatalf("PCP MAP delete: got %q, want result 0 lifetime 0", out)
		}
		waitTCP(t, topo.wan, ext(18082), false)
	})

	t.Run("6_udp_source_port_preserved", func(t *testing.T) {
		natpmpc(t, topo, 19002, 9002, "udp", 20)
		listen := netip.AddrPortFrom(wanHost, 7000)
		ctx, cancel := context.WithTimeout(context.Background(), settle)
		defer cancel()
		for {
			src, ok := udpProbe(t, topo.wan, listen, topo.lan, 9002, listen)
			if ok {
				if src != ext(19002) {
					t.Fatalf("datagram from lan:9002 arrived from %v, want %v", src, ext(19002))
				}
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no datagram from lan:9002 reached %v within %v", listen, settle)
			case <-time.After(100 * time.Millisecond):
			}
		}
		natpmpc(t, topo, 19002, 9002, "udp", 0)
	})

	t.Run("7_hairpin", func(t *testing.T) {
		out := upnpc(t, topo, "-a", lan, "8080", "18080", "TCP")
		if !strings.Contains(out, "is redirected to internal 192.168.77.10:8080") {
			t.Fatalf("upnpc -a:\n%s", out)
		}
		defer upnpc(t, topo, "-d", "18080", "TCP")
		waitTCP(t, topo.lan, ext(18080), true)
	})

	t.Run("8_pcp_tcp_expiry", func(t *testing.T) {
		// 4 s, within [2s, 20s]: long enough for one connection to get
		// through first.
		const nonce = "5a1e7c0ffee0d15ea5e0b0a7"
		out := mustRun(t, 10*time.Second, topo.lan, python, "-c", pcpMap, gw, lan, "6", "8080", "18085", "4", nonce)
		if want := "result 0 lifetime 4 external 203.0.113.2:18085"; !strings.Contains(out, want) {
			t.Fatalf("PCP MAP: got %q, want %q", out, want)
		}
		waitTCP(t, topo.wan, ext(18085), true)
		waitExpired(t, d, "TCP", ext(18085), func() bool {
			ok, _ := tcpReaches(t, topo.wan, ext(18085))
			return ok
		})
	})

	t.Run("9_go_nat_pmp", func(t *testing.T) {
		// jackpal/go-nat-pmp is a library: this test binary runs itself in
		// the lan namespace as the client (TestGoNATPMPHelper).
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		client := func(lifetime int) string {
			return mustRun(t, 30*time.Second, topo.lan, "env", "BERTH_E2E_GONATPMP="+gw,
				"BERTH_E2E_GONATPMP_LIFETIME="+strconv.Itoa(lifetime), self, "-test.run", "^TestGoNATPMPHelper$", "-test.v")
		}
		if out := client(60); !strings.Contains(out, "mapped tcp 8080 -> 18083 for 20 s") {
			t.Fatalf("go-nat-pmp map (60 s clamped to 20 s):\n%s", out)
		}
		waitTCP(t, topo.wan, ext(18083), true)
		if out := client(0); !strings.Contains(out, "mapped tcp 8080 -> 0 for 0 s") {
			t.Fatalf("go-nat-pmp delete:\n%s", out)
		}
		waitTCP(t, topo.wan, ext(18083), false)
	})

	t.Run("10_python_miniupnpc_discover", func(t *testing.T) {
		// The Python binding of miniupnpc (what many apps embed) finds
		// the IGD by SSDP multicast on lan0, maps, lists and deletes.
		out := mustRun(t, 30*time.Second, topo.lan, python, "-c", pyDiscover, lan)
		defer run(t, 30*time.Second, topo.lan, python, "-c", pyDelete, lan) // also on failure
		for _, want := range []string{"discovered 1", "ext 203.0.113.2", "add True", "specific ('192.168.77.10', 8080, 'python3-miniupnpc e2e', True,"} {
			if !strings.Contains(out, want) {
				t.Fatalf("python3-miniupnpc: no %q in\n%s", want, out)
			}
		}
		waitTCP(t, topo.wan, ext(18084), true)
		mustRun(t, 30*time.Second, topo.lan, python, "-c", pyDelete, lan)
		waitTCP(t, topo.wan, ext(18084), false)
	})

	t.Run("11_upnp_expiry", func(t *testing.T) {
		// AddPortMapping with NewLeaseDuration 4 (s). upnpc then reads
		// the mapping back and prints the lease left (duration=N).
		out := upnpc(t, topo, "-a", lan, "8080", "18086", "TCP", "4")
		const want = "external 203.0.113.2:18086 TCP is redirected to internal 192.168.77.10:8080 (duration="
		_, after, ok := strings.Cut(out, want)
		left, _, _ := strings.Cut(after, ")")
		if n, err := strconv.Atoi(left); !ok || err != nil || n > 4 {
			t.Fatalf("upnpc -a … 4: want %q and a lease of at most 4 s left in\n%s", want+"N)", out)
		}
		waitTCP(t, topo.wan, ext(18086), true)
		waitExpired(t, d, "TCP", ext(18086), func() bool {
			ok, _ := tcpReaches(t, topo.wan, ext(18086))
			return ok
		})
	})

	t.Run("12_upnpc_wan_counters", func(t *testing.T) {
		// upnpc -s prints the GetTotal* answers (COMPAT R8): the router's
		// wan0 counters as the kernel keeps them, truncated to ui4. The
		// scenarios before sent more one way than the other, so a swap
		// of sent and received shows.
		before := linkStats(t, topo.router, "wan0")
		out := upnpc(t, topo, "-s")
		after := linkStats(t, topo.router, "wan0")
		var bs, br, ps, pr uint64
		if _, err := fmt.Sscanf(afterLine(out, "Bytes:"), "Sent: %d Recv: %d", &bs, &br); err != nil {
			t.Fatalf("upnpc -s: no byte counters (%v) in\n%s", err, out)
		}
		if _, err := fmt.Sscanf(afterLine(out, "Packets:"), "Sent: %d Recv: %d", &ps, &pr); err != nil {
			t.Fatalf("upnpc -s: no packet counters (%v) in\n%s", err, out)
		}
		for _, c := range []struct {
			name               string
			got, before, after uint64
		}{
			{"bytes sent", bs, before.tx.bytes, after.tx.bytes},
			{"bytes received", br, before.rx.bytes, after.rx.bytes},
			{"packets sent", ps, before.tx.packets, after.tx.packets},
			{"packets received", pr, before.rx.packets, after.rx.packets},
		} {
			lo, hi := uint64(uint32(c.before)), uint64(uint32(c.after))
			if c.got == 0 || hi < lo || c.got < lo || c.got > hi {
				t.Errorf("upnpc -s: %s %d, want wan0's %d..%d\n%s", c.name, c.got, lo, hi, out)
			}
		}
	})
}

// afterLine returns what follows prefix on the first line of out that
// starts with it, or "".
func afterLine(out, prefix string) string {
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// ifStats are an interface's counters in one direction, as `ip -s -j`
// prints them.
type ifStats struct{ bytes, packets uint64 }

// linkStats reads dev's counters in namespace ns.
func linkStats(t *testing.T, ns, dev string) (s struct{ tx, rx ifStats }) {
	t.Helper()
	out := mustRun(t, 10*time.Second, ns, "ip", "-j", "-s", "link", "show", "dev", dev)
	var links []struct {
		Stats64 struct {
			RX, TX struct{ Bytes, Packets uint64 }
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link show dev %s: %v in\n%s", dev, err, out)
	}
	l := links[0].Stats64
	s.tx, s.rx = ifStats{l.TX.Bytes, l.TX.Packets}, ifStats{l.RX.Bytes, l.RX.Packets}
	return s
}

// waitExpired polls reaches (traffic from the WAN to ext gets to the LAN
// listener), bounded by expiryWait, until it reports false: the mapping's
// short lease has run out. berthd must also say that this mapping
// expired, so that a mapping lost some other way does not pass.
func waitExpired(t *testing.T, d *berthd, proto string, ext netip.AddrPort, reaches func() bool) {
	t.Helper()
	const expiryWait = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), expiryWait)
	defer cancel()
	for reaches() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s to %v still reaches the LAN %v after it was mapped with a lease of a few seconds", proto, ext, expiryWait)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !d.waitExpired(proto, ext, settle) {
		t.Fatalf("%s to %v no longer reaches the LAN, but berthd did not log that its mapping expired", proto, ext)
	}
}

// TestGoNATPMPHelper is the go-nat-pmp client of TestE2E/9_go_nat_pmp,
// run inside the lan namespace; on its own it does nothing.
func TestGoNATPMPHelper(t *testing.T) {
	gw := os.Getenv("BERTH_E2E_GONATPMP")
	if gw == "" {
		t.Skip("helper process of TestE2E/9_go_nat_pmp")
	}
	life, err := strconv.Atoi(os.Getenv("BERTH_E2E_GONATPMP_LIFETIME"))
	if err != nil {
		t.Fatal(err)
	}
	c := gonatpmp.NewClientWithTimeout(net.ParseIP(gw), 5*time.Second)
	res, err := c.AddPortMapping("tcp", 8080, 18083, life)
	if err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	fmt.Printf("mapped tcp %d -> %d for %d s\n", res.InternalPort, res.MappedExternalPort, res.PortMappingLifetimeInSeconds)
}

// upnpc runs miniupnpc's upnpc in the LAN namespace, discovering the IGD
// by SSDP, and returns its output; its exit status is only logged.
func upnpc(t *testing.T, topo *topology, args ...string) string {
	t.Helper()
	out, err := run(t, 20*time.Second, topo.lan, "upnpc", append([]string{"-i", "-e", "berth-e2e"}, args...)...)
	if err != nil {
		t.Logf("upnpc %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// natpmpc maps (lifetime 0: deletes) proto ext -> lan host:in with
// natpmpc in the LAN namespace.
func natpmpc(t *testing.T, topo *topology, ext, in uint16, proto string, lifetime int) {
	t.Helper()
	natpmpcGranted(t, topo, ext, in, proto, lifetime, min(max(lifetime, 2), 20)) // the configured [2s, 20s]
}

// natpmpcGranted is natpmpc for a lease that berthd grants as granted.
func natpmpcGranted(t *testing.T, topo *topology, ext, in uint16, proto string, lifetime, granted int) {
	t.Helper()
	out := mustRun(t, 15*time.Second, topo.lan, "natpmpc", "-g", routerLAN.String(), "-a",
		strconv.Itoa(int(ext)), strconv.Itoa(int(in)), proto, strconv.Itoa(lifetime))
	want := fmt.Sprintf("Mapped public port %d protocol %s to local port %d liftime %d",
		ext, strings.ToUpper(proto), in, granted)
	if lifetime == 0 {
		// The answer to a delete carries port 0 (RFC 6886 §3.4).
		want = fmt.Sprintf("protocol %s to local port %d liftime 0", strings.ToUpper(proto), in)
	}
	if !strings.Contains(out, want) {
		t.Fatalf("natpmpc -a %d %d %s %d: no %q in\n%s", ext, in, proto, lifetime, want, out)
	}
}

// pcpMap sends a PCP MAP request (RFC 6887 §11.1; the layout of
// pcp/testdata/map_request_v4.txt) from argv[2] to argv[1]:5351 for
// protocol argv[3], internal port argv[4], suggested external port
// argv[5], lifetime argv[6] and nonce argv[7], and prints the answer.
const pcpMap = `
import socket, struct, sys
gw, client = sys.argv[1], sys.argv[2]
proto, iport, eport, life = (int(a) for a in sys.argv[3:7])
nonce = bytes.fromhex(sys.argv[7])
v4 = lambda a: bytes(10) + b"\xff\xff" + socket.inet_aton(a)
req = (struct.pack("!BBHI", 2, 1, 0, life) + v4(client) + nonce +
       struct.pack("!B3xHH", proto, iport, eport) + v4("0.0.0.0"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((client, 0))
s.settimeout(1)
for attempt in range(4):
    s.sendto(req, (gw, 5351))
    try:
        d = s.recv(1100)
    except socket.timeout:
        continue
    if len(d) < 60 or d[1] != 0x81 or d[24:36] != nonce:
        print("bad answer", d.hex())
        sys.exit(1)
    life, = struct.unpack("!I", d[4:8])
    ep, = struct.unpack("!H", d[42:44])
    print("result %d lifetime %d external %s:%d" % (d[3], life, socket.inet_ntoa(d[56:60]), ep))
    sys.exit(0)
print("no answer")
sys.exit(1)
`

// pyDiscover discovers the IGD with python3-miniupnpc (SSDP multicast),
// maps TCP 18084 to argv[1]:8080 and lists it.
const pyDiscover = `
import sys, miniupnpc
u = miniupnpc.UPnP()
u.discoverdelay = 2000
print("discovered", u.discover())
u.selectigd()
print("ext", u.externalipaddress())
print("add", u.addportmapping(18084, "TCP", sys.argv[1], 8080, "python3-miniupnpc e2e", ""))
print("specific", u.getspecificportmapping(18084, "TCP"))
`

// pyDelete deletes TCP 18084 after discovering the IGD again.
const pyDelete = `
import sys, miniupnpc
u = miniupnpc.UPnP()
u.discoverdelay = 2000
u.discover()
u.selectigd()
print("delete", u.deleteportmapping(18084, "TCP"))
`
