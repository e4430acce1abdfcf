package mapping

import (
	"net/netip"
	"slices"
	"testing"
)

func peer(prefix string, port uint16) Peer {
	return Peer{Prefix: netip.MustParsePrefix(prefix), Port: port}
}

func TestNewPeersNormalises(t *testing.T) {
	got := NewPeers(
		peer("198.51.100.77/24", 0),     // masked
		peer("::ffff:192.0.2.9/128", 9), // IPv4-mapped becomes IPv4
		peer("198.51.100.0/24", 0),      // duplicate after masking
		peer("2001:db8::1/32", 0),
		peer("192.0.2.9/32", 9), // duplicate of the mapped one
	).All()
	want := []Peer{peer("192.0.2.9/32", 9), peer("198.51.100.0/24", 0), peer("2001:db8::/32", 0)}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestPeersAllows(t *testing.T) {
	s := NewPeers(peer("198.51.100.0/24", 0), peer("203.0.113.7/32", 443), peer("2001:db8::/32", 0))
	tests := []struct {
		src  string
		want bool
	}{
		{"198.51.100.9:1", true},
		{"[::ffff:198.51.100.9]:1", true}, // from a dual-stack socket
		{"198.51.101.9:1", false},
		{"203.0.113.7:443", true},
		{"203.0.113.7:444", false},
		{"[2001:db8::5%eth0]:7", true},
		{"[2001:db9::5]:7", false},
	}
	for _, tc := range tests {
		if got := s.Allows(netip.MustParseAddrPort(tc.src)); got != tc.want {
			t.Errorf("Allows(%s) = %v, want %v", tc.src, got, tc.want)
		}
	}
	src := netip.MustParseAddrPort("192.0.2.1:1")
	if !(*Peers)(nil).Allows(src) || !NewPeers().Allows(src) {
		t.Error("nil or empty Peers refuse a source, want every source allowed")
	}
	if NewPeers(Peer{}).Allows(src) {
		t.Error("a filter with an invalid prefix admits a source, want nobody")
	}
}

func TestPeersEqualUnionString(t *testing.T) {
	a := NewPeers(peer("192.0.2.1/32", 0))
	b := NewPeers(peer("198.51.100.0/24", 80))
	var none *Peers
	if !none.Equal(NewPeers()) || !NewPeers().Equal(none) || a.Equal(none) || a.Equal(b) {
		t.Error("Equal wrong for nil, empty and different sets")
	}
	if !a.Equal(NewPeers(peer("192.0.2.1/32", 0))) {
		t.Error("equal sets built apart compare unequal")
	}
	u := a.Union(b).Union(a)
	if u.Len() != 2 || !u.Equal(NewPeers(peer("198.51.100.0/24", 80), peer("192.0.2.1/32", 0))) {
		t.Fatalf("union = %v", u)
	}
	if got := none.Union(b); !got.Equal(b) {
		t.Fatalf("nil ∪ b = %v, want %v", got, b)
	}
	if got, want := u.String(), "{192.0.2.1/32, 198.51.100.0/24 port 80}"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if none.String() != "any" {
		t.Errorf("nil String = %q, want any", none.String())
	}
	all := u.All()
	all[0] = Peer{}
	if u.All()[0] == (Peer{}) {
		t.Error("All returned the set's own slice")
	}
}
