package netif

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fakeHost describes a host for detect.
type fakeHost struct {
	links    []link
	linksErr error
	route4   int
	route6   int
	routeErr error
	gateway  string
	gwErr    error
}

func (h fakeHost) system() system {
	return system{
		links: func() ([]link, error) { return h.links, h.linksErr },
		defaultRoute: func(v6 bool) (int, error) {
			if v6 {
				return h.route6, h.routeErr
			}
			return h.route4, h.routeErr
		},
		gateway: func() (netip.Addr, error) {
			if h.gateway == "" {
				return netip.Addr{}, h.gwErr
			}
			return netip.MustParseAddr(h.gateway), h.gwErr
		},
	}
}

// mk builds an up, non-loopback link.
func mk(index int, name string, prefixes ...string) link {
	l := link{Interface: Interface{Name: name, Index: index}, Up: true}
	for _, p := range prefixes {
		l.Prefixes = append(l.Prefixes, netip.MustParsePrefix(p))
	}
	return l
}

func down(l link) link { l.Up = false; return l }

func loopback() link {
	l := mk(1, "lo", "127.0.0.1/8", "::1/128")
	l.Loopback = true
	return l
}

var (
	eth0  = mk(2, "eth0", "192.0.2.2/24", "fd00::2/64", "fe80::fc:ff:fe00:1/64") // this test machine
	brLan = mk(3, "br-lan", "192.168.1.1/24", "fd12:3456::1/64", "fe80::1/64")
	wlan  = mk(4, "wlan0", "10.0.0.1/8")
	cgn   = mk(5, "cgn0", "100.64.1.1/10")
	ppp   = mk(6, "ppp0", "203.0.113.9/32")
	pub6  = mk(7, "wan6", "fd00:9::2/64", "2001:db8::2/64")
	ula6  = mk(8, "ula6", "fe80::2/64", "fd00:8::2/64")
	noip  = mk(9, "ifb0")
	// An address the internet reaches (never used for traffic here).
	pubWAN = mk(13, "eth1", "84.17.3.2/24", "fe80::13/64")
	cgnWAN = mk(14, "wwan0", "100.72.9.4/10")
	// Private IPv4, but a global IPv6 address.
	dualWAN = mk(15, "eth2", "10.1.2.3/24", "2a02:8070::3/64")
	privWAN = mk(16, "eth3", "192.168.178.20/24")
)

func names(is []Interface) []string {
	var out []string
	for _, i := range is {
		out = append(out, i.Name)
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name      string
		host      fakeHost
		wan       string
		lan       []string
		wantWAN   string
		wantExt   string // "" = zero
		wantLAN   []string
		wantPfx   []netip.Prefix
		serveWAN  bool
		wantNotes []string // substrings, each in some note
	}{
		{
			name:    "this machine: one interface serves itself",
			host:    fakeHost{links: []link{loopback(), down(noip), eth0}, route4: 2},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"eth0"},
			wantPfx: prefixes("192.0.2.0/24", "fd00::/64"), serveWAN: true,
			wantNotes: []string{"wan eth0: interface of the IPv4 default route", "serving wan eth0 itself"},
		},
		{
			name:    "router: private interfaces are the lan",
			host:    fakeHost{links: []link{loopback(), eth0, brLan, down(mk(10, "br-guest", "192.168.2.1/24")), wlan, cgn, noip}, route4: 2},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"br-lan", "wlan0"},
			wantPfx: prefixes("192.168.1.0/24", "fd12:3456::/64", "10.0.0.0/8"),
			// An LTE link: not the LAN.
			wantNotes: []string{"lan br-lan: up, with private address 192.168.1.1/24", "cgn0 not served: its address 100.64.1.1/10 is CGNAT's shared space"},
		},
		{
			name:    "ipv6 default route when there is no ipv4 one",
			host:    fakeHost{links: []link{pub6, brLan}, route6: 7},
			wantWAN: "wan6", wantExt: "2001:db8::2", wantLAN: []string{"br-lan"},
			wantPfx:   prefixes("192.168.1.0/24", "fd12:3456::/64"),
			wantNotes: []string{"wan wan6: interface of the IPv6 default route"},
		},
		{
			name:    "ipv4 route wins over ipv6",
			host:    fakeHost{links: []link{pub6, ppp, brLan}, route4: 6, route6: 7},
			wantWAN: "ppp0", wantExt: "203.0.113.9", wantLAN: []string{"wan6", "br-lan"},
			wantPfx: prefixes("fd00:9::/64", "2001:db8::/64", "192.168.1.0/24", "fd12:3456::/64"),
		},
		{
			name:    "gateway fallback",
			host:    fakeHost{links: []link{brLan, eth0}, gateway: "192.0.2.1"},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"br-lan"},
			wantPfx:   prefixes("192.168.1.0/24", "fd12:3456::/64"),
			wantNotes: []string{"wan eth0: on the subnet of the default gateway 192.0.2.1 (no IPv4 default route; no IPv6 default route)"},
		},
		{
			name:    "gateway fallback after route errors",
			host:    fakeHost{links: []link{eth0}, routeErr: errors.New("netlink: permission denied"), gateway: "192.0.2.1"},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"eth0"}, serveWAN: true,
			wantPfx:   prefixes("192.0.2.0/24", "fd00::/64"),
			wantNotes: []string{"IPv4 routes: netlink: permission denied"},
		},
		{
			name: "named wan and lan",
			host: fakeHost{links: []link{eth0, brLan, down(wlan)}, route4: 3},
			wan:  "eth0", lan: []string{"wlan0"},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"wlan0"},
			wantPfx:   prefixes("10.0.0.0/8"),
			wantNotes: []string{"wan eth0: named in the configuration", "lan wlan0: named in the configuration", "lan wlan0 is down"},
		},
		{
			name: "named lan is the wan",
			host: fakeHost{links: []link{eth0}},
			wan:  "eth0", lan: []string{"eth0"},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"eth0"}, serveWAN: true,
			wantPfx:   prefixes("192.0.2.0/24", "fd00::/64"),
			wantNotes: []string{"it is also the wan interface"},
		},
		{
			name:    "wan without global address",
			host:    fakeHost{links: []link{down(mk(2, "eth0", "fe80::1/64")), brLan}, route4: 2},
			wantWAN: "eth0", wantLAN: []string{"br-lan"},
			wantPfx:   prefixes("192.168.1.0/24", "fd12:3456::/64"),
			wantNotes: []string{"wan eth0 is down", "external address unknown"},
		},
		{
			name:    "ula external address as a last resort",
			host:    fakeHost{links: []link{ula6}, route6: 8},
			wantWAN: "ula6", wantExt: "fd00:8::2", wantLAN: []string{"ula6"}, serveWAN: true,
			wantPfx: prefixes("fd00:8::/64"),
		},
		{
			name:    "private wan alone serves itself",
			host:    fakeHost{links: []link{loopback(), privWAN}, route4: 16},
			wantWAN: "eth3", wantExt: "192.168.178.20", wantLAN: []string{"eth3"}, serveWAN: true,
			wantPfx:   prefixes("192.168.178.0/24"),
			wantNotes: []string{"serving wan eth3 itself"},
		},
		{
			// A home machine: private IPv4, a global IPv6 address from
			// SLAAC. The IPv6 prefix is not served, and no socket binds
			// its address.
			name:    "private wan with a global ipv6 address",
			host:    fakeHost{links: []link{loopback(), dualWAN}, route4: 15},
			wantWAN: "eth2", wantExt: "10.1.2.3", wantLAN: []string{"eth2"}, serveWAN: true,
			wantPfx:   prefixes("10.1.2.0/24"),
			wantNotes: []string{"serving wan eth2 itself", "not serving [2a02:8070::3/64] of wan eth2: the internet reaches them"},
		},
		{
			name:    "public wan served when lan names it",
			host:    fakeHost{links: []link{loopback(), pubWAN}, route4: 13},
			lan:     []string{"eth1"},
			wantWAN: "eth1", wantExt: "84.17.3.2", wantLAN: []string{"eth1"}, serveWAN: true,
			wantPfx:   prefixes("84.17.3.0/24"),
			wantNotes: []string{"it is also the wan interface"},
		},
		{
			name:    "public wan with a lan beside it",
			host:    fakeHost{links: []link{loopback(), pubWAN, brLan}, route4: 13},
			wantWAN: "eth1", wantExt: "84.17.3.2", wantLAN: []string{"br-lan"},
			wantPfx: prefixes("192.168.1.0/24", "fd12:3456::/64"),
		},
		{
			name:    "lan without usable prefix",
			host:    fakeHost{links: []link{eth0, mk(12, "ll0", "fe80::3/64")}, route4: 2},
			lan:     []string{"ll0"},
			wantWAN: "eth0", wantExt: "192.0.2.2", wantLAN: []string{"ll0"},
			wantNotes: []string{"no usable prefix"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := detect(tt.host.system(), tt.wan, tt.lan)
			if err != nil {
				t.Fatalf("detect: %v", err)
			}
			if d.WAN.Name != tt.wantWAN {
				t.Errorf("got wan %q, want %q", d.WAN.Name, tt.wantWAN)
			}
			var wantExt netip.Addr
			if tt.wantExt != "" {
				wantExt = netip.MustParseAddr(tt.wantExt)
			}
			if d.ExternalAddr != wantExt {
				t.Errorf("got external %v, want %v", d.ExternalAddr, wantExt)
			}
			if got := names(d.LAN); !slices.Equal(got, tt.wantLAN) {
				t.Errorf("got lan %q, want %q", got, tt.wantLAN)
			}
			if !slices.Equal(d.LANPrefixes, tt.wantPfx) {
				t.Errorf("got lan prefixes %v, want %v", d.LANPrefixes, tt.wantPfx)
			}
			if d.ServeWAN != tt.serveWAN {
				t.Errorf("got ServeWAN %t, want %t", d.ServeWAN, tt.serveWAN)
			}
			for _, w := range tt.wantNotes {
				if !slices.ContainsFunc(d.Notes, func(n string) bool { return strings.Contains(n, w) }) {
					t.Errorf("no note contains %q; notes:\n%s", w, strings.Join(d.Notes, "\n"))
				}
			}
		})
	}
}

func TestDetectErrors(t *testing.T) {
	tests := []struct {
		name  string
		host  fakeHost
		wan   string
		lan   []string
		want  string
		noWAN bool
	}{
		{"links fail", fakeHost{linksErr: errors.New("boom")}, "", nil, "netif: list interfaces: boom", false},
		{"named wan missing", fakeHost{links: []link{eth0}}, "ppp0", nil, `netif: wan interface "ppp0" not found`, false},
		{"named lan missing", fakeHost{links: []link{eth0}, route4: 2}, "", []string{"br0"}, `netif: lan interface "br0" not found`, false},
		{"nothing found", fakeHost{links: []link{eth0}, gwErr: errors.New("no gateway")}, "", nil,
			"netif: no wan interface found (no IPv4 default route; no IPv6 default route; gateway: no gateway); set wan", true},
		{"route to unknown index", fakeHost{links: []link{eth0}, route4: 42}, "", nil,
			"IPv4 default route via unknown interface index 42", true},
		{"gateway off every subnet", fakeHost{links: []link{eth0}, gateway: "198.51.100.1"}, "", nil,
			"no interface on the subnet of the gateway 198.51.100.1", true},
		// Nothing answers on the WAN (DESIGN) unless lan says so.
		{"public wan alone", fakeHost{links: []link{loopback(), down(brLan), pubWAN}, route4: 13}, "", nil,
			"wan eth1 has only addresses the internet (or, for CGNAT, the ISP's other customers) reaches, such as 84.17.3.2/24, " +
				"and berth does not serve those unless told to: set lan to the interfaces to serve (-lan eth1 serves the wan itself)", false},
		{"cgnat wan alone", fakeHost{links: []link{cgnWAN}, route4: 14}, "", nil, "wan wwan0 has only addresses the internet (or, for CGNAT, the ISP's other customers) reaches, such as 100.72.9.4/10", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := detect(tt.host.system(), tt.wan, tt.lan)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if errors.Is(err, ErrNoWAN) != tt.noWAN {
				t.Errorf("errors.Is(err, ErrNoWAN) = %t, want %t", !tt.noWAN, tt.noWAN)
			}
			var wo *WANOnlyError
			if want := strings.Contains(tt.want, "reaches"); errors.As(err, &wo) != want {
				t.Errorf("errors.As(err, *WANOnlyError) = %t, want %t", !want, want)
			}
		})
	}
}

func TestPrefixOf(t *testing.T) {
	tests := []struct {
		ip, mask string // mask as an address
		want     string // "" = refused
	}{
		{"192.168.1.7", "255.255.255.0", "192.168.1.7/24"},
		{"::ffff:192.168.1.7", "255.255.0.0", "192.168.1.7/16"},
		{"2001:db8::1", "ffff:ffff:ffff:ffff::", "2001:db8::1/64"},
		{"192.168.1.7", "255.0.255.0", ""}, // non-canonical
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		mask := netip.MustParseAddr(tt.mask).AsSlice()
		got, ok := prefixOf(ip.AsSlice(), mask)
		if (tt.want == "") != !ok || (ok && got.String() != tt.want) {
			t.Errorf("prefixOf(%s, %s) = %v, %t; want %q", tt.ip, tt.mask, got, ok, tt.want)
		}
	}
}

// TestDetectHost runs Detect on the machine running the test. It checks
// only that the result is consistent: hosts differ.
func TestDetectHost(t *testing.T) {
	d, err := Detect("", nil)
	if errors.Is(err, ErrNoWAN) {
		t.Skipf("this host has no default route or gateway: %v", err)
	}
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	for _, n := range d.Notes {
		t.Log(n)
	}
	if d.WAN.Name == "" || d.WAN.Index == 0 {
		t.Errorf("got wan %+v", d.WAN)
	}
	if len(d.LAN) == 0 {
		t.Error("no lan interface")
	}
	if d.ServeWAN != slices.ContainsFunc(d.LAN, func(i Interface) bool { return i.Index == d.WAN.Index }) {
		t.Errorf("ServeWAN %t, but lan %q and wan %q", d.ServeWAN, names(d.LAN), d.WAN.Name)
	}
	if a := d.ExternalAddr; a.IsValid() && !slices.ContainsFunc(d.WAN.Prefixes, func(p netip.Prefix) bool { return p.Addr() == a }) {
		t.Errorf("external %s is not an address of wan %+v", a, d.WAN)
	}
	for _, p := range d.LANPrefixes {
		if p != p.Masked() {
			t.Errorf("lan prefix %s is not masked", p)
		}
	}
	// Named interfaces give the same answer.
	d2, err := Detect(d.WAN.Name, names(d.LAN))
	if err != nil {
		t.Fatalf("Detect(%q, %q): %v", d.WAN.Name, names(d.LAN), err)
	}
	if !reflect.DeepEqual(d2.LAN, d.LAN) || d2.ServeWAN != d.ServeWAN || d2.ExternalAddr != d.ExternalAddr {
		t.Errorf("named detection differs:\n%+v\n%+v", d2, d)
	}
}

func TestRoutable(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"84.17.3.2", true},
		{"2a02:8070::3", true},
		{"100.64.0.1", true}, // CGNAT: the ISP's other customers
		{"::ffff:84.17.3.2", true},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"fd00::2", false},
		{"fe80::1", false},
		{"127.0.0.1", false},
		{"192.0.2.2", false}, // documentation (RFC 5737): this lab machine
		{"198.51.100.7", false},
		{"203.0.113.2", false},
		{"198.19.255.1", false}, // benchmarking (RFC 2544)
		{"2001:db8::2", false},  // documentation (RFC 3849)
		{"2001:2::1", false},    // benchmarking (RFC 5180)
		{"224.0.0.1", false},
	} {
		if got := Routable(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Routable(%s) = %t, want %t", tt.addr, got, tt.want)
		}
	}
}

// When berth serves the WAN itself, the addresses it would bind sockets
// to (the LAN interface's prefixes) leave out those the internet reaches:
// no socket on them (DESIGN: protocol sockets only on LAN addresses).
func TestServedWANLeavesOutRoutableAddresses(t *testing.T) {
	d, err := detect(fakeHost{links: []link{loopback(), dualWAN}, route4: 15}.system(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.LAN) != 1 || !slices.Equal(d.LAN[0].Prefixes, prefixes("10.1.2.3/24")) {
		t.Fatalf("lan %+v, want eth2 with 10.1.2.3/24 only", d.LAN)
	}
	if !slices.Equal(d.WAN.Prefixes, dualWAN.Prefixes) {
		t.Errorf("wan prefixes %v, want all of %v", d.WAN.Prefixes, dualWAN.Prefixes)
	}
}
