package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/logtest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
)

// askNATPMP sends req from the host from to the NAT-PMP server at to and
// returns the answer; an error when the server's port refuses the packet
// (nothing bound there) or nothing answers within 5 s.
func askNATPMP(t *testing.T, from netip.Addr, to netip.AddrPort, req natpmp.Request) (natpmp.Response, error) {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: from.AsSlice()}, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req.AppendTo(nil)); err != nil {
		return natpmp.Response{}, err
	}
	c.SetReadDeadline(clock.Real{}.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return natpmp.Response{}, err
	}
	return natpmp.ParseResponse(buf[:n])
}

// loWAN is the WAN of the LAN-change tests: loopback, external address
// 127.0.0.1.
var loWAN = netif.Interface{Name: "lo", Index: 1, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}}

// lanOn is what Detect finds when the LAN is loopback with the router's
// addresses ps; serveWAN marks Detect's fallback to the WAN.
func lanOn(serveWAN bool, ps ...string) netif.Detected {
	ifc := netif.Interface{Name: "lo", Index: 1}
	d := netif.Detected{WAN: loWAN, ExternalAddr: loWAN.Prefixes[0].Addr(), ServeWAN: serveWAN}
	for _, s := range ps {
		p := netip.MustParsePrefix(s)
		ifc.Prefixes = append(ifc.Prefixes, p)
		if p.Addr().Is4() {
			d.LANPrefixes = append(d.LANPrefixes, p.Masked())
		}
	}
	d.LAN = []netif.Interface{ifc}
	return d
}

// lanRig runs the daemon with every responder on, a Detect that returns
// what the test sets, and an address watch the test triggers.
type lanRig struct {
	svc               *portmap.Service
	log               *logtest.Buffer
	pmpPort, ssdpPort uint16
	reload            chan struct{}
	mu                sync.Mutex
	now               netif.Detected
	changed           chan func()
	handled           chan struct{}
	done              chan error
	stop              func() // stops the daemon; Cleanup calls it too
}

// newLANRig starts the daemon on first; setup, when not nil, adjusts the
// configuration and the options (Reread, Clock).
func newLANRig(t *testing.T, first netif.Detected, setup func(*config.Config, *Options)) *lanRig {
	t.Helper()
	r := &lanRig{log: &logtest.Buffer{}, pmpPort: freeUDPPort(t), ssdpPort: freeUDPPort(t), reload: make(chan struct{}),
		now: first, changed: make(chan func(), 1), handled: make(chan struct{}, 1), done: make(chan error, 1)}
	cfg := config.Default()
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	cfg.Backend = "relay"
	cfg.ExternalAddr = loWAN.Prefixes[0].Addr() // Addrs' loopback address is no external one
	ready := make(chan *portmap.Service, 1)
	o := Options{Logger: slog.New(slog.NewTextHandler(r.log, nil)), OpenNft: noNft,
		Detect: func(string, []string) (netif.Detected, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.now, nil
		},
		WatchAddrs:      func(_ context.Context, f func(), _ *slog.Logger) error { r.changed <- f; return nil },
		Addrs:           func(string) ([]netip.Prefix, error) { return loWAN.Prefixes, nil },
		AddrsHandled:    func() { r.handled <- struct{}{} },
		Reload:          r.reload,
		PortControlPort: r.pmpPort, SSDPPort: r.ssdpPort,
		SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t)),
		Ready:     func(s *portmap.Service) { ready <- s }}
	if setup != nil {
		setup(cfg, &o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- Run(ctx, cfg, o) }()
	timeout := time.After(30 * time.Second)
	select {
	case r.svc = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("Run ended early: %v", err)
	case <-timeout:
		cancel()
		t.Fatalf("Run did not serve; log:\n%s", r.log)
	}
	r.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(r.stop)
	// The watch starts after Ready: wait for it, and keep it for change.
	select {
	case watch := <-r.changed:
		r.changed <- watch
	case <-timeout:
		t.Fatal("the address watch did not start")
	}
	return r
}

// change makes Detect find d and has the daemon look, then waits until it
// has acted.
func (r *lanRig) change(t *testing.T, d netif.Detected) {
	t.Helper()
	r.mu.Lock()
	r.now = d
	r.mu.Unlock()
	watch := <-r.changed
	r.changed <- watch
	watch()
	r.wait(t)
}

// wait waits until the daemon has acted on a change or a retry.
func (r *lanRig) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.handled:
	case err := <-r.done:
		t.Fatalf("Run ended: %v; log:\n%s", err, r.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("the address change was not handled; log:\n%s", r.log)
	}
}

// search sends an SSDP search from the host from to the router address to
// and returns the answer.
func (r *lanRig) search(t *testing.T, from, to netip.Addr) string {
	t.Helper()
	msg := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n" +
		"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"
	b, src := exchangeUDPFrom(t, from, netip.AddrPortFrom(to, r.ssdpPort), []byte(msg))
	if src.Addr() != to || !strings.Contains(string(b), "http://"+to.String()+":") {
		t.Errorf("SSDP answer from %v to a search sent to %v:\n%s", src, to, b)
	}
	return string(b)
}

// A router whose LAN bridge gets its address after berthd started: berthd
// served its (private) WAN meanwhile, Detect's fallback. Once the LAN has
// an address, berthd serves it without a restart, no longer answers on
// the WAN, and withdraws the mappings of the WAN's hosts.
func TestLANChangeServedWithoutRestart(t *testing.T) {
	// The WAN's network is 127.1.0.0/16, the LAN's 127.2.0.0/16.
	wanSide, lanSide := netip.MustParseAddr("127.1.0.1"), netip.MustParseAddr("127.2.0.1")
	wanHost, lanHost := netip.MustParseAddr("127.1.0.2"), netip.MustParseAddr("127.2.0.2")
	// SIGHUP brings a policy that keeps port 4001 back: the policy for
	// the changed LAN must be built from it, not from the first one.
	reloaded := config.Default()
	rules, err := policy.ParseRules("deny 4001 0.0.0.0/0 0-65535\nallow 1024-65535 0.0.0.0/0 1024-65535")
	if err != nil {
		t.Fatal(err)
	}
	reloaded.Policy.Rules = rules
	// A static forward into the WAN's network no longer fits once the
	// LAN is served: berthd says so.
	nas := []config.Forward{{Name: "nas", Proto: mapping.TCP, External: 4500, Internal: netip.MustParseAddrPort("127.1.0.9:80")}}
	reloaded.Forwards = nas
	r := newLANRig(t, lanOn(true, "127.1.0.1/16"), func(c *config.Config, o *Options) {
		c.Forwards = nas
		o.Reread = func() (*config.Config, error) { return reloaded, nil }
	})

	mapReq := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 4000, SuggestedPort: 4000, Lifetime: 600}
	if resp, err := askNATPMP(t, wanHost, netip.AddrPortFrom(wanSide, r.pmpPort), mapReq); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("a host on the served WAN maps: %+v, %v", resp, err)
	}
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, r.pmpPort), mapReq); err == nil {
		t.Fatalf("the LAN address answers before it is served: %+v", resp)
	}

	r.reload <- struct{}{} // Run applies it before it looks at the addresses
	r.change(t, lanOn(false, "127.2.0.1/16"))
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, r.pmpPort), mapReq); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("the LAN after its address arrived: %+v, %v; log:\n%s", resp, err, r.log)
	}
	if ms := r.svc.List(mapping.Filter{Client: wanHost}); len(ms) > 0 {
		t.Errorf("the WAN host's mapping was kept: %+v", ms)
	}
	if resp, err := askNATPMP(t, wanHost, netip.AddrPortFrom(wanSide, r.pmpPort), mapReq); err == nil {
		t.Errorf("the WAN still answers NAT-PMP: %+v", resp)
	}
	kept := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 4001, SuggestedPort: 4001, Lifetime: 600}
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, r.pmpPort), kept); err != nil || resp.ExternalPort == 4001 {
		t.Errorf("port 4001, which the reloaded policy denies, after the LAN change: %+v, %v", resp, err)
	}
	r.search(t, lanHost, lanSide)
	if !strings.Contains(r.log.String(), "no longer serving wan lo") {
		t.Errorf("the log does not say why the LAN changed:\n%s", r.log)
	}
	if n := strings.Count(r.log.String(), "static forwards no longer fit"); n != 1 {
		t.Errorf("the misfit forward said %d times, want once; log:\n%s", n, r.log)
	}
}

// A LAN that loses its IPv4 address and gains an IPv6 one: UPnP, which
// serves IPv4 only, pauses instead of stopping berthd, and serves again
// with a new BOOTID once the LAN has an IPv4 address again, within the
// same second and without a lease store to record the last one.
func TestLANWithoutIPv4PausesUPnP(t *testing.T) {
	needIPv6Loopback(t)
	router, host := netip.MustParseAddr("127.3.0.1"), netip.MustParseAddr("127.3.0.2")
	r := newLANRig(t, lanOn(false, "127.3.0.1/16"), func(c *config.Config, _ *Options) { c.Store.Enabled = false })
	first := r.search(t, host, router)

	r.change(t, lanOn(false, "::1/128"))
	if !strings.Contains(r.log.String(), "UPnP IGD paused: no IPv4 LAN address") {
		t.Fatalf("no word of UPnP pausing; log:\n%s", r.log)
	}
	r.change(t, lanOn(false, "127.3.0.1/16", "::1/128"))
	again := r.search(t, host, router)
	bootID := func(answer string) uint64 {
		for _, l := range strings.Split(answer, "\r\n") {
			if v, ok := strings.CutPrefix(strings.ToUpper(l), "BOOTID.UPNP.ORG:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
				return n
			}
		}
		return 0
	}
	if b1, b2 := bootID(first), bootID(again); b1 == 0 || b2 <= b1 {
		t.Errorf("BOOTID %d before and %d after the LAN changed: want a larger one", b1, b2)
	}
	if resp, err := askNATPMP(t, host, netip.AddrPortFrom(router, r.pmpPort), natpmp.Request{Op: natpmp.OpAddress}); err != nil || resp.Result != natpmp.Success {
		t.Errorf("NAT-PMP after the LAN changed twice: %+v, %v", resp, err)
	}
}

// Another program holds the NAT-PMP/PCP port on a new LAN address: berthd
// keeps serving the LAN it served, says why, and serves the new address
// too once the retry timer finds the port free.
func TestLANStartRetried(t *testing.T) {
	clk := clocktest.NewFake(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
	r := newLANRig(t, lanOn(false, "127.3.0.1/16"), func(_ *config.Config, o *Options) { o.Clock = clk })
	oldSide, newSide := netip.MustParseAddr("127.3.0.1"), netip.MustParseAddr("127.4.0.1")
	oldHost, newHost := netip.MustParseAddr("127.3.0.2"), netip.MustParseAddr("127.4.0.2")
	blocker, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(newSide, r.pmpPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	addr := natpmp.Request{Op: natpmp.OpAddress}

	r.change(t, lanOn(false, "127.3.0.1/16", "127.4.0.1/16"))
	if !strings.Contains(r.log.String(), "cannot serve the changed LAN") {
		t.Errorf("the log does not say why the new address is not served:\n%s", r.log)
	}
	if resp, err := askNATPMP(t, oldHost, netip.AddrPortFrom(oldSide, r.pmpPort), addr); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("the LAN served before, while the new address fails: %+v, %v; log:\n%s", resp, err, r.log)
	}
	blocker.Close()
	clk.Advance(retryFirst)
	r.wait(t)
	if resp, err := askNATPMP(t, newHost, netip.AddrPortFrom(newSide, r.pmpPort), addr); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("the new address after the retry: %+v, %v; log:\n%s", resp, err, r.log)
	}
}

// needIPv6Loopback skips the test without IPv6 on loopback, or fails it
// under BERTH_E2E=1.
func needIPv6Loopback(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		if os.Getenv("BERTH_E2E") == "1" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skip("no IPv6 loopback; BERTH_E2E=1 makes this a failure:", err)
	}
	c.Close()
}

// A LAN without IPv4 pauses UPnP only, at a start as after a change, and
// only that: any other failure of UPnP is a failed start.
func TestUPnPPausesOnlyWithoutIPv4(t *testing.T) {
	needIPv6Loopback(t)
	clk := clocktest.NewFake(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clk, External: loWAN.Prefixes[0].Addr()})
	defer svc.Close()
	cfg := config.Default()
	o := Options{PortControlPort: freeUDPPort(t), SSDPPort: freeUDPPort(t),
		SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t))}
	ctx := context.Background()
	v6only := lanOn(false, "::1/128")
	r, err := startResponders(ctx, cfg, v6only, svc, clk, 1, nil, false, o, discard)
	if err != nil || r.up != nil || r.pc == nil {
		t.Fatalf("start on a LAN without IPv4: %+v, %v; want NAT-PMP/PCP without UPnP", r, err)
	}
	r.close()
	r, err = startResponders(ctx, cfg, v6only, svc, clk, 2, nil, true, o, discard)
	if err != nil || r.up != nil || r.pc == nil {
		t.Fatalf("after a change, a LAN without IPv4: %+v, %v; want NAT-PMP/PCP without UPnP", r, err)
	}
	r.close()
	// The IGD's fixed HTTP port is taken on the LAN address.
	taken, err := net.Listen("tcp4", "127.5.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	o.UPnPHTTPPort = uint16(taken.Addr().(*net.TCPAddr).Port)
	for i, again := range []bool{false, true} {
		if r, err := startResponders(ctx, cfg, lanOn(false, "127.5.0.1/16"), svc, clk, uint32(3+i), nil, again, o, discard); err == nil {
			r.close()
			t.Errorf("UPnP's port taken (after a change: %v): started; want an error", again)
		}
	}
}

// berthd started while the LAN has an IPv6 address but no IPv4 address
// yet starts (NAT-PMP/PCP: TestUPnPPausesOnlyWithoutIPv4), pauses UPnP,
// and serves UPnP once the IPv4 address arrives.
func TestStartOnALANWithoutIPv4(t *testing.T) {
	needIPv6Loopback(t)
	router, host := netip.MustParseAddr("127.3.0.1"), netip.MustParseAddr("127.3.0.2")
	r := newLANRig(t, lanOn(false, "::1/128"), nil)
	if l := r.log.String(); !strings.Contains(l, "UPnP IGD paused: no IPv4 LAN address") || !strings.Contains(l, "upnp=paused") {
		t.Fatalf("no word of UPnP pausing at the start; log:\n%s", r.log)
	}
	r.change(t, lanOn(false, "127.3.0.1/16", "::1/128"))
	r.search(t, host, router)
}

// storeLease runs the daemon once on the LAN of router (a /16), has host
// map UDP port over NAT-PMP for an hour, and stops it: the lease stays in
// the store that setup names.
func storeLease(t *testing.T, router, host netip.Addr, port uint16, setup func(*config.Config, *Options)) {
	t.Helper()
	r := newLANRig(t, lanOn(false, netip.PrefixFrom(router, 16).String()), setup)
	req := natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: port, SuggestedPort: port, Lifetime: 3600}
	if resp, err := askNATPMP(t, host, netip.AddrPortFrom(router, r.pmpPort), req); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("map: %+v, %v", resp, err)
	}
	r.stop()
}

// berthd restarts before the LAN has an address and serves its WAN
// meanwhile: the stored leases of LAN hosts are not dropped, and come
// back when the LAN is served.
func TestLeasesWaitForTheLAN(t *testing.T) {
	dir := t.TempDir()
	inDir := func(c *config.Config, _ *Options) { c.Store.Dir = dir }
	lanHost := netip.MustParseAddr("127.2.0.2")
	storeLease(t, netip.MustParseAddr("127.2.0.1"), lanHost, 4100, inDir)

	r := newLANRig(t, lanOn(true, "127.1.0.1/16"), inDir)
	if n := r.svc.Len(); n != 0 || !strings.Contains(r.log.String(), "kept_for_the_lan=1") {
		t.Fatalf("serving the WAN: %d mappings, want none, and the lease kept; log:\n%s", n, r.log)
	}
	r.change(t, lanOn(false, "127.2.0.1/16"))
	if ms := r.svc.List(mapping.Filter{Client: lanHost}); len(ms) != 1 || ms[0].Internal.Port() != 4100 {
		t.Fatalf("the LAN host's lease once the LAN is served: %v; log:\n%s", ms, r.log)
	}
}

// berthd starts before its LAN (named in the configuration) has an
// address, with a static forward and a virtual gateway address into it:
// it answers nothing and keeps the stored leases, then serves the LAN,
// restores them, installs the forward and serves the virtual address once
// the address arrives.
func TestStartBeforeTheLANHasAnAddress(t *testing.T) {
	dir := t.TempDir()
	vip := netip.MustParseAddr("127.6.0.254")
	inDir := func(c *config.Config, _ *Options) {
		c.Store.Dir = dir
		c.Forwards = []config.Forward{{Name: "nas", Proto: mapping.TCP, External: 4443, Internal: netip.MustParseAddrPort("127.6.0.9:443")}}
		c.VirtualAddrs = []netip.Addr{vip}
	}
	lanSide, lanHost := netip.MustParseAddr("127.6.0.1"), netip.MustParseAddr("127.6.0.2")
	storeLease(t, lanSide, lanHost, 4200, inDir)

	r := newLANRig(t, lanOn(false), inDir)
	if n := r.svc.Len(); n != 0 || !strings.Contains(r.log.String(), "the LAN has no address yet") {
		t.Fatalf("without a LAN address: %d mappings, want none, and a word of waiting; log:\n%s", n, r.log)
	}
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, r.pmpPort), natpmp.Request{Op: natpmp.OpAddress}); err == nil {
		t.Fatalf("answered before the LAN has an address: %+v", resp)
	}
	r.change(t, lanOn(false, "127.6.0.1/16"))
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, r.pmpPort), natpmp.Request{Op: natpmp.OpAddress}); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("once the LAN has its address: %+v, %v; log:\n%s", resp, err, r.log)
	}
	if ms := r.svc.List(mapping.Filter{Client: lanHost}); len(ms) != 1 || ms[0].Internal.Port() != 4200 {
		t.Fatalf("the stored lease once the LAN is served: %v; log:\n%s", ms, r.log)
	}
	if ms := r.svc.List(mapping.Filter{Kind: mapping.KindStatic}); len(ms) != 1 || ms[0].External.Port() != 4443 {
		t.Fatalf("the static forward once the LAN is served: %v; log:\n%s", ms, r.log)
	}
	r.search(t, lanHost, lanSide) // UPnP too
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(vip, r.pmpPort), natpmp.Request{Op: natpmp.OpAddress}); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("the virtual address once the LAN is served: %+v, %v", resp, err)
	}
}

// While the LAN has no address: a forward that does not fit the LAN
// when it arrives waits for a SIGHUP that mends it, and a virtual address
// that no prefix holds yet does not keep another one from being served.
func TestWaitingForwardsAndVirtualAddresses(t *testing.T) {
	lanHost := netip.MustParseAddr("127.6.0.2")
	vip, guestVIP := netip.MustParseAddr("127.6.0.254"), netip.MustParseAddr("127.7.0.254")
	forward := func(internal string) []config.Forward {
		return []config.Forward{{Name: "nas", Proto: mapping.TCP, External: 4443, Internal: netip.MustParseAddrPort(internal)}}
	}
	mended := config.Default()
	mended.Forwards = forward("127.6.0.9:443")
	reloads := make(chan struct{})
	r := newLANRig(t, lanOn(false), func(c *config.Config, o *Options) {
		c.Forwards = forward("10.99.0.9:443") // in no LAN prefix
		c.VirtualAddrs = []netip.Addr{vip, guestVIP}
		o.Reread = func() (*config.Config, error) { reloads <- struct{}{}; return mended, nil }
	})
	r.change(t, lanOn(false, "127.6.0.1/16"))
	if ms := r.svc.List(mapping.Filter{Kind: mapping.KindStatic}); len(ms) != 0 || !strings.Contains(r.log.String(), "static forwards not installed") {
		t.Fatalf("a forward outside the LAN: %v; log:\n%s", ms, r.log)
	}
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(vip, r.pmpPort), natpmp.Request{Op: natpmp.OpAddress}); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("the virtual address a LAN prefix holds: %+v, %v", resp, err)
	}
	r.reload <- struct{}{}
	<-reloads
	// Run handles the reload before it looks at the addresses again.
	r.change(t, lanOn(false, "127.6.0.1/16"))
	if ms := r.svc.List(mapping.Filter{Kind: mapping.KindStatic}); len(ms) != 1 || ms[0].Internal.Addr() != netip.MustParseAddr("127.6.0.9") {
		t.Fatalf("the forward after a SIGHUP mended it: %v; log:\n%s", ms, r.log)
	}
}
