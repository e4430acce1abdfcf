// Package interop runs independent NAT-PMP and PCP clients against berth's
// responders on loopback: Debian's natpmpc (libnatpmp) as a process and
// github.com/jackpal/go-nat-pmp in-process. Each server binds port 5351 on
// its own 127.77.0.x address, because these clients cannot be pointed at
// another port.
package interop

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	gonatpmp "github.com/jackpal/go-nat-pmp"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
	"github.com/berthd/berth/pcp/listener"
)

var ext = netip.MustParseAddr("203.0.113.2")

// serve starts Service + responders on gw:5351 with the fake backend.
func serve(t *testing.T, gw string) *portmap.Service {
	t.Helper()
	lan := netip.MustParsePrefix("127.0.0.0/8")
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clock.Real{}, External: ext})
	srv, err := listener.New(listener.Config{
		Binds: []listener.Bind{{Interface: "lo", Addr: netip.MustParseAddr(gw)}},
		LAN:   []netip.Prefix{lan}, Clock: clock.Real{},
		PCP:    &pcp.Handler{Mapper: svc, Epoch: svc.Epoch},
		NATPMP: &natpmp.Handler{Mapper: svc, Epoch: svc.Epoch},
	})
	if err != nil {
		t.Fatalf("bind %s:5351: %v", gw, err)
	}
	srv.Serve()
	t.Cleanup(func() { srv.Close(); svc.Close() })
	return svc
}

// isE2E reports whether BERTH_E2E=1 turns missing prerequisites into
// failures (CI sets it).
func isE2E() bool { return os.Getenv("BERTH_E2E") == "1" }

// requireTool skips without the tool, unless BERTH_E2E=1 says CI must
// have it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("BERTH_E2E") == "1" {
			t.Fatalf("%s not installed (Debian package %s) and BERTH_E2E=1", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s); BERTH_E2E=1 makes this a failure", name, pkg)
	}
	return p
}

func natpmpc(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("natpmpc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestNatpmpc(t *testing.T) {
	bin := requireTool(t, "natpmpc", "natpmpc")
	const gw = "127.77.0.1"
	svc := serve(t, gw)

	out := natpmpc(t, bin, "-g", gw)
	if !strings.Contains(out, "Public IP address : "+ext.String()) {
		t.Fatalf("public address not reported:\n%s", out)
	}
	out = natpmpc(t, bin, "-g", gw, "-a", "6000", "5000", "udp", "3600")
	if !regexp.MustCompile(`Mapped public port 6000 protocol UDP to local port 5000 li[f]?e?time 3600`).MatchString(out) {
		t.Fatalf("map not confirmed:\n%s", out)
	}
	if ms := svc.List(mapping.Filter{}); len(ms) != 1 || ms[0].External.Port() != 6000 || ms[0].Internal.Port() != 5000 {
		t.Fatalf("got %v, want UDP 6000 -> 5000", ms)
	}
	// Renew: same command, same port.
	natpmpc(t, bin, "-g", gw, "-a", "6000", "5000", "udp", "7200")
	if ms := svc.List(mapping.Filter{}); len(ms) != 1 || ms[0].External.Port() != 6000 {
		t.Fatalf("after renew got %v", ms)
	}
	natpmpc(t, bin, "-g", gw, "-a", "7000", "5001", "tcp", "3600")
	// Delete one with lifetime 0, then all with private port 0.
	natpmpc(t, bin, "-g", gw, "-a", "6000", "5000", "udp", "0")
	if n := len(svc.List(mapping.Filter{Proto: mapping.UDP})); n != 0 {
		t.Fatalf("%d UDP mappings after delete", n)
	}
	natpmpc(t, bin, "-g", gw, "-a", "0", "0", "tcp", "0")
	if n := svc.Len(); n != 0 {
		t.Fatalf("%d mappings after delete-all", n)
	}
}

func TestGoNATPMP(t *testing.T) {
	const gw = "127.77.0.2"
	svc := serve(t, gw)
	c := gonatpmp.NewClientWithTimeout(net.ParseIP(gw), 3*time.Second)
	addr, err := c.GetExternalAddress()
	if err != nil {
		t.Fatal(err)
	}
	if netip.AddrFrom4(addr.ExternalIPAddress) != ext {
		t.Fatalf("got external %v, want %v", addr.ExternalIPAddress, ext)
	}
	res, err := c.AddPortMapping("tcp", 5000, 6000, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if res.MappedExternalPort != 6000 || res.InternalPort != 5000 || res.PortMappingLifetimeInSeconds != 3600 {
		t.Fatalf("got %+v, want 5000 -> 6000 for 3600 s", res)
	}
	again, err := c.AddPortMapping("tcp", 5000, 0, 3600)
	if err != nil || again.MappedExternalPort != 6000 {
		t.Fatalf("renewal: %+v, %v; want port 6000", again, err)
	}
	if _, err := c.AddPortMapping("tcp", 5000, 0, 0); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if svc.Len() != 0 {
		t.Fatalf("%d mappings after delete", svc.Len())
	}
}
