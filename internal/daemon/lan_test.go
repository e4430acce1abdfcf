package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/logtest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
)

func TestNextLAN(t *testing.T) {
	pfx := netip.MustParsePrefix
	iface := func(name string, index int, ps ...string) netif.Interface {
		ifc := netif.Interface{Name: name, Index: index}
		for _, p := range ps {
			ifc.Prefixes = append(ifc.Prefixes, pfx(p))
		}
		return ifc
	}
	det := func(serveWAN bool, lan ...netif.Interface) netif.Detected {
		d := netif.Detected{WAN: iface("wan0", 2, "198.51.100.2/24"), LAN: lan, ServeWAN: serveWAN}
		for _, ifc := range lan {
			for _, p := range ifc.Prefixes {
				if m := p.Masked(); !p.Addr().IsLinkLocalUnicast() && !slices.Contains(d.LANPrefixes, m) {
					d.LANPrefixes = append(d.LANPrefixes, m)
				}
			}
		}
		return d
	}
	brLan := iface("br-lan", 3, "192.168.1.1/24", "fe80::1/64")
	vip := netip.MustParseAddr("192.168.1.254")
	for _, tt := range []struct {
		name       string
		cur, found netif.Detected
		why        string   // "" keeps cur
		prefixes   []string // next's LAN prefixes, when it changes
	}{
		{name: "nothing moved", cur: det(false, brLan), found: det(false, brLan)},
		{name: "an address went away",
			cur: det(false, brLan, iface("lan2", 4, "10.0.0.1/24")), found: det(false, brLan, iface("lan2", 4))},
		{name: "a new link-local address", cur: det(false, brLan), found: det(false, iface("br-lan", 3, "192.168.1.1/24", "fe80::1/64", "fe80::2/64"))},
		{name: "the virtual address arrived (VRRP)", cur: det(false, brLan),
			found: det(false, iface("br-lan", 3, "192.168.1.1/24", "fe80::1/64", "192.168.1.254/24"))},
		{name: "a new address on the LAN",
			cur:   det(false, brLan),
			found: det(false, iface("br-lan", 3, "192.168.1.1/24", "fe80::1/64", "fd00:1::1/64")),
			why:   "new LAN address(es) [fd00:1::1]", prefixes: []string{"192.168.1.0/24", "fd00:1::/64"}},
		{name: "a new address while another went away: both prefixes stay",
			cur:   det(false, iface("br-lan", 3, "192.168.1.1/24", "fd00:1::1/64")),
			found: det(false, iface("br-lan", 3, "192.168.1.1/24", "fd00:2::1/64")),
			why:   "new LAN address(es) [fd00:2::1]", prefixes: []string{"192.168.1.0/24", "fd00:2::/64", "fd00:1::/64"}},
		{name: "a new private interface",
			cur: det(false, brLan), found: det(false, brLan, iface("docker0", 9, "172.17.0.1/16")),
			why: "new LAN address(es) [172.17.0.1]", prefixes: []string{"192.168.1.0/24", "172.17.0.0/16"}},
		{name: "the LAN interface created again",
			cur: det(false, brLan), found: det(false, iface("br-lan", 12, "192.168.1.1/24")),
			why: "new LAN address(es) [192.168.1.1]", prefixes: []string{"192.168.1.0/24"}},
		{name: "the LAN got its address: the WAN is no longer served",
			cur:   det(true, iface("wan0", 2, "10.9.0.2/24")),
			found: det(false, brLan),
			why:   "a LAN interface (br-lan) has an address: no longer serving wan wan0", prefixes: []string{"192.168.1.0/24"}},
		{name: "the LAN lost its address: the WAN is not served while running",
			cur: det(false, brLan), found: det(true, iface("wan0", 2, "10.9.0.2/24"))},
		{name: "a new default route", cur: det(false, brLan),
			found: func() netif.Detected {
				d := det(false, brLan, iface("lan2", 4, "10.0.0.1/24"))
				d.WAN = iface("wwan0", 7, "100.64.0.2/10")
				return d
			}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next, why := nextLAN(tt.cur, tt.found, []netip.Addr{vip})
			if why != tt.why {
				t.Fatalf("why %q, want %q", why, tt.why)
			}
			if why == "" {
				if !reflect.DeepEqual(next, tt.cur) {
					t.Fatalf("kept %+v, want cur %+v", next, tt.cur)
				}
				return
			}
			if !reflect.DeepEqual(next.LAN, tt.found.LAN) {
				t.Errorf("LAN %+v, want what was found, %+v", next.LAN, tt.found.LAN)
			}
			var got []string
			for _, p := range next.LANPrefixes {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != strings.Join(tt.prefixes, " ") {
				t.Errorf("LAN prefixes %v, want %v", got, tt.prefixes)
			}
		})
	}
}

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

// A router whose LAN bridge gets its address after berthd started: berthd
// served its (private) WAN meanwhile, Detect's fallback. Once the LAN has
// an address, berthd serves it without a restart, no longer answers on
// the WAN, and withdraws the mappings of the WAN's hosts.
func TestLANChangeServedWithoutRestart(t *testing.T) {
	lo := netif.Interface{Name: "lo", Index: 1, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}}
	// The WAN's network is 127.1.0.0/16, the LAN's 127.2.0.0/16.
	wanSide, lanSide := netip.MustParseAddr("127.1.0.1"), netip.MustParseAddr("127.2.0.1")
	wanHost, lanHost := netip.MustParseAddr("127.1.0.2"), netip.MustParseAddr("127.2.0.2")
	served := func(router netip.Addr, serveWAN bool) netif.Detected {
		ifc := netif.Interface{Name: "lo", Index: 1, Prefixes: []netip.Prefix{netip.PrefixFrom(router, 16)}}
		return netif.Detected{WAN: lo, ExternalAddr: lo.Prefixes[0].Addr(), LAN: []netif.Interface{ifc},
			LANPrefixes: []netip.Prefix{netip.PrefixFrom(router, 16).Masked()}, ServeWAN: serveWAN}
	}
	var mu sync.Mutex
	now := served(wanSide, true)
	detect := func(string, []string) (netif.Detected, error) {
		mu.Lock()
		defer mu.Unlock()
		return now, nil
	}
	changed := make(chan func(), 1)
	watch := func(_ context.Context, f func(), _ *slog.Logger) error { changed <- f; return nil }

	pmpPort, ssdpPort := freeUDPPort(t), freeUDPPort(t)
	cfg := config.Default()
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	cfg.Backend = "relay"
	cfg.ExternalAddr = lo.Prefixes[0].Addr() // Addrs' loopback address is no external one
	// SIGHUP brings a policy that keeps port 4001 back: the policy for
	// the changed LAN must be built from it, not from the first one.
	reloaded := *cfg
	rules, err := policy.ParseRules("deny 4001 0.0.0.0/0 0-65535\nallow 1024-65535 0.0.0.0/0 1024-65535")
	if err != nil {
		t.Fatal(err)
	}
	reloaded.Policy.Rules = rules
	reload := make(chan struct{})
	log := &logtest.Buffer{}
	ready := make(chan *portmap.Service, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(log, nil)), Detect: detect, OpenNft: noNft,
			WatchAddrs: watch, Addrs: func(string) ([]netip.Prefix, error) { return lo.Prefixes, nil },
			Reload: reload, Reread: func() (*config.Config, error) { return &reloaded, nil },
			PortControlPort: pmpPort, SSDPPort: ssdpPort,
			SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t)),
			Ready:     func(s *portmap.Service) { ready <- s }})
	}()
	var svc *portmap.Service
	select {
	case svc = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	}
	defer func() { cancel(); <-done }()

	mapReq := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 4000, SuggestedPort: 4000, Lifetime: 600}
	if resp, err := askNATPMP(t, wanHost, netip.AddrPortFrom(wanSide, pmpPort), mapReq); err != nil || resp.Result != natpmp.Success {
		t.Fatalf("a host on the served WAN maps: %+v, %v", resp, err)
	}
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, pmpPort), mapReq); err == nil {
		t.Fatalf("the LAN address answers before it is served: %+v", resp)
	}

	reload <- struct{}{} // Run applies it before it looks at the addresses
	mu.Lock()
	now = served(lanSide, false)
	mu.Unlock()
	(<-changed)()

	if !waitFor(func() bool {
		resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, pmpPort), mapReq)
		return err == nil && resp.Result == natpmp.Success
	}) {
		t.Fatalf("the LAN is not served after its address arrived; log:\n%s", log)
	}
	if !waitFor(func() bool { return len(svc.List(mapping.Filter{Client: wanHost})) == 0 }) {
		t.Errorf("the WAN host's mapping was kept: %+v", svc.List(mapping.Filter{Client: wanHost}))
	}
	if resp, err := askNATPMP(t, wanHost, netip.AddrPortFrom(wanSide, pmpPort), mapReq); err == nil {
		t.Errorf("the WAN still answers NAT-PMP: %+v", resp)
	}
	kept := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 4001, SuggestedPort: 4001, Lifetime: 600}
	if resp, err := askNATPMP(t, lanHost, netip.AddrPortFrom(lanSide, pmpPort), kept); err != nil || resp.ExternalPort == 4001 {
		t.Errorf("port 4001, which the reloaded policy denies, after the LAN change: %+v, %v", resp, err)
	}
	// SSDP answers on the LAN address, with a LOCATION there.
	search := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n" +
		"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"
	b, from := exchangeUDPFrom(t, lanHost, netip.AddrPortFrom(lanSide, ssdpPort), []byte(search))
	if from.Addr() != lanSide || !strings.Contains(string(b), "http://"+lanSide.String()+":") {
		t.Errorf("SSDP answer from %v:\n%s", from, b)
	}
	if !strings.Contains(log.String(), "no longer serving wan lo") {
		t.Errorf("the log does not say why the LAN changed:\n%s", log)
	}
}
