package nft

import (
	"bufio"
	"context"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// TestForwarding proves that the maps really forward, over three fresh
// namespaces:
//
//	  wan                     router (berth's table)             lan
//	203.0.113.9 eth0 ── wan0 203.0.113.2 | lan0 192.168.1.1 ── eth0 192.168.1.10
//	  curl                                                     python3 http.server :80
//
// A mapping open to any remote host and one restricted to the wan host
// are reachable from wan; one restricted to another remote host is not;
// a deleted mapping is not. With hairpin, lan reaches a mapping through the
// external address.
func TestForwarding(t *testing.T) {
	ctx := context.Background()
	n, _, wan, lan := topology(t, Config{WANInterface: "wan0", Hairpin: true})

	srv := exec.Command("ip", "netns", "exec", lan.name, "python3", "-m", "http.server", "80", "--bind", "192.168.1.10")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	open := mk(mapping.TCP, "203.0.113.2:8080", "192.168.1.10:80", "")
	fromWAN := mk(mapping.TCP, "203.0.113.2:8081", "192.168.1.10:80", "203.0.113.9")
	fromOther := mk(mapping.TCP, "203.0.113.2:8082", "192.168.1.10:80", "198.51.100.7")
	if err := n.Apply(ctx, add(open, fromWAN, fromOther)); err != nil {
		t.Fatal(err)
	}
	getFrom := func(ns *netNS, port string) error {
		return exec.Command("ip", "netns", "exec", ns.name, "curl", "-sf", "-o", "/dev/null", "-m", "1",
			"http://203.0.113.2:"+port+"/").Run()
	}
	get := func(port string) error { return getFrom(wan, port) }
	// The server needs a moment to start.
	for try := 0; ; try++ {
		err := get("8080")
		if err == nil {
			break
		}
		if try == 100 {
			t.Fatalf("GET through %s: %v", open.Key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Hairpin: the lan host reaches itself through the external address.
	if err := getFrom(lan, "8080"); err != nil {
		t.Errorf("GET through %s from lan (hairpin): %v", open.Key, err)
	}
	if err := get("8081"); err != nil {
		t.Errorf("GET through %s: %v", fromWAN.Key, err)
	}
	if err := get("8082"); err == nil {
		t.Errorf("GET through %s from 203.0.113.9 succeeded", fromOther.Key)
	}
	cs, err := n.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := cs[open.Key]; c.Packets == 0 {
		t.Errorf("counter of %s = %+v, want packets", open.Key, c)
	}
	if err := n.Apply(ctx, del(open)); err != nil {
		t.Fatal(err)
	}
	if err := get("8080"); err == nil {
		t.Errorf("GET through deleted %s succeeded", open.Key)
	}
}

// topology builds the three namespaces of TestForwarding, with the
// backend in router made from c.
func topology(t *testing.T, c Config) (n *Nft, router, wan, lan *netNS) {
	t.Helper()
	for _, tool := range []string{"python3", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "forwarding test needs %s: %v", tool, err)
		}
	}
	n, router = newNft(t, c)
	wan, lan = newNetNS(t), newNetNS(t)
	for _, args := range [][]string{
		{"link", "add", "wan0", "netns", router.name, "type", "veth", "peer", "name", "eth0", "netns", wan.name},
		{"link", "add", "lan0", "netns", router.name, "type", "veth", "peer", "name", "eth0", "netns", lan.name},
		{"-n", router.name, "addr", "add", "203.0.113.2/24", "dev", "wan0"},
		{"-n", router.name, "addr", "add", "192.168.1.1/24", "dev", "lan0"},
		{"-n", wan.name, "addr", "add", "203.0.113.9/24", "dev", "eth0"},
		{"-n", lan.name, "addr", "add", "192.168.1.10/24", "dev", "eth0"},
		{"-n", router.name, "link", "set", "wan0", "up"},
		{"-n", router.name, "link", "set", "lan0", "up"},
		{"-n", wan.name, "link", "set", "eth0", "up"},
		{"-n", lan.name, "link", "set", "eth0", "up"},
		{"-n", lan.name, "link", "set", "lo", "up"},
		{"-n", lan.name, "route", "add", "default", "via", "192.168.1.1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	router.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	return n, router, wan, lan
}

// udpEcho answers every datagram on addr with "<source ip>:<source port>".
const udpEcho = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(100)
    s.sendto(("%s:%d" % a).encode(), a)
`

// udpClient binds to argv[1]:argv[2] and, for every line read from its
// standard input (a number of seconds), sends a datagram to argv[3]:argv[4]
// every 100 ms for up to that long and prints the first answer, or "none".
const udpClient = `import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(0.1)
for line in sys.stdin:
    got = "none"
    end = time.time() + float(line)
    while time.time() < end and got == "none":
        s.sendto(b"x", (sys.argv[3], int(sys.argv[4])))
        try:
            got = s.recvfrom(100)[0].decode()
        except socket.timeout:
            pass
    print(got, flush=True)
`

// startPy runs a python3 program in ns, killed when the test ends.
func startPy(t *testing.T, ns *netNS, prog string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, "python3", "-c", prog}, args...)...)
	t.Cleanup(func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// udpConv is a udpClient: ask sends for up to secs seconds and returns
// the answer.
type udpConv struct {
	in  io.Writer
	out *bufio.Scanner
}

func newUDPConv(t *testing.T, ns *netNS, args ...string) *udpConv {
	t.Helper()
	cmd := startPy(t, ns, udpClient, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &udpConv{in: in, out: bufio.NewScanner(out)}
}

func (c *udpConv) ask(t *testing.T, secs string) string {
	t.Helper()
	if _, err := io.WriteString(c.in, secs+"\n"); err != nil {
		t.Fatal(err)
	}
	if !c.out.Scan() {
		t.Fatalf("udp client ended: %v", c.out.Err())
	}
	return c.out.Text()
}

// TestForwardingUDP proves, in TestForwarding's topology, that outbound
// UDP from a mapped internal address:port leaves with the mapping's
// external port (PreserveSourcePort) and that its answer comes back; and
// that an established inbound flow stops with its mapping (the conntrack
// flush).
func TestForwardingUDP(t *testing.T) {
	ctx := context.Background()
	n, _, wan, lan := topology(t, Config{WANInterface: "wan0", PreserveSourcePort: true})
	out := mk(mapping.UDP, "203.0.113.2:6000", "192.168.1.10:5000", "")
	in := mk(mapping.UDP, "203.0.113.2:6001", "192.168.1.10:5001", "")
	if err := n.Apply(ctx, add(out, in)); err != nil {
		t.Fatal(err)
	}
	if err := startPy(t, wan, udpEcho, "203.0.113.9", "7000").Start(); err != nil {
		t.Fatal(err)
	}
	if err := startPy(t, lan, udpEcho, "192.168.1.10", "5001").Start(); err != nil {
		t.Fatal(err)
	}

	// Outbound: the wan host sees the mapped external port.
	lanc := newUDPConv(t, lan, "192.168.1.10", "5000", "203.0.113.9", "7000")
	if got, want := lanc.ask(t, "10"), "203.0.113.2:6000"; got != want {
		t.Errorf("wan host saw the lan host's datagram from %s, want %s", got, want)
	}

	// Inbound: a flow through in is forwarded until in is deleted.
	wanc := newUDPConv(t, wan, "203.0.113.9", "7001", "203.0.113.2", "6001")
	if got, want := wanc.ask(t, "10"), "203.0.113.9:7001"; got != want {
		t.Fatalf("lan host saw the wan host's datagram from %s, want %s", got, want)
	}
	if err := n.Apply(ctx, del(in)); err != nil {
		t.Fatal(err)
	}
	waitFlushed(t, n)
	if got := wanc.ask(t, "1"); got != "none" {
		t.Errorf("flow through deleted %s still forwarded (answer %q): conntrack not flushed", in.Key, got)
	}
}

// waitFlushed waits (bounded) until the background flusher has deleted
// the flows of every mapping removed so far.
func waitFlushed(t *testing.T, n *Nft) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !n.flushIdle() {
		select {
		case <-deadline:
			t.Fatal("conntrack flush still pending after 5 s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestForwardingFilter proves, in TestForwarding's topology with a second
// wan address 203.0.113.10, that a mapping with remote-peer filters is
// reached only from the peers they admit, and from both once the filters
// are removed.
func TestForwardingFilter(t *testing.T) {
	ctx := context.Background()
	n, _, wan, lan := topology(t, Config{WANInterface: "wan0"})
	wan.run(t, "ip", "addr", "add", "203.0.113.10/24", "dev", "eth0")
	srv := exec.Command("ip", "netns", "exec", lan.name, "python3", "-m", "http.server", "80", "--bind", "192.168.1.10")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	open := mk(mapping.TCP, "203.0.113.2:8080", "192.168.1.10:80", "")
	filtered := mk(mapping.TCP, "203.0.113.2:8081", "192.168.1.10:80", "")
	filtered.Peers = mapping.NewPeers(mapping.Peer{Prefix: netip.MustParsePrefix("203.0.113.9/32")})
	if err := n.Apply(ctx, add(open, filtered)); err != nil {
		t.Fatal(err)
	}
	getFrom := func(src, port string) error {
		return exec.Command("ip", "netns", "exec", wan.name, "curl", "-sf", "-o", "/dev/null", "-m", "1",
			"--interface", src, "http://203.0.113.2:"+port+"/").Run()
	}
	// The server needs a moment to start.
	for try := 0; ; try++ {
		err := getFrom("203.0.113.10", "8080")
		if err == nil {
			break
		}
		if try == 100 {
			t.Fatalf("GET through %s: %v", open.Key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := getFrom("203.0.113.9", "8081"); err != nil {
		t.Errorf("GET through %s from admitted 203.0.113.9: %v", filtered.Key, err)
	}
	if err := getFrom("203.0.113.10", "8081"); err == nil {
		t.Errorf("GET through %s from 203.0.113.10 succeeded, want it filtered", filtered.Key)
	}
	// Removing the filters opens the mapping to both.
	unfiltered := filtered
	unfiltered.Peers = nil
	if err := n.Apply(ctx, add(unfiltered)); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"203.0.113.9", "203.0.113.10"} {
		if err := getFrom(src, "8081"); err != nil {
			t.Errorf("GET through unfiltered %s from %s: %v", filtered.Key, src, err)
		}
	}
}

// TestCountersCountFlows pins down what Counter says the counters count,
// in TestForwarding's topology: a mapping open to any remote host counts
// the flows, however many datagrams each carries; one restricted to a
// remote host counts every datagram from it, and each flow once more.
func TestCountersCountFlows(t *testing.T) {
	ctx := context.Background()
	n, _, wan, lan := topology(t, Config{WANInterface: "wan0"})
	open := mk(mapping.UDP, "203.0.113.2:6001", "192.168.1.10:5001", "")
	restricted := mk(mapping.UDP, "203.0.113.2:6002", "192.168.1.10:5001", "203.0.113.9")
	if err := n.Apply(ctx, add(open, restricted)); err != nil {
		t.Fatal(err)
	}
	if err := startPy(t, lan, udpEcho, "192.168.1.10", "5001").Start(); err != nil {
		t.Fatal(err)
	}
	// Two flows through open, one through restricted; every answered
	// ask is at least one datagram that reached the lan host.
	const asks = 3
	convs := []*udpConv{
		newUDPConv(t, wan, "203.0.113.9", "7001", "203.0.113.2", "6001"),
		newUDPConv(t, wan, "203.0.113.9", "7003", "203.0.113.2", "6001"),
		newUDPConv(t, wan, "203.0.113.9", "7002", "203.0.113.2", "6002"),
	}
	for range asks {
		for _, c := range convs {
			if got := c.ask(t, "10"); got == "none" {
				t.Fatal("a datagram through a mapping was not answered")
			}
		}
	}
	cs, err := n.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := cs[open.Key]; c.Packets != 2 {
		t.Errorf("counter of %s = %+v after 2 flows of at least %d datagrams each, want 2 packets (one per flow)", open.Key, c, asks)
	}
	if c := cs[restricted.Key]; c.Packets < asks+1 {
		t.Errorf("counter of %s = %+v after 1 flow of at least %d datagrams, want at least %d packets", restricted.Key, c, asks, asks+1)
	}
}
