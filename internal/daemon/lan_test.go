package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/logtest"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
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
		retry      bool     // the last start failed
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
			why:   "a LAN interface (br-lan) has an address: no longer serving wan wan0 until a restart", prefixes: []string{"192.168.1.0/24"}},
		{name: "nothing new after a failed start: start again",
			cur:   det(false, iface("br-lan", 3, "192.168.1.1/24", "fd00:1::1/64")),
			found: det(false, brLan), retry: true,
			why: "serving the LAN again after a failed start", prefixes: []string{"192.168.1.0/24", "fd00:1::/64"}},
		{name: "after a failed start, still not the WAN", retry: true,
			cur: det(false, brLan), found: det(true, iface("wan0", 2, "10.9.0.2/24"))},
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
			next, why := nextLAN(tt.cur, tt.found, []netip.Addr{vip}, tt.retry)
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

// When the responders cannot start on the changed LAN, berthd serves what
// is left of the LAN it served, or failing that nothing until the next
// address change, which starts them again; it never stops, since its
// mappings keep working meanwhile.
func TestRelanWhenTheStartFails(t *testing.T) {
	pfx := netip.MustParsePrefix
	lan := func(ps ...string) netif.Detected {
		ifc := netif.Interface{Name: "br-lan", Index: 3}
		d := netif.Detected{WAN: netif.Interface{Name: "wan0", Index: 2}}
		for _, p := range ps {
			ifc.Prefixes = append(ifc.Prefixes, pfx(p))
			d.LANPrefixes = append(d.LANPrefixes, pfx(p).Masked())
		}
		d.LAN = []netif.Interface{ifc}
		return d
	}
	addrsOf := func(d netif.Detected) []string {
		var out []string
		for _, ifc := range d.LAN {
			for _, p := range ifc.Prefixes {
				out = append(out, p.Addr().String())
			}
		}
		return out
	}
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{pfx("192.168.1.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clocktest.NewFake(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)),
		External: netip.MustParseAddr("203.0.113.2")})
	defer svc.Close()
	for _, tt := range []struct {
		name       string
		cur, found netif.Detected
		fail       int        // restarts that fail, from the first
		tried      [][]string // the addresses of each restart
		failed     bool
	}{
		{name: "the new LAN starts",
			cur: lan("192.168.1.1/24"), found: lan("192.168.1.1/24", "10.0.0.1/24"),
			tried: [][]string{{"192.168.1.1", "10.0.0.1"}}},
		{name: "the new LAN fails: what is left of the old one",
			cur: lan("192.168.1.1/24", "172.16.0.1/24"), found: lan("192.168.1.1/24", "10.0.0.1/24"), fail: 1,
			tried: [][]string{{"192.168.1.1", "10.0.0.1"}, {"192.168.1.1"}}},
		{name: "both fail: nothing until the next change",
			cur: lan("192.168.1.1/24"), found: lan("192.168.1.1/24", "10.0.0.1/24"), fail: 2,
			tried: [][]string{{"192.168.1.1", "10.0.0.1"}, {"192.168.1.1"}}, failed: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := &logtest.Buffer{}
			var tried [][]string
			policies, calls := 0, 0
			w := &addrWatch{cfg: config.Default(), det: tt.cur, svc: svc, resp: &responders{}, log: slog.New(slog.NewTextHandler(log, nil)),
				detect: func(string, []string) (netif.Detected, error) { return tt.found, nil },
				restart: func(_ context.Context, d netif.Detected, _ map[netip.Addr]uint16) (*responders, error) {
					tried = append(tried, addrsOf(d))
					if calls++; calls <= tt.fail {
						return nil, errors.New("test: bind: cannot assign requested address")
					}
					return &responders{}, nil
				},
				repolicy: func() { policies++ },
			}
			w.relan(context.Background())
			if !reflect.DeepEqual(tried, tt.tried) || w.failed != tt.failed || w.resp == nil || policies == 0 {
				t.Fatalf("restarts %v, failed %t, responders %v, %d policies; want restarts %v, failed %t, responders, a policy",
					tried, w.failed, w.resp, policies, tt.tried, tt.failed)
			}
			// Every LAN prefix stays in the policy, whatever served.
			if got := w.det.LANPrefixes; !slices.Contains(got, pfx("10.0.0.0/24")) || !slices.Contains(got, pfx("192.168.1.0/24")) {
				t.Errorf("LAN prefixes %v", got)
			}
			// The next look, with nothing new, starts the responders on
			// the whole LAN again only after a failure, and that start
			// succeeds.
			tried = nil
			w.relan(context.Background())
			var want [][]string
			if tt.fail > 0 {
				want = [][]string{{"192.168.1.1", "10.0.0.1"}}
			}
			if !reflect.DeepEqual(tried, want) || w.failed {
				t.Errorf("the next look: restarts %v, failed %t; want %v", tried, w.failed, want)
			}
		})
	}
}
