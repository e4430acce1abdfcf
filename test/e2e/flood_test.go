package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// natpmpFlood sends argv[2] NAT-PMP map requests for ever new ports to
// argv[1]:5351 as fast as it can, without waiting for answers.
const natpmpFlood = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
gw, n = sys.argv[1], int(sys.argv[2])
sent = 0
for i in range(n):
    port = 1024 + i % 64000
    try:
        s.sendto(struct.pack("!BBHHHI", 0, 1, 0, port, port, 3600), (gw, 5351))
        sent += 1
    except BlockingIOError:
        pass
print("sent", sent)
`

// natpmpPolite maps argv[3] UDP ports from argv[2] one at a time,
// retransmitting as RFC 6886 §3.1 says (250 ms, doubling; here at most 5
// tries), and prints how many were answered with success and what went
// wrong with the others.
const natpmpPolite = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
ok, bad = 0, []
for i in range(int(sys.argv[3])):
    port = 40000 + i
    wait, res = 0.25, None
    for attempt in range(5):
        s.settimeout(wait)
        s.sendto(struct.pack("!BBHHHI", 0, 1, 0, port, port, 600), (sys.argv[1], 5351))
        try:
            d, a = s.recvfrom(64)
        except socket.timeout:
            wait *= 2
            continue
        res = struct.unpack("!H", d[2:4])[0]
        break
    if res == 0:
        ok += 1
    else:
        bad.append((port, res))
print("ok", ok, *bad)
`

// rss is berthd's resident set size in KiB.
func rss(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// TestFloodFromOneClient: one LAN host sends 100,000 NAT-PMP requests as
// fast as it can while another maps ports politely. The polite one must
// be served in full, the flooder held to its quota, and berthd's memory
// must not grow with the flood.
func TestFloodFromOneClient(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	polite := "192.168.77.11"
	mustRun(t, 10*time.Second, topo.lan, "ip", "addr", "add", polite+"/24", "dev", "lan0")
	d, failed := launch(t, topo, bin, "", t.TempDir())
	if failed != "" {
		t.Fatal(failed)
	}
	gw := routerLAN.String()
	before := rss(t, d.pid)

	flood := inNetns(t.Context(), topo.lan, python, "-c", natpmpFlood, gw, "100000")
	var floodOut strings.Builder
	flood.Stdout = &floodOut
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, 60*time.Second, topo.lan, python, "-c", natpmpPolite, gw, polite, "50")
	if err := flood.Wait(); err != nil {
		t.Fatalf("flood: %v", err)
	}
	t.Logf("flood: %s; polite client: %s", strings.TrimSpace(floodOut.String()), strings.TrimSpace(out))
	if strings.TrimSpace(out) != "ok 50" {
		t.Errorf("the polite client during the flood: got %q, want all 50 mappings", out)
	}
	// The flooder holds at most its quota (256 by default).
	list := upnpc(t, topo, "-l")
	if n := strings.Count(list, "->"+lanHost.String()+":"); n > 256 {
		t.Errorf("the flooding client holds %d mappings, more than its quota of 256", n)
	}
	after := rss(t, d.pid)
	t.Logf("berthd RSS: %d KiB before the flood, %d KiB after", before, after)
	if after > before+32*1024 {
		t.Errorf("berthd RSS grew from %d KiB to %d KiB with the flood", before, after)
	}
}
