package interop

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/igd"
	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
)

// serveIGD starts the IGD on 127.0.0.100 (the router; clients on loopback
// speak from 127.0.0.1) in front of a Service with external address ext,
// and returns the description URL.
func serveIGD(t *testing.T, ext netip.Addr) (string, *portmap.Service) {
	t.Helper()
	lan := netip.MustParsePrefix("127.0.0.0/8")
	router := netip.MustParseAddr("127.0.0.100")
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Router: []netip.Addr{router},
		Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindIGD: {Max: 7 * 24 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clock.Real{}, External: ext})
	srv := igd.New(igd.Config{Mapper: svc, LAN: []netip.Prefix{lan}, Mode: "auto",
		Device: description.Device{UDNs: [3]string{"uuid:11111111-2222-5333-8444-555555555555",
			"uuid:11111111-2222-5333-8444-555555555556", "uuid:11111111-2222-5333-8444-555555555557"},
			FriendlyName: "berth", Manufacturer: "berth", ModelName: "berth"}})
	ln, err := net.Listen("tcp4", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); ln.Close(); svc.Close() })
	return "http://" + ln.Addr().String() + description.RootPath, svc
}

func upnpc(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Logf("upnpc %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// TestUpnpc drives the IGD with miniupnpc's upnpc (Debian miniupnpc):
// status, add, list (GetGeneric and, for IGD:2, GetListOfPortMappings),
// delete and a redirect to the local address, each checked in the Service.
func TestUpnpc(t *testing.T) {
	bin := requireTool(t, "upnpc", "miniupnpc")
	// 198.18.0.2: an address miniupnpc 2.2.4 accepts as connected (it
	// refuses RFC 1918, CGNAT and TEST-NET external addresses).
	ext := netip.MustParseAddr("198.18.0.2")
	url, svc := serveIGD(t, ext)

	if out := upnpc(t, bin, "-u", url, "-s"); !strings.Contains(out, "Found valid IGD") ||
		!strings.Contains(out, "ExternalIPAddress = "+ext.String()) || !strings.Contains(out, "Status : Connected") {
		t.Fatalf("upnpc -s:\n%s", out)
	}
	if out := upnpc(t, bin, "-u", url, "-a", "127.0.0.1", "20000", "20000", "TCP", "3600"); !strings.Contains(out, "is redirected to internal 127.0.0.1:20000") {
		t.Fatalf("upnpc -a:\n%s", out)
	}
	ms := svc.List(mapping.Filter{})
	if len(ms) != 1 || ms[0].External.Port() != 20000 || ms[0].Internal != netip.MustParseAddrPort("127.0.0.1:20000") || ms[0].Proto != mapping.TCP {
		t.Fatalf("Service holds %v, want TCP 20000 -> 127.0.0.1:20000", ms)
	}
	if out := upnpc(t, bin, "-u", url, "-l"); !strings.Contains(out, "TCP 20000->127.0.0.1:20000") {
		t.Fatalf("upnpc -l does not list the mapping:\n%s", out)
	}
	if out := upnpc(t, bin, "-u", url, "-L"); !strings.Contains(out, "20000") || !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("upnpc -L does not list the mapping:\n%s", out)
	}
	// Another host's address is refused in secure mode, and nothing is added.
	upnpc(t, bin, "-u", url, "-a", "127.0.0.9", "20002", "20002", "TCP", "3600")
	if n := len(svc.List(mapping.Filter{Ports: mapping.PortRange{Lo: 20002, Hi: 20002}})); n != 0 {
		t.Fatalf("a mapping for another host was added")
	}
	upnpc(t, bin, "-u", url, "-d", "20000", "TCP")
	if n := svc.Len(); n != 0 {
		t.Fatalf("%d mappings after upnpc -d, want 0", n)
	}
	upnpc(t, bin, "-u", url, "-r", "20001", "UDP")
	if ms := svc.List(mapping.Filter{}); len(ms) != 1 || ms[0].External.Port() != 20001 || ms[0].Proto != mapping.UDP {
		t.Fatalf("after upnpc -r the Service holds %v, want UDP 20001", ms)
	}
}

// pyScript drives the IGD with Debian's python3-miniupnpc (the binding of
// the same library that Transmission and many apps use).
const pyScript = `
import sys, miniupnpc
u = miniupnpc.UPnP()
u.selectigd(sys.argv[1])
print("ext", u.externalipaddress())
print("add", u.addportmapping(20010, "TCP", "127.0.0.1", 20010, "python3-miniupnpc", ""))
print("specific", u.getspecificportmapping(20010, "TCP"))
print("generic0", u.getgenericportmapping(0))
print("generic1", u.getgenericportmapping(1))
print("delete", u.deleteportmapping(20010, "TCP"))
`

func TestPythonMiniupnpc(t *testing.T) {
	// Debian's interpreter: the module is installed for it, not for
	// another python3 earlier on PATH.
	const py = "/usr/bin/python3"
	requireTool(t, py, "python3-miniupnpc")
	if err := exec.Command(py, "-c", "import miniupnpc").Run(); err != nil {
		if isE2E() {
			t.Fatalf("python3-miniupnpc missing and BERTH_E2E=1: %v", err)
		}
		t.Skipf("python3-miniupnpc not installed (apt-get install python3-miniupnpc); BERTH_E2E=1 makes this a failure")
	}
	ext := netip.MustParseAddr("198.18.0.2")
	url, svc := serveIGD(t, ext)
	out, err := exec.Command(py, "-c", pyScript, url).CombinedOutput()
	if err != nil {
		t.Fatalf("python3-miniupnpc: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"ext " + ext.String(),
		"add True",
		"specific ('127.0.0.1', 20010, 'python3-miniupnpc', True,",
		"generic0 (20010, 'TCP', ('127.0.0.1', 20010), 'python3-miniupnpc', '1', '',",
		"generic1 None",
		"delete True",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if svc.Len() != 0 {
		t.Fatalf("%d mappings left after deleteportmapping", svc.Len())
	}
}
