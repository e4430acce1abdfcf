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
// is left of the LAN it last served, or failing that nothing; it tries
// again when the retry timer fires or the addresses change, not for a
// refresh of the same addresses; it never stops, since its mappings keep
// working meanwhile; and the IGD keeps its HTTP ports through it all.
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
	addrsOf := func(d netif.Detected) string {
		var out []string
		for _, ifc := range d.LAN {
			for _, p := range ifc.Prefixes {
				out = append(out, p.Addr().String())
			}
		}
		return strings.Join(out, " ")
	}
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{pfx("192.168.1.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clocktest.NewFake(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)),
		External: netip.MustParseAddr("203.0.113.2")})
	defer svc.Close()
	type step struct {
		found  netif.Detected
		timer  bool     // the retry timer fired
		fail   int      // restarts in this step that fail, from the first
		tried  []string // the addresses of each restart
		failed bool
		after  time.Duration // the retry armed, 0 for none
	}
	old, grown, shrunk := lan("192.168.1.1/24", "172.16.0.1/24"), lan("192.168.1.1/24", "10.0.0.1/24"), lan("192.168.1.1/24")
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"the new LAN starts", []step{
			{found: grown, tried: []string{"192.168.1.1 10.0.0.1"}},
			{found: grown}, // nothing new
		}},
		{"the new LAN fails: what is left of the old one, then the timer", []step{
			{found: grown, fail: 1, tried: []string{"192.168.1.1 10.0.0.1", "192.168.1.1"}, failed: true, after: 30 * time.Second},
			{found: grown, failed: true}, // the same addresses again: wait for the timer
			{found: grown, timer: true, tried: []string{"192.168.1.1 10.0.0.1"}},
		}},
		{"both fail, twice: nothing serves; an address went: try at once", []step{
			{found: grown, fail: 2, tried: []string{"192.168.1.1 10.0.0.1", "192.168.1.1"}, failed: true, after: 30 * time.Second},
			{found: grown, timer: true, fail: 2, tried: []string{"192.168.1.1 10.0.0.1", "192.168.1.1"}, failed: true, after: time.Minute},
			{found: shrunk, tried: []string{"192.168.1.1"}},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := &logtest.Buffer{}
			var tried []string
			var after []time.Duration
			fail, policies := 0, 0
			ports := map[netip.Addr]uint16{netip.MustParseAddr("192.168.1.1"): 5000}
			w := &addrWatch{cfg: config.Default(), det: old, served: old, svc: svc, resp: &responders{}, ports: ports,
				log:      slog.New(slog.NewTextHandler(log, nil)),
				after:    func(d time.Duration) { after = append(after, d) },
				repolicy: func() { policies++ },
				restart: func(_ context.Context, d netif.Detected, p map[netip.Addr]uint16) (*responders, error) {
					tried = append(tried, addrsOf(d))
					if p[netip.MustParseAddr("192.168.1.1")] != 5000 {
						t.Errorf("restart with HTTP ports %v: the port of 192.168.1.1 is lost", p)
					}
					if fail > 0 {
						fail--
						return nil, errors.New("test: bind: cannot assign requested address")
					}
					return &responders{}, nil
				},
			}
			for i, st := range tt.steps {
				tried, after, fail, policies = nil, nil, st.fail, 0
				w.detect = func(string, []string) (netif.Detected, error) { return st.found, nil }
				rebuilt := w.relan(context.Background(), st.timer)
				var wantAfter []time.Duration
				if st.after > 0 {
					wantAfter = []time.Duration{st.after}
				}
				if !slices.Equal(tried, st.tried) || w.failed != st.failed || !slices.Equal(after, wantAfter) || w.resp == nil {
					t.Fatalf("step %d: restarts %q, failed %t, retry %v, responders %v; want restarts %q, failed %t, retry %v",
						i, tried, w.failed, after, w.resp, st.tried, st.failed, wantAfter)
				}
				if rebuilt != (len(st.tried) > 0) || (policies > 0) != rebuilt {
					t.Errorf("step %d: relan says it rebuilt the policy: %t, and did %d times", i, rebuilt, policies)
				}
				// Every LAN prefix found stays in the policy.
				for _, p := range st.found.LANPrefixes {
					if !slices.Contains(w.det.LANPrefixes, p) {
						t.Errorf("step %d: LAN prefixes %v, without %v", i, w.det.LANPrefixes, p)
					}
				}
			}
		})
	}
}

// A new WAN address reaches the policy too: its list of the router's own
// addresses names the external address.
func TestWANChangeRebuildsThePolicy(t *testing.T) {
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clocktest.NewFake(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)),
		External: netip.MustParseAddr("203.0.113.2")})
	defer svc.Close()
	policies := 0
	w := &addrWatch{cfg: config.Default(), det: netif.Detected{WAN: netif.Interface{Name: "wan0", Index: 2}}, svc: svc, resp: &responders{},
		addrs: func(string) ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("198.51.100.7/24")}, nil
		},
		repolicy: func() { policies++ }, log: slog.New(slog.DiscardHandler)}
	w.changed(context.Background())
	if got := svc.ExternalAddr(); got != netip.MustParseAddr("198.51.100.7") || policies != 1 {
		t.Fatalf("external address %v, %d policies built; want 198.51.100.7 and one", got, policies)
	}
	w.changed(context.Background()) // nothing moved
	if policies != 1 {
		t.Fatalf("%d policies built after a look that found nothing new; want still one", policies)
	}
}
