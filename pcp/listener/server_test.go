package listener_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
)

// COMPAT N1: the reply leaves from the address the request was sent to.
func TestReplyFromRequestedAddress(t *testing.T) {
	r := newRig(t, rigOpts{binds: []string{"127.0.0.100", "127.0.0.101"}})
	c := newClient(t, "127.0.0.1")
	for _, srv := range r.addrs {
		_, from := c.exchange(srv, natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil))
		if from != srv {
			t.Fatalf("request to %v answered from %v", srv, from)
		}
	}
}

// COMPAT N11, S9-like scope: sources outside the LAN get nothing.
func TestOutsideLANIgnored(t *testing.T) {
	r := newRig(t, rigOpts{lan: "127.0.0.0/30"})
	c := newClient(t, "127.0.0.5")
	if _, err := c.conn.WriteToUDPAddrPort(natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil), r.addrs[0]); err != nil {
		t.Fatal(err)
	}
	waitStat(t, func() uint64 { return r.srv.Stats().NotLAN }, 1)
	if r.srv.Stats().Answered != 0 {
		t.Fatal("answered a source outside the LAN")
	}
}

func TestRateLimitPerClient(t *testing.T) {
	r := newRig(t, rigOpts{burst: 3})
	noisy := newClient(t, "127.0.0.1")
	req := natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil)
	for range 10 {
		if _, err := noisy.conn.WriteToUDPAddrPort(req, r.addrs[0]); err != nil {
			t.Fatal(err)
		}
	}
	waitStat(t, func() uint64 { return r.srv.Stats().Received }, 10)
	if s := r.srv.Stats(); s.RateLimited != 7 {
		t.Fatalf("got %d rate-limited, want 7 of 10 with a burst of 3", s.RateLimited)
	}
	// Another client is still served, and tokens come back with time.
	other := newClient(t, "127.0.0.2")
	mustExchange(t, other, r.addrs[0], req)
	r.clk.Advance(time.Second)
	for range 4 { // drain what the noisy client's socket buffered
		if b, _ := noisy.read(100 * time.Millisecond); b == nil {
			break
		}
	}
	mustExchange(t, noisy, r.addrs[0], req)
}

// COMPAT N10, C9: 10 announcements, 250 ms doubling, NAT-PMP and PCP.
func TestAnnouncements(t *testing.T) {
	watch := newClient(t, "127.0.0.1")
	lp := netip.MustParseAddrPort(watch.conn.LocalAddr().String()).Port()
	r := newRig(t, rigOpts{announcePort: lp})
	r.srv.Announce()
	r.clk.Advance(2 * time.Minute) // the nine waits add up to 250ms·511 = 127.75 s
	r.clk.Advance(time.Minute)
	var pmp, pcpN int
	for range 40 {
		b, _ := watch.read(500 * time.Millisecond)
		if b == nil {
			break
		}
		switch b[0] {
		case 0:
			if resp, err := natpmp.ParseResponse(b); err != nil || resp.ExternalAddr != ext {
				t.Fatalf("bad NAT-PMP announcement % x: %v", b, err)
			}
			pmp++
		case pcp.Version:
			if resp, err := pcp.ParseResponse(b); err != nil || resp.Op != pcp.OpAnnounce {
				t.Fatalf("bad PCP announcement % x: %v", b, err)
			}
			pcpN++
		}
	}
	if pmp != 10 || pcpN != 10 {
		t.Fatalf("got %d NAT-PMP and %d PCP announcements, want 10 each", pmp, pcpN)
	}
	if r.clk.Pending() != 0 {
		t.Fatal("announcement timer still pending after 10 sends")
	}
}

// A protocol without a handler is not announced, whatever else is
// configured: the rig always sets NATPMPAnnouncement.
func TestAnnouncementsOnlyForServedProtocols(t *testing.T) {
	for _, tt := range []struct {
		name             string
		o                rigOpts
		wantPMP, wantPCP int
	}{
		{"no NAT-PMP", rigOpts{noNATPMP: true}, 0, 10},
		{"no PCP", rigOpts{noPCP: true}, 10, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			watch := newClient(t, "127.0.0.1")
			tt.o.announcePort = netip.MustParseAddrPort(watch.conn.LocalAddr().String()).Port()
			r := newRig(t, tt.o)
			r.srv.Announce()
			r.clk.Advance(3 * time.Minute)
			var pmp, pcpN int
			for range 40 {
				if pmp+pcpN == tt.wantPMP+tt.wantPCP {
					break
				}
				b, _ := watch.read(2 * time.Second)
				if b == nil {
					break
				}
				if b[0] == 0 {
					pmp++
				} else {
					pcpN++
				}
			}
			if b, _ := watch.read(200 * time.Millisecond); b != nil { // beyond the series
				t.Fatalf("extra announcement % x", b)
			}
			if pmp != tt.wantPMP || pcpN != tt.wantPCP {
				t.Fatalf("got %d NAT-PMP and %d PCP announcements, want %d and %d", pmp, pcpN, tt.wantPMP, tt.wantPCP)
			}
		})
	}
}
