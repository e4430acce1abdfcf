package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scaleConfig gives NAT-PMP leases of an hour whatever a client asks:
// none of TestThousandMappings' mappings can lapse while the others are
// made and counted, however slow the machine.
const scaleConfig = `

[policy.lifetime.natpmp]
min = "1h"
max = "1h"
`

// natpmpBulk maps, for each of the comma-separated LAN hosts argv[4] in
// turn, argv[3] UDP ports from argv[2] on (the next host's follow) to the
// same ports of that host with NAT-PMP (RFC 6886 §3.3) for argv[5]
// seconds, one request after the other. Every answer must grant the port
// and the lifetime asked for. It prints how many mappings it made and how
// many requests were sent again for want of an answer.
const natpmpBulk = `
import socket, struct, sys
gw, port, each, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
life = int(sys.argv[5])
n, retries = 0, 0
for host in hosts:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(0.5)
    for p in range(port, port + each):
        req = struct.pack("!BBHHHI", 0, 1, 0, p, p, life)
        ans = None
        for attempt in range(4):
            s.sendto(req, (gw, 5351))
            retries += attempt > 0
            try:
                while ans is None:
                    d = s.recv(64)
                    if len(d) >= 16 and d[1] == 129:
                        a = struct.unpack("!BBHIHHI", d[:16])
                        if a[4] == p:
                            ans = a
                break
            except socket.timeout:
                continue
        if ans is None:
            print("no answer for", host, p)
            sys.exit(1)
        if ans[2] != 0 or ans[5] != p or ans[6] != life:
            print("for %s:%d: result %d, external port %d, lifetime %d" % (host, p, ans[2], ans[5], ans[6]))
            sys.exit(1)
        n += 1
    port += each
    s.close()
print("mapped %d, %d retries" % (n, retries))
`

// dnatElement is one element of berth's DNAT map as nft(8) lists it:
// external address . protocol . external port, then internal address .
// port.
var dnatElement = regexp.MustCompile(`(\S+) \. (tcp|udp) \. (\d+) counter packets \d+ bytes \d+ : (\S+) \. (\d+)`)

// TestThousandMappings: 1,000 mappings exist at once (all of them in the
// kernel's DNAT map in one listing) and real traffic crosses the first
// and the last made.
func TestThousandMappings(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	if failed := startBerthd(t, topo, bin, scaleConfig); failed != "" {
		t.Fatal(failed)
	}
	// berth's NAT-PMP/PCP responder limits each client to 50 requests a
	// second after a burst of 100: 1,000 requests from one host would
	// take 18 s. 20 LAN hosts map 50 ports each instead.
	const clients, each, first = 20, 50, 30000
	var hosts []netip.Addr
	var names []string
	for i := range clients {
		a := netip.AddrFrom4([4]byte{192, 168, 77, byte(100 + i)})
		mustRun(t, 10*time.Second, topo.lan, "ip", "addr", "add", a.String()+"/24", "dev", "lan0")
		hosts = append(hosts, a)
		names = append(names, a.String())
	}
	out := mustRun(t, 60*time.Second, topo.lan, python, "-c", natpmpBulk, routerLAN.String(), strconv.Itoa(first),
		strconv.Itoa(each), strings.Join(names, ","), "3600")
	t.Log(strings.TrimSpace(out))
	if want := fmt.Sprintf("mapped %d,", clients*each); !strings.HasPrefix(out, want) {
		t.Fatalf("NAT-PMP bulk: got %q, want %q…", out, want)
	}

	// One listing of the kernel's map: all 1,000 are there at once.
	want := map[string]bool{}
	for i, h := range hosts {
		for p := first + i*each; p < first+(i+1)*each; p++ {
			want[fmt.Sprintf("%v . udp . %d -> %v . %d", routerWAN, p, h, p)] = true
		}
	}
	kernel := mustRun(t, 10*time.Second, topo.router, "nft", "list", "map", "ip", "berth", "mappings")
	var extra []string
	for _, m := range dnatElement.FindAllStringSubmatch(kernel, -1) {
		e := fmt.Sprintf("%s . %s . %s -> %s . %s", m[1], m[2], m[3], m[4], m[5])
		if want[e] {
			delete(want, e)
		} else {
			extra = append(extra, e)
		}
	}
	if len(want) > 0 || len(extra) > 0 {
		var missing []string
		for e := range want {
			missing = append(missing, e)
		}
		t.Fatalf("the kernel's DNAT map lacks %d of the %d mappings (among them %q) and has %d others (%q)",
			len(missing), clients*each, missing[:min(len(missing), 5)], len(extra), extra[:min(len(extra), 5)])
	}

	// The first and the last made forward, both ways.
	last := uint16(first + clients*each - 1)
	waitUDPExchange(t, topo, ext(first), netip.AddrPortFrom(hosts[0], first))
	waitUDPExchange(t, topo, ext(last), netip.AddrPortFrom(hosts[clients-1], last))
}
