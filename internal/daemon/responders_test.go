package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
	"github.com/berthd/berth/pcp/listener"
)

var portControlExt = netip.MustParseAddr("203.0.113.2")

// portControlRig is the daemon's NAT-PMP/PCP wiring (portControlConfig,
// servePortControl) on 127.0.0.100 in front of a Service with the fake
// backend and a fake clock. Its announcements go to watch instead of the
// multicast groups, which loopback does not deliver.
type portControlRig struct {
	svc   *portmap.Service
	clk   *clocktest.Fake
	srv   *listener.Server
	addr  netip.AddrPort // the server
	watch *net.UDPConn   // where announcements arrive
}

func newPortControlRig(t *testing.T, natpmpOn, pcpOn bool) *portControlRig {
	t.Helper()
	cfg := config.Default()
	cfg.NATPMP.Enabled, cfg.PCP.Enabled = natpmpOn, pcpOn
	lo := netif.Interface{Name: "lo", Index: 1, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.100/8")}}
	lan := netip.MustParsePrefix("127.0.0.0/8")
	det := netif.Detected{WAN: lo, LAN: []netif.Interface{lo}, LANPrefixes: []netip.Prefix{lan}}
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Lifetime: map[mapping.Kind]policy.Lifetimes{
		mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour},
		mapping.KindPCP:    {Min: 120 * time.Second, Max: 24 * time.Hour},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := &portControlRig{clk: clocktest.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))}
	r.svc = portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: r.clk, External: portControlExt})
	t.Cleanup(func() { r.svc.Close() })
	r.watch, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.watch.Close() })
	sc, err := portControlConfig(cfg, det, r.svc, r.clk, freeUDPPort(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sc.AnnounceGroup4 = netip.MustParseAddr("127.0.0.1")
	sc.AnnouncePorts = []uint16{r.watch.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if r.srv, err = servePortControl(ctx, sc, r.svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Close() })
	r.addr = r.srv.LocalAddrs()[0]
	return r
}

// announcement is one unsolicited message that reached watch.
type announcement struct {
	natpmp bool
	epoch  uint32
	ext    netip.Addr // NAT-PMP only
}

// next waits up to wait for the next announcement; ok is false if none
// came.
func (r *portControlRig) next(t *testing.T, wait time.Duration) (a announcement, ok bool) {
	t.Helper()
	r.watch.SetReadDeadline(clock.Real{}.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := r.watch.Read(buf)
	if err != nil {
		return announcement{}, false
	}
	b := buf[:n]
	switch b[0] {
	case 0:
		resp, err := natpmp.ParseResponse(b)
		if err != nil || resp.Op != natpmp.OpAddress {
			t.Fatalf("bad NAT-PMP announcement % x: %v", b, err)
		}
		return announcement{natpmp: true, epoch: resp.Epoch, ext: resp.ExternalAddr}, true
	case pcp.Version:
		resp, err := pcp.ParseResponse(b)
		if err != nil || resp.Op != pcp.OpAnnounce || resp.Result != pcp.Success {
			t.Fatalf("bad PCP announcement % x: %v", b, err)
		}
		return announcement{epoch: resp.Epoch}, true
	}
	t.Fatalf("announcement of neither protocol: % x", b)
	return announcement{}, false
}

// Announcements name only the protocols that are served: a host told of a
// NAT-PMP gateway that then answers NAT-PMP with UNSUPP_VERSION (PCP's
// answer to version 0) is misled, and so is a PCP client.
func TestAnnouncesOnlyServedProtocols(t *testing.T) {
	for _, tt := range []struct {
		name            string
		natpmpOn, pcpOn bool
	}{
		{"both", true, true},
		{"NAT-PMP off", false, true},
		{"PCP off", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newPortControlRig(t, tt.natpmpOn, tt.pcpOn)
			r.clk.Advance(3 * time.Minute) // the whole series of 10
			want := map[bool]int{}
			if tt.natpmpOn {
				want[true] = 10
			}
			if tt.pcpOn {
				want[false] = 10
			}
			got := map[bool]int{}
			for range 40 {
				if got[true] >= want[true] && got[false] >= want[false] {
					break
				}
				a, ok := r.next(t, 5*time.Second)
				if !ok {
					break
				}
				got[a.natpmp]++
			}
			if a, ok := r.next(t, 200*time.Millisecond); ok { // anything beyond the series
				got[a.natpmp]++
			}
			if got[true] != want[true] || got[false] != want[false] {
				t.Fatalf("got %d NAT-PMP and %d PCP announcements, want %d and %d",
					got[true], got[false], want[true], want[false])
			}
		})
	}
}

// COMPAT N8: NAT-PMP and PCP answers, and the announcements of both, carry
// one epoch, the Service's.
func TestOneEpochForBothProtocols(t *testing.T) {
	r := newPortControlRig(t, true, true)
	r.clk.Advance(1234 * time.Second) // also runs out the start-up series
	for range 40 {                    // drain it
		if _, ok := r.next(t, 200*time.Millisecond); !ok {
			break
		}
	}
	b, _ := exchangeUDP(t, r.addr, natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil))
	pmp, err := natpmp.ParseResponse(b)
	if err != nil {
		t.Fatalf("NAT-PMP answer % x: %v", b, err)
	}
	b, _ = exchangeUDP(t, r.addr, pcp.Request{Op: pcp.OpAnnounce, Client: netip.MustParseAddr("127.0.0.2")}.AppendTo(nil))
	pc, err := pcp.ParseResponse(b)
	if err != nil || pc.Result != pcp.Success {
		t.Fatalf("PCP answer % x: %v", b, err)
	}
	want := r.svc.Epoch()
	if pmp.Epoch != want || pc.Epoch != want || want != 1234 {
		t.Fatalf("NAT-PMP epoch %d, PCP epoch %d, Service epoch %d; want all 1234", pmp.Epoch, pc.Epoch, want)
	}
	r.srv.Announce()
	for range 2 {
		a, ok := r.next(t, 5*time.Second)
		if !ok {
			t.Fatal("no announcement")
		}
		if a.epoch != want {
			t.Fatalf("announcement (NAT-PMP %v) with epoch %d, want %d", a.natpmp, a.epoch, want)
		}
	}
}

// COMPAT N10, C9: a new external address is announced again, by NAT-PMP
// with the new address and by PCP.
func TestExternalChangeAnnouncesBoth(t *testing.T) {
	r := newPortControlRig(t, true, true)
	for range 2 { // the first of the start-up series; the clock stays put
		if _, ok := r.next(t, 5*time.Second); !ok {
			t.Fatal("no start-up announcement")
		}
	}
	moved := netip.MustParseAddr("198.51.100.9")
	if err := r.svc.SetExternalAddr(context.Background(), moved); err != nil {
		t.Fatal(err)
	}
	var pmp, pc int
	for range 4 {
		if pmp == 1 && pc == 1 {
			break
		}
		a, ok := r.next(t, 5*time.Second)
		if !ok {
			break
		}
		if !a.natpmp {
			pc++
			continue
		}
		if a.ext != moved {
			t.Fatalf("NAT-PMP announced %v after the change, want %v", a.ext, moved)
		}
		pmp++
	}
	if pmp != 1 || pc != 1 {
		t.Fatalf("after the change: %d NAT-PMP and %d PCP announcements, want one each", pmp, pc)
	}
}
