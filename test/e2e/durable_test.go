package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// durableConfig lets one LAN host hold every mapping of the load, with
// leases long enough that none ends during the test.
const durableConfig = `

[policy]
max_per_client = 5000

[policy.lifetime.natpmp]
min = "120s"
max = "1h"
`

// natpmpLoad maps UDP ports argv[2]..argv[2]+argv[3]-1 (internal = external)
// one after the other with NAT-PMP at argv[1]:5351 and prints "ok PORT" for
// every mapping the gateway acknowledged. It stops after the last port, or
// after three unanswered requests in a row (the gateway died).
const natpmpLoad = `
import socket, struct, sys
gw, base, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.3)
misses = 0
for port in range(base, base + count):
    req = struct.pack("!BBHHHI", 0, 1, 0, port, port, 3600)
    s.sendto(req, (gw, 5351))
    try:
        d, a = s.recvfrom(64)
    except (socket.timeout, ConnectionRefusedError):
        misses += 1
        if misses >= 3:
            break
        continue
    misses = 0
    ver, op, res, epoch, iport, eport, life = struct.unpack("!BBHIHHI", d[:16])
    if res == 0 and iport == port and eport == port:
        print("ok", port, flush=True)
`

// loadUntilKilled runs natpmpLoad from the LAN host and kills berthd with
// SIGKILL at a random moment while it runs. It returns the ports the
// gateway acknowledged before it died.
func loadUntilKilled(t *testing.T, topo *topology, d *berthd, base, count int) []uint16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := inNetns(ctx, topo.lan, python, "-c", natpmpLoad, routerLAN.String(), strconv.Itoa(base), strconv.Itoa(count))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the NAT-PMP load: %v", err)
	}
	var acked []uint16
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Kill after a random number of acknowledgements: somewhere in the
	// middle of the load, with requests in flight.
	killAt := count/4 + rand.IntN(count/2)
	killed := false
	for l := range lines {
		p, err := strconv.ParseUint(strings.TrimPrefix(l, "ok "), 10, 16)
		if err != nil {
			t.Fatalf("NAT-PMP load printed %q", l)
		}
		acked = append(acked, uint16(p))
		if !killed && len(acked) >= killAt {
			d.kill()
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the load finished (%d acknowledged) before berthd was killed\n%s", len(acked), stderr.String())
	}
	return acked
}

// TestDurableLeases kills berthd with SIGKILL in the middle of a mapping
// load, three times, restarting it over the same lease store each time.
// Every mapping a client was told about must come back: listed over UPnP,
// and forwarding real traffic from the WAN.
func TestDurableLeases(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	state := t.TempDir()
	d, failed := launch(t, topo, bin, durableConfig, state)
	if failed != "" {
		t.Fatal(failed)
	}
	var acked []uint16
	for round := range 3 {
		got := loadUntilKilled(t, topo, d, 30000+1000*round, 400)
		t.Logf("round %d: %d mappings acknowledged before SIGKILL", round, len(got))
		acked = append(acked, got...)
		if d, failed = launch(t, topo, bin, durableConfig, state); failed != "" {
			t.Fatal(failed)
		}
	}

	list := upnpc(t, topo, "-l")
	var missing []uint16
	for _, p := range acked {
		if !strings.Contains(list, fmt.Sprintf("UDP %d->%v:%d ", p, lanHost, p)) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged mappings lost across SIGKILL and restart, among them %v",
			len(missing), len(acked), missing[:min(len(missing), 20)])
	}
	// Every one is in the kernel's DNAT map...
	kernel := mustRun(t, 10*time.Second, topo.router, "nft", "list", "map", "ip", "berth", "mappings")
	inKernel := map[string]bool{}
	for _, m := range regexp.MustCompile(`(\S+ \. udp \. \d+) counter packets \d+ bytes \d+ : (\S+ \. \d+)`).FindAllStringSubmatch(kernel, -1) {
		inKernel[m[1]+" -> "+m[2]] = true
	}
	for _, p := range acked {
		if !inKernel[fmt.Sprintf("%v . udp . %d -> %v . %d", routerWAN, p, lanHost, p)] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged mappings missing from the kernel after restart, among them %v",
			len(missing), len(acked), missing[:min(len(missing), 20)])
	}
	// ...and real traffic crosses a sample: the first, a random one and
	// the last acknowledged before the final kill.
	for _, p := range []uint16{acked[0], acked[rand.IntN(len(acked))], acked[len(acked)-1]} {
		waitUDP(t, topo, ext(p), p, true)
	}
}

// TestDamagedStore starts berthd over a lease journal whose tail was torn
// off (a crash in the middle of a write, a disk error): berthd must start,
// say what it skipped, and serve the leases it could read.
func TestDamagedStore(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	state := t.TempDir()
	d, failed := launch(t, topo, bin, durableConfig, state)
	if failed != "" {
		t.Fatal(failed)
	}
	for _, p := range []uint16{31000, 31001, 31002} {
		natpmpcGranted(t, topo, p, p, "udp", 3600, 3600)
	}
	d.stop()

	journal := filepath.Join(state, "leases.journal")
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	// Cut into the last record and append garbage.
	torn := append(b[:len(b)-7:len(b)-7], "\x13\x37garbage"...)
	if err := os.WriteFile(journal, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	d, failed = launch(t, topo, bin, durableConfig, state)
	if failed != "" {
		t.Fatal(failed)
	}
	d.mu.Lock()
	damaged := containsMsg(d.msgs, "lease store damaged; recovered what was readable")
	d.mu.Unlock()
	if !damaged {
		t.Errorf("berthd did not report the damaged store:\n%s", d.dump())
	}
	list := upnpc(t, topo, "-l")
	for _, p := range []uint16{31000, 31001} {
		if !strings.Contains(list, fmt.Sprintf("UDP %d->%v:%d ", p, lanHost, p)) {
			t.Errorf("lease %d, whole before the tear, not restored:\n%s", p, list)
		}
	}
	waitUDP(t, topo, ext(31000), 31000, true)
	// New mappings work on the rewritten store.
	natpmpcGranted(t, topo, 31003, 31003, "udp", 3600, 3600)
}

// natpmpMapOnce asks argv[1]:5351 once for UDP port argv[2] (internal =
// external) and prints "result CODE", or "none" after two seconds.
const natpmpMapOnce = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
port = int(sys.argv[2])
s.sendto(struct.pack("!BBHHHI", 0, 1, 0, port, port, 3600), (sys.argv[1], 5351))
try:
    d, a = s.recvfrom(64)
    print("result", struct.unpack("!H", d[2:4])[0])
except socket.timeout:
    print("none")
`

// TestFullStoreDisk runs berthd with its lease store on a tiny tmpfs and
// fills it: a new mapping must fail with NAT-PMP's network-failure code
// (3) and leave nothing behind, existing mappings must keep forwarding,
// and once space is back new mappings work again.
func TestFullStoreDisk(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	state := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "berth-e2e", state).CombinedOutput(); err != nil {
		skipOrFail(t, "cannot mount a tmpfs for the store: %v: %s", err, out)
	}
	// Registered before launch, so it runs after berthd has stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", state).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", state, err, out)
		}
	})
	if _, failed := launch(t, topo, bin, durableConfig, state); failed != "" {
		t.Fatal(failed)
	}
	gw := routerLAN.String()
	mapOnce := func(port uint16) string {
		t.Helper()
		return strings.TrimSpace(mustRun(t, 10*time.Second, topo.lan, python, "-c", natpmpMapOnce, gw, strconv.Itoa(int(port))))
	}
	if got := mapOnce(34000); got != "result 0" {
		t.Fatalf("first mapping: got %q, want result 0", got)
	}

	// Fill the file system; dd stops with ENOSPC.
	filler := filepath.Join(state, "filler")
	run(t, 10*time.Second, topo.router, "dd", "if=/dev/zero", "of="+filler, "bs=4k")
	// The journal's last page may still have room for a few records:
	// those mappings are stored and acknowledged. The first that cannot be
	// stored must fail.
	refused := uint16(0)
	for p := uint16(34001); p < 34200 && refused == 0; p++ {
		switch got := mapOnce(p); got {
		case "result 0":
		case "result 3":
			refused = p
		default:
			t.Fatalf("mapping %d on a full disk: got %q, want result 0 or 3 (network failure)", p, got)
		}
	}
	if refused == 0 {
		t.Fatal("200 mappings on a full disk all succeeded: the store does not reach the disk")
	}
	t.Logf("full disk: port %d refused after %d more were stored", refused, refused-34001)
	waitUDP(t, topo, ext(refused), refused, false)
	waitUDP(t, topo, ext(34000), 34000, true) // a stored one still forwards

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if got := mapOnce(refused); got != "result 0" {
		t.Fatalf("mapping once space is back: got %q, want result 0", got)
	}
	waitUDP(t, topo, ext(refused), refused, true)
}

// TestKeepKernelState: with store.keep_kernel_state a clean stop leaves
// the mappings forwarding while berthd is down (an upgrade, say), and the
// next start adopts them.
func TestKeepKernelState(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	state := t.TempDir()
	conf := durableConfig + "\n[store]\nkeep_kernel_state = true\n"
	d, failed := launch(t, topo, bin, conf, state)
	if failed != "" {
		t.Fatal(failed)
	}
	natpmpcGranted(t, topo, 35000, 35000, "udp", 3600, 3600)
	d.stop()
	waitUDP(t, topo, ext(35000), 35000, true) // berthd is not running
	if d, failed = launch(t, topo, bin, conf, state); failed != "" {
		t.Fatal(failed)
	}
	waitUDP(t, topo, ext(35000), 35000, true)
	d.mu.Lock()
	adopted := containsMsg(d.msgs, "adopting the table of an earlier run; the first sync reconciles it")
	d.mu.Unlock()
	if !adopted {
		t.Errorf("berthd did not adopt the table it left:\n%s", d.dump())
	}
	// Without the option the start replaces the table (restoring from the
	// store) and a clean stop removes the mappings.
	d.stop()
	if d, failed = launch(t, topo, bin, durableConfig, state); failed != "" {
		t.Fatal(failed)
	}
	waitUDP(t, topo, ext(35000), 35000, true)
	d.stop()
	waitUDP(t, topo, ext(35000), 35000, false)
}
