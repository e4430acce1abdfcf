package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway1"
	"github.com/huin/goupnp/dcps/internetgateway2"

	"github.com/berthd/berth/igd"
	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/portmap"
)

// TestUPnPDiscoveryAndControl runs the daemon's IGD on loopback: a unicast
// M-SEARCH from a LAN host finds it, the LOCATION leads goupnp's IGD:2
// client to the description, and AddPortMapping creates a mapping in the
// Service that DeletePortMapping removes.
func TestUPnPDiscoveryAndControl(t *testing.T) {
	ssdpPort, groupPort := freeUDPPort(t), freeUDPPort(t)
	cfg := config.Default()
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	cfg.Backend = "relay"
	cfg.NATPMP.Enabled, cfg.PCP.Enabled = false, false
	ready := make(chan *portmap.Service, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Detect: loopback, OpenNft: noNft,
			SSDPPort: ssdpPort, SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), groupPort),
			Ready: func(s *portmap.Service) { ready <- s }})
	}()
	defer func() { cancel(); <-done }()
	var svc *portmap.Service
	select {
	case svc = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	}
	host := netip.MustParseAddr("127.0.0.2") // a LAN host; 127.0.0.1 is the router
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: host.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	search := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n" +
		"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n"
	if _, err := c.WriteToUDPAddrPort([]byte(search), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ssdpPort)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(clock.Real{}.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no SSDP answer: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", buf[:n], err)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Hostname() != "127.0.0.1" {
		t.Fatalf("LOCATION %q: %v", resp.Header.Get("Location"), err)
	}
	// The WAN interface is served here, so the IGD's HTTP port is on the
	// external address: policy keeps every mapping off it.
	httpPort, err := strconv.Atoi(loc.Port())
	if err != nil {
		t.Fatal(err)
	}
	onHTTP := mapping.Request{Client: host, Proto: mapping.TCP, Internal: netip.AddrPortFrom(host, 8000),
		Suggest: netip.AddrPortFrom(netip.Addr{}, uint16(httpPort)), Exact: true, Lifetime: time.Hour,
		Origin: mapping.Origin{Kind: mapping.KindIGD}}
	if _, err := svc.Map(ctx, onHTTP); !errors.Is(err, mapping.ErrNotAuthorized) {
		t.Errorf("mapping the IGD's own HTTP port %d: got %v, want ErrNotAuthorized (reserved)", httpPort, err)
	}
	cs, err := internetgateway2.NewWANIPConnection2ClientsByURL(loc)
	if err != nil || len(cs) != 1 {
		t.Fatalf("goupnp found %d WANIPConnection:2 clients: %v", len(cs), err)
	}
	ig := cs[0]
	ig.SOAPClient.HTTPClient = httpFrom(host)
	if err := ig.AddPortMapping("", 20000, "TCP", 20000, host.String(), true, "daemon test", 3600); err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	ms := svc.List(mapping.Filter{Kind: mapping.KindIGD})
	if len(ms) != 1 || ms[0].External.Port() != 20000 || ms[0].Origin.Description != "daemon test" {
		t.Fatalf("Service holds %v, want the UPnP mapping", ms)
	}
	if err := ig.DeletePortMapping("", 20000, "TCP"); err != nil {
		t.Fatalf("DeletePortMapping: %v", err)
	}
	if svc.Len() != 0 {
		t.Fatalf("%d mappings left after delete", svc.Len())
	}
	checkTotals(t, loc, host)
}

// httpFrom is an HTTP client whose connections come from host, a LAN host
// on loopback.
func httpFrom(host netip.Addr) http.Client {
	return http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: host.AsSlice()}}).DialContext}}
}

// checkTotals reads the GetTotal* counters over SOAP with goupnp's
// WANCommonInterfaceConfig client: they are the WAN interface's (lo in
// these tests) as the kernel counts them, truncated to ui4 (COMPAT R8).
func checkTotals(t *testing.T, loc *url.URL, host netip.Addr) {
	t.Helper()
	cs, err := internetgateway2.NewWANCommonInterfaceConfig1ClientsByURL(loc)
	if err != nil || len(cs) != 1 {
		t.Fatalf("goupnp found %d WANCommonInterfaceConfig:1 clients: %v", len(cs), err)
	}
	wc := cs[0]
	wc.SOAPClient.HTTPClient = httpFrom(host)
	before, err := netif.ReadCounters("lo")
	if err != nil {
		t.Fatal(err)
	}
	bs, errBS := wc.GetTotalBytesSent()
	br, errBR := wc.GetTotalBytesReceived()
	ps, errPS := wc.GetTotalPacketsSent()
	pr, errPR := wc.GetTotalPacketsReceived()
	if err := errors.Join(errBS, errBR, errPS, errPR); err != nil {
		t.Fatalf("GetTotal*: %v", err)
	}
	after, err := netif.ReadCounters("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		got           uint64
		before, after uint64
	}{
		{"TotalBytesSent", bs, before.BytesSent, after.BytesSent},
		{"TotalBytesReceived", br, before.BytesReceived, after.BytesReceived},
		{"TotalPacketsSent", uint64(ps), before.PacketsSent, after.PacketsSent},
		{"TotalPacketsReceived", uint64(pr), before.PacketsReceived, after.PacketsReceived},
	} {
		lo, hi := uint64(uint32(c.before)), uint64(uint32(c.after))
		if hi < lo {
			continue // wrapped meanwhile: nothing to compare
		}
		if c.got < lo || c.got > hi || c.got == 0 {
			t.Errorf("%s = %d, want lo's counter, between %d and %d", c.name, c.got, lo, hi)
		}
	}
}

// upnpDaemon runs the daemon with only UPnP on, SSDP on loopback ports.
func upnpDaemon(t *testing.T, mode string) (svc *portmap.Service, ssdpPort uint16) {
	t.Helper()
	svc, ssdpPort, stop := upnpDaemonIn(t, mode, t.TempDir()) // never the host's /var/lib/berth
	t.Cleanup(stop)
	return svc, ssdpPort
}

// upnpDaemonIn is upnpDaemon with its store in dir; stop stops it.
func upnpDaemonIn(t *testing.T, mode, dir string) (svc *portmap.Service, ssdpPort uint16, stop func()) {
	t.Helper()
	return upnpDaemonWith(t, dir, func(c *config.Config, _ *Options) { c.UPnP.Mode = mode })
}

// upnpDaemonWith is upnpDaemonIn with edit applied to the configuration
// and the options.
func upnpDaemonWith(t *testing.T, dir string, edit func(*config.Config, *Options)) (svc *portmap.Service, ssdpPort uint16, stop func()) {
	t.Helper()
	ssdpPort, groupPort := freeUDPPort(t), freeUDPPort(t)
	cfg := config.Default()
	cfg.Store.Dir = dir
	cfg.Backend = "relay"
	cfg.NATPMP.Enabled, cfg.PCP.Enabled = false, false
	ready := make(chan *portmap.Service, 1)
	o := Options{Logger: slog.New(slog.DiscardHandler), Detect: loopback, OpenNft: noNft,
		SSDPPort: ssdpPort, SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), groupPort),
		Ready: func(s *portmap.Service) { ready <- s }}
	edit(cfg, &o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, o) }()
	stop = func() { cancel(); <-done }
	select {
	case svc = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run ended early: %v", err)
	}
	return svc, ssdpPort, stop
}

// BOOTID.UPNP.ORG grows on every start (UDA 1.1 §1.2.2, COMPAT S8), also
// on starts within the same second, as a crash and a restart are: control
// points take an unchanged one for the same boot and keep stale state.
func TestBootIDGrowsOnEveryStart(t *testing.T) {
	dir := t.TempDir()
	var last uint64
	for i := range 3 {
		_, port, stop := upnpDaemonIn(t, "auto", dir)
		rs := search(t, port, "upnp:rootdevice")
		stop()
		if len(rs) == 0 {
			t.Fatalf("start %d: no SSDP answer", i)
		}
		id, err := strconv.ParseUint(rs[0].Header.Get("BOOTID.UPNP.ORG"), 10, 32)
		if err != nil {
			t.Fatalf("start %d: BOOTID.UPNP.ORG %q: %v", i, rs[0].Header.Get("BOOTID.UPNP.ORG"), err)
		}
		for _, r := range rs[1:] {
			if r.Header.Get("BOOTID.UPNP.ORG") != rs[0].Header.Get("BOOTID.UPNP.ORG") {
				t.Errorf("start %d: answers with BOOTIDs %q and %q", i, rs[0].Header.Get("BOOTID.UPNP.ORG"), r.Header.Get("BOOTID.UPNP.ORG"))
			}
		}
		if i > 0 && id <= last {
			t.Errorf("start %d: BOOTID %d, not above the previous start's %d", i, id, last)
		}
		last = id
	}
}

// search sends a unicast M-SEARCH from a LAN host and collects the
// answers until none comes for 500 ms (at most 32).
func search(t *testing.T, ssdpPort uint16, st string) []*http.Response {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: " + st + "\r\n\r\n"
	if _, err := c.WriteToUDPAddrPort([]byte(msg), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ssdpPort)); err != nil {
		t.Fatal(err)
	}
	var out []*http.Response
	buf := make([]byte, 2048)
	for range 32 {
		c.SetReadDeadline(clock.Real{}.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
		if err != nil {
			t.Fatalf("answer %q: %v", buf[:n], err)
		}
		out = append(out, resp)
	}
	return out
}

// COMPAT D7 (option b): a client that searched for a v1 type gets a
// LOCATION with the v1 description, whatever its user agent, so goupnp's
// IG1 client finds WANIPConnection:1.
func TestUPnPV1SearchGetsV1Description(t *testing.T) {
	_, ssdpPort := upnpDaemon(t, "auto")
	answers := search(t, ssdpPort, "urn:schemas-upnp-org:service:WANIPConnection:1")
	if len(answers) != 1 {
		t.Fatalf("got %d answers, want 1", len(answers))
	}
	loc, err := url.Parse(answers[0].Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := internetgateway1.NewWANIPConnection1ClientsByURL(loc)
	if err != nil || len(cs) != 1 {
		t.Fatalf("goupnp IG1 found %d WANIPConnection:1 clients at %v: %v", len(cs), loc, err)
	}
	if v2 := search(t, ssdpPort, "urn:schemas-upnp-org:service:WANIPConnection:2"); len(v2) != 1 ||
		strings.Contains(v2[0].Header.Get("Location"), "IGDV1") {
		t.Fatalf("a v2 search should get the plain description: %v", v2)
	}
}

// With mode = "v1" discovery advertises only what the description has.
func TestUPnPForcedV1AdvertisesOnlyV1(t *testing.T) {
	_, ssdpPort := upnpDaemon(t, "v1")
	answers := search(t, ssdpPort, "ssdp:all")
	if len(answers) == 0 {
		t.Fatal("no answer to ssdp:all")
	}
	for _, a := range answers {
		if st := a.Header.Get("ST"); strings.HasSuffix(st, ":2") {
			t.Errorf("v1 mode advertises %s", st)
		}
	}
	if got := search(t, ssdpPort, "urn:schemas-upnp-org:device:InternetGatewayDevice:2"); len(got) != 0 {
		t.Errorf("v1 mode answers a search for IGD:2")
	}
}

// A subscriber to WANIPConnection hears of a new external address in a
// NOTIFY (DESIGN: an address change triggers a GENA event; Windows shows
// it): the daemon wires the Service's changes to the publisher.
func TestExternalChangeNotifiesSubscribers(t *testing.T) {
	svc, ssdpPort := upnpDaemon(t, "auto")
	rs := search(t, ssdpPort, "upnp:rootdevice")
	if len(rs) == 0 {
		t.Fatal("no SSDP answer")
	}
	loc, err := url.Parse(rs[0].Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	host := netip.MustParseAddr("127.0.0.2")
	bodies := make(chan string, 16)
	cb, err := net.Listen("tcp", netip.AddrPortFrom(host, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == "NOTIFY" {
			select {
			case bodies <- string(b):
			default:
			}
		}
	})}
	go srv.Serve(cb)
	defer srv.Close()

	req, err := http.NewRequest("SUBSCRIBE", "http://"+loc.Host+description.WANIPConnectionEvent, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("CALLBACK", "<http://"+cb.Addr().String()+"/>")
	req.Header.Set("NT", "upnp:event")
	req.Header.Set("TIMEOUT", "Second-300")
	client := httpFrom(host)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("SID") == "" {
		t.Fatalf("SUBSCRIBE: %s, SID %q", resp.Status, resp.Header.Get("SID"))
	}
	want := func(what, value string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case b := <-bodies:
				if strings.Contains(b, "<ExternalIPAddress>"+value+"</ExternalIPAddress>") {
					return
				}
			case <-timeout:
				t.Fatalf("no NOTIFY with ExternalIPAddress %s (%s) within 5 s", value, what)
			}
		}
	}
	want("the initial event", "127.0.0.1")
	moved := netip.MustParseAddr("198.51.100.9")
	if err := svc.SetExternalAddr(context.Background(), moved); err != nil {
		t.Fatal(err)
	}
	want("after the change", moved.String())
}

// [upnp] rate_limit reaches the HTTP server: with 1 mapping change a
// second, a host may make 10 requests a second in bursts of 20. The clock
// does not move, so the 21st request is refused.
func TestUPnPRateLimitFromConfig(t *testing.T) {
	_, ssdpPort, stop := upnpDaemonWith(t, t.TempDir(), func(c *config.Config, o *Options) {
		c.UPnP.RateLimit = 1
		o.Clock = clocktest.NewFake(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
	})
	defer stop()
	rs := search(t, ssdpPort, "upnp:rootdevice")
	if len(rs) == 0 {
		t.Fatal("no SSDP answer")
	}
	loc := rs[0].Header.Get("Location")
	client := httpFrom(netip.MustParseAddr("127.0.0.2"))
	var codes []int
	for range 2*igd.RequestsPerChange + 1 {
		resp, err := client.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	last := len(codes) - 1
	if slices.ContainsFunc(codes[:last], func(c int) bool { return c != http.StatusOK }) || codes[last] != http.StatusServiceUnavailable {
		t.Fatalf("%d quick requests got %v, want 200s and then 503", len(codes), codes)
	}
}
