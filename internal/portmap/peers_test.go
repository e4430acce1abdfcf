package portmap

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

func peerSet(prefixes ...string) *mapping.Peers {
	ps := make([]mapping.Peer, len(prefixes))
	for i, p := range prefixes {
		ps[i] = mapping.Peer{Prefix: netip.MustParsePrefix(p)}
	}
	return mapping.NewPeers(ps...)
}

// TestPeersReachTheBackend: the filters travel with the mapping to the
// backend; a renewal without filters keeps them without a backend call; a
// change of filters alone is a backend change (Delete and Add of the same
// key), a new generation and a Removed/Added pair of events.
func TestPeersReachTheBackend(t *testing.T) {
	h := newHarness(t, nil)
	sub := h.Subscribe(16)
	r := pmp(hostA, mapping.UDP, 5000, 5000, time.Hour)
	r.Peers = peerSet("192.0.2.1/32")
	m := h.mustMap(t, r)
	if st := h.be.State(); len(st) != 1 || !st[0].Peers.Equal(r.Peers) {
		t.Fatalf("backend holds %v, want the mapping with peers %v", st, r.Peers)
	}

	steps := []struct {
		name        string
		peers       *mapping.Peers
		add         bool
		want        *mapping.Peers
		wantBackend bool
	}{
		{name: "renewal without filters", want: peerSet("192.0.2.1/32")},
		{name: "same filters again", peers: peerSet("192.0.2.1/32"), add: true, want: peerSet("192.0.2.1/32")},
		{name: "filter added", peers: peerSet("198.51.100.0/24"), add: true,
			want: peerSet("192.0.2.1/32", "198.51.100.0/24"), wantBackend: true},
		{name: "filters replaced", peers: peerSet("203.0.113.9/32"), want: peerSet("203.0.113.9/32"), wantBackend: true},
		{name: "filters cleared", peers: peerSet(), want: nil, wantBackend: true},
	}
	for _, st := range steps {
		batches, gen := len(h.be.Batches()), h.Generation()
		r.Peers, r.AddPeers = st.peers, st.add
		got := h.mustMap(t, r)
		if got.Key != m.Key || !got.Peers.Equal(st.want) {
			t.Fatalf("%s: got %v, want %v with peers %v", st.name, got, m.Key, st.want)
		}
		if l := h.List(mapping.Filter{}); len(l) != 1 || !l[0].Peers.Equal(st.want) {
			t.Fatalf("%s: List = %v, want peers %v", st.name, l, st.want)
		}
		bs := h.be.Batches()
		if !st.wantBackend {
			if len(bs) != batches || h.Generation() != gen {
				t.Fatalf("%s: backend called or generation changed; a renewal must do neither", st.name)
			}
			continue
		}
		if len(bs) != batches+1 || h.Generation() == gen {
			t.Fatalf("%s: %d new batches, generation changed %v; want 1 and true", st.name, len(bs)-batches, h.Generation() != gen)
		}
		b := bs[len(bs)-1]
		if len(b) != 2 || b[0].Op != backend.Delete || b[1].Op != backend.Add || b[1].Mapping.Key != m.Key ||
			!b[1].Mapping.Peers.Equal(st.want) {
			t.Fatalf("%s: batch %v, want Delete and Add of %v with peers %v", st.name, b, m.Key, st.want)
		}
		if s := h.be.State(); len(s) != 1 || !s[0].Peers.Equal(st.want) {
			t.Fatalf("%s: backend holds %v", st.name, s)
		}
	}
	var kinds []EventKind
	for len(sub.C()) > 0 {
		kinds = append(kinds, (<-sub.C()).Kind)
	}
	if want := fmt.Sprint([]EventKind{Added, Removed, Added, Removed, Added, Removed, Added}); fmt.Sprint(kinds) != want {
		t.Errorf("events %v, want %v", kinds, want)
	}
}

func TestTooManyPeersLeavesNoTrace(t *testing.T) {
	h := newHarness(t, nil)
	ps := make([]mapping.Peer, mapping.MaxPeers+1)
	for i := range ps {
		ps[i] = mapping.Peer{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32)}
	}
	r := pmp(hostA, mapping.UDP, 5000, 5000, time.Hour)
	r.Peers = mapping.NewPeers(ps...)
	if _, err := h.Map(ctx, r); !errors.Is(err, mapping.ErrTooManyPeers) {
		t.Fatalf("got %v, want ErrTooManyPeers", err)
	}
	if h.Len() != 0 || len(h.be.Batches()) != 0 {
		t.Fatal("a refused request left a mapping or reached the backend")
	}
}
