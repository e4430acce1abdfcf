package nft

import (
	"context"
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
	for _, tool := range []string{"python3", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("forwarding test needs %s: %v", tool, err)
		}
	}
	ctx := context.Background()
	n, router := newNft(t, Config{WANInterface: "wan0", Hairpin: true})
	wan, lan := newNetNS(t), newNetNS(t)
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
