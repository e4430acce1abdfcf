package tailscale

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Addresses of the topology drawn in the package comment. 203.0.113.0/24
// is TEST-NET-3 (RFC 5737); nothing leaves the namespaces.
var (
	routerLAN = netip.MustParseAddr("192.168.77.1")
	clientLAN = netip.MustParseAddr("192.168.77.2")
	routerWAN = netip.MustParseAddr("203.0.113.2") // berthd's external address
	upstream  = netip.MustParseAddr("203.0.113.1")
)

// topology is the three namespaces; deleting them removes the veths too.
type topology struct {
	lan, router, wan string
}

// e2e reports whether BERTH_E2E=1 asks that a missing privilege or tool
// fail the test instead of skipping it.
func e2e() bool { return os.Getenv("BERTH_E2E") == "1" }

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if e2e() {
		t.Fatalf("%s (BERTH_E2E=1)", msg)
	}
	t.Skipf("%s; BERTH_E2E=1 makes this a failure", msg)
}

// newTopology builds the namespaces, or skips when it cannot. They are
// removed when the test ends, failed or not.
func newTopology(t *testing.T) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "ip not installed (Debian package iproute2)")
	}
	// Unique per process: parallel runs and leftovers of a killed run do
	// not collide.
	prefix := fmt.Sprintf("berth-ts%d-", os.Getpid())
	topo := &topology{lan: prefix + "lan", router: prefix + "router", wan: prefix + "wan"}
	for i, ns := range []string{topo.lan, topo.router, topo.wan} {
		if out, err := ipCmd("netns", "add", ns); err != nil {
			if i == 0 {
				skipOrFail(t, "cannot create a network namespace: %v: %s", err, out)
			}
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() {
			if out, err := ipCmd("netns", "del", ns); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	l, r, w := topo.lan, topo.router, topo.wan
	steps := [][]string{
		{"-n", l, "link", "set", "lo", "up"},
		{"-n", r, "link", "set", "lo", "up"},
		{"-n", w, "link", "set", "lo", "up"},
		{"-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", l},
		{"-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", w},
		{"-n", r, "addr", "add", routerLAN.String() + "/24", "dev", "lan0"},
		{"-n", r, "addr", "add", routerWAN.String() + "/24", "dev", "wan0"},
		{"-n", l, "addr", "add", clientLAN.String() + "/24", "dev", "lan0"},
		{"-n", w, "addr", "add", upstream.String() + "/24", "dev", "wan0"},
		{"-n", r, "link", "set", "lan0", "up"},
		{"-n", r, "link", "set", "wan0", "up"},
		{"-n", l, "link", "set", "lan0", "up"},
		{"-n", w, "link", "set", "wan0", "up"},
		{"-n", l, "route", "add", "default", "via", routerLAN.String()},
		{"-n", r, "route", "add", "default", "via", upstream.String()},
		// A router forwards: berthd's nft backend DNATs mapped traffic
		// to the LAN through the kernel (the relay would not need this).
		{"netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if out, err := ipCmd(s...); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return topo
}

// ipCmd runs ip(8) with a time limit.
func ipCmd(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

// inNetns returns a command that runs name in the namespace ns; ip netns
// exec execs it, so the process is name itself.
func inNetns(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// send has a helper in the wan namespace send payload to to.
func (topo *topology) send(t *testing.T, to netip.AddrPort, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := helper(ctx, t, topo.wan, roleSend, sendArgs{To: to, Payload: payload})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sending from the wan namespace to %v: %v\n%s", to, err, out)
	}
}
