// Package e2e is berth's end-to-end suite: berthd runs in a router
// namespace between a LAN and a WAN namespace, real clients (upnpc,
// natpmpc, a PCP script) map ports from the LAN, and real traffic from the
// WAN must reach listeners in the LAN, and stop reaching them after delete
// or expiry:
//
//	ns wan (203.0.113.1) ──veth── ns router: berthd (wan 203.0.113.2, lan 192.168.77.1) ──veth── ns lan (192.168.77.10)
//
// 203.0.113.0/24 is TEST-NET-3 (RFC 5737) and nothing leaves the
// namespaces. The suite needs root, ip(8), nft, upnpc, natpmpc, python3
// and curl; it skips without them unless BERTH_E2E=1, which makes a
// missing one a failure.
package e2e

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

// Addresses of the topology drawn in the package comment.
var (
	routerLAN = netip.MustParseAddr("192.168.77.1")
	lanHost   = netip.MustParseAddr("192.168.77.10")
	routerWAN = netip.MustParseAddr("203.0.113.2") // berthd's external address
	wanHost   = netip.MustParseAddr("203.0.113.1")
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

// python is the system's python3, not whatever python3 comes first in
// PATH (a pyenv shim, say); requireTools falls back to PATH without it.
var python = "/usr/bin/python3"

// requireTools skips (or fails) unless the suite can run at all.
func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for network namespaces")
	}
	for _, tool := range []struct{ bin, pkg string }{
		{"ip", "iproute2"}, {"nft", "nftables"}, {"upnpc", "miniupnpc"},
		{"natpmpc", "natpmpc"}, {"curl", "curl"},
	} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			skipOrFail(t, "%s not installed (Debian package %s)", tool.bin, tool.pkg)
		}
	}
	if _, err := os.Stat(python); err != nil {
		p, err := exec.LookPath("python3")
		if err != nil {
			skipOrFail(t, "python3 not installed (Debian package python3)")
		}
		python = p
	}
}

// newTopology builds the namespaces, or skips when it cannot. They are
// removed when the test ends, failed or not.
func newTopology(t *testing.T) *topology {
	t.Helper()
	// Unique per process: parallel runs and leftovers of a killed run do
	// not collide.
	prefix := fmt.Sprintf("berth-e2e%d-", os.Getpid())
	topo := &topology{lan: prefix + "lan", router: prefix + "router", wan: prefix + "wan"}
	if out, err := ipCmd("netns", "add", topo.lan); err != nil {
		skipOrFail(t, "cannot create a network namespace: %v: %s", err, out)
	}
	removeNetns(t, topo.lan)
	addNetns(t, topo.router)
	addNetns(t, topo.wan)
	l, r, w := topo.lan, topo.router, topo.wan
	steps := [][]string{
		{"-n", l, "link", "set", "lo", "up"},
		{"-n", r, "link", "set", "lo", "up"},
		{"-n", w, "link", "set", "lo", "up"},
		{"-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", l},
		{"-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", w},
		{"-n", r, "addr", "add", routerLAN.String() + "/24", "dev", "lan0"},
		{"-n", r, "addr", "add", routerWAN.String() + "/24", "dev", "wan0"},
		{"-n", l, "addr", "add", lanHost.String() + "/24", "dev", "lan0"},
		{"-n", w, "addr", "add", wanHost.String() + "/24", "dev", "wan0"},
		{"-n", r, "link", "set", "lan0", "up"},
		{"-n", r, "link", "set", "wan0", "up"},
		{"-n", l, "link", "set", "lan0", "up"},
		{"-n", w, "link", "set", "wan0", "up"},
		// The LAN's default route also carries SSDP multicast out lan0.
		{"-n", l, "route", "add", "default", "via", routerLAN.String()},
		{"-n", r, "route", "add", "default", "via", wanHost.String()},
		// A router forwards: the nft backend DNATs mapped traffic to the
		// LAN through the kernel.
		{"netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	ipSteps(t, steps)
	return topo
}

// addNetns creates the network namespace ns, removed when the test ends.
func addNetns(t *testing.T, ns string) {
	t.Helper()
	if out, err := ipCmd("netns", "add", ns); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	removeNetns(t, ns)
}

// removeNetns removes the namespace ns when the test ends.
func removeNetns(t *testing.T, ns string) {
	t.Cleanup(func() {
		if out, err := ipCmd("netns", "del", ns); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
}

// ipSteps runs ip(8) with each argument list in turn, failing the test at
// the first that fails.
func ipSteps(t *testing.T, steps [][]string) {
	t.Helper()
	for _, s := range steps {
		if out, err := ipCmd(s...); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
}

// ipCmd runs ip(8) with a time limit.
func ipCmd(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

// inNetns returns a command that runs name in the namespace ns; ip netns
// exec execs it, so the process is name itself and killing it kills name.
func inNetns(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs name in ns, bounded by timeout, and returns its combined output.
func run(t *testing.T, timeout time.Duration, ns, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := inNetns(ctx, ns, name, args...).CombinedOutput()
	return string(out), err
}

// mustRun is run that fails the test when the command fails.
func mustRun(t *testing.T, timeout time.Duration, ns, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, ns, name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns, err, out)
	}
	return out
}
