package lease

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

func peers(prefixes ...string) *mapping.Peers {
	ps := make([]mapping.Peer, len(prefixes))
	for i, p := range prefixes {
		ps[i] = mapping.Peer{Prefix: netip.MustParsePrefix(p)}
	}
	return mapping.NewPeers(ps...)
}

func withPeers(r mapping.Request, add bool, p *mapping.Peers) mapping.Request {
	r.Peers, r.AddPeers = p, add
	return r
}

// TestPeersTriState checks Request.Peers on a renewal of a mapping
// filtered to 192.0.2.0/24: nil keeps, non-nil replaces or adds, and the
// plan is a renewal (no backend change) only when the filters stay.
func TestPeersTriState(t *testing.T) {
	base := req(hostA, mapping.UDP, 5000, 0, false)
	tests := []struct {
		name        string
		peers       *mapping.Peers
		add         bool
		want        *mapping.Peers // nil: no filter
		wantRenewal bool
	}{
		{name: "nil keeps", want: peers("192.0.2.0/24"), wantRenewal: true},
		{name: "replace", peers: peers("198.51.100.7/32"), want: peers("198.51.100.7/32")},
		{name: "replace with the same set", peers: peers("192.0.2.0/24"), want: peers("192.0.2.0/24"), wantRenewal: true},
		{name: "empty clears", peers: peers(), want: nil},
		{name: "add", peers: peers("198.51.100.7/32"), add: true, want: peers("192.0.2.0/24", "198.51.100.7/32")},
		{name: "add one present", peers: peers("192.0.2.0/24"), add: true, want: peers("192.0.2.0/24"), wantRenewal: true},
		{name: "add nothing", peers: peers(), add: true, want: peers("192.0.2.0/24"), wantRenewal: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New()
			old := mustMap(t, tb, withPeers(base, false, peers("192.0.2.0/24")), t0.Add(time.Hour))
			p, err := tb.Allocate(withPeers(base, tc.add, tc.peers), ext, user, t0.Add(2*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if !p.Mapping.Peers.Equal(tc.want) || (tc.want == nil) != (p.Mapping.Peers == nil) {
				t.Errorf("got peers %v, want %v", p.Mapping.Peers, tc.want)
			}
			if p.Renewal() != tc.wantRenewal {
				t.Errorf("Renewal() = %v, want %v", p.Renewal(), tc.wantRenewal)
			}
			if tc.wantRenewal && p.Mapping.Peers != old.Peers {
				t.Error("unchanged filters are a new set: the renewed Mapping is != the old one apart from Expires")
			}
			tb.Commit(p)
			if m, _ := tb.Get(old.Key); !m.Peers.Equal(tc.want) {
				t.Errorf("after Commit the table holds peers %v, want %v", m.Peers, tc.want)
			}
		})
	}
}

func TestPeersOfANewMapping(t *testing.T) {
	tb := New()
	m := mustMap(t, tb, withPeers(req(hostA, mapping.TCP, 5000, 0, false), true, peers("192.0.2.1/32")), t0)
	if !m.Peers.Equal(peers("192.0.2.1/32")) {
		t.Errorf("added to no mapping: got %v, want {192.0.2.1/32}", m.Peers)
	}
	m = mustMap(t, tb, withPeers(req(hostA, mapping.TCP, 5001, 0, false), false, peers()), t0)
	if m.Peers != nil {
		t.Errorf("an empty set was stored as %v, want nil", m.Peers)
	}
}

// TestPeersFollowAMove: when the renewed mapping must move to another
// port, its filters go with it.
func TestPeersFollowAMove(t *testing.T) {
	tb := New()
	old := mustMap(t, tb, withPeers(req(hostA, mapping.TCP, 5000, 5000, false), false, peers("192.0.2.1/32")), t0)
	p, err := tb.Allocate(req(hostA, mapping.TCP, 5000, 0, false), ext, []mapping.PortRange{{Lo: 6000, Hi: 6000}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Replaces || p.Mapping.Key == old.Key || p.Mapping.Peers != old.Peers {
		t.Fatalf("got %v (replaces %v), want a move to 6000 keeping %v", p.Mapping, p.Replaces, old.Peers)
	}
}

func TestTooManyPeers(t *testing.T) {
	many := func(from, n int) *mapping.Peers {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = fmt.Sprintf("192.0.2.%d/32", from+i)
		}
		return peers(ps...)
	}
	tb := New()
	r := req(hostA, mapping.UDP, 5000, 0, false)
	if _, err := tb.Allocate(withPeers(r, false, many(0, mapping.MaxPeers+1)), ext, user, t0); !errors.Is(err, mapping.ErrTooManyPeers) {
		t.Fatalf("replace with %d: got %v, want ErrTooManyPeers", mapping.MaxPeers+1, err)
	}
	mustMap(t, tb, withPeers(r, false, many(0, mapping.MaxPeers)), t0)
	if _, err := tb.Allocate(withPeers(r, true, many(100, 1)), ext, user, t0); !errors.Is(err, mapping.ErrTooManyPeers) {
		t.Fatalf("adding one to %d: got %v, want ErrTooManyPeers", mapping.MaxPeers, err)
	}
	if _, err := tb.Allocate(withPeers(r, true, many(0, 1)), ext, user, t0); err != nil {
		t.Fatalf("adding one already present: %v", err)
	}
}
