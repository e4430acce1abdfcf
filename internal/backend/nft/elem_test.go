package nft

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// TestKeyCompact checks that the backend's compact keys stand for exactly
// the normalised Keys: every IPv4 Key comes back equal, IPv4-mapped
// addresses as plain IPv4, and a Key with an IPv6 address has no compact
// form (it is never installed).
func TestKeyCompact(t *testing.T) {
	ext := netip.MustParseAddrPort("203.0.113.2:8080")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(ext.Addr().As16()), 8080)
	tests := []struct {
		in   mapping.Key
		want mapping.Key
		ok   bool
	}{
		{mapping.Key{Proto: mapping.TCP, External: ext}, mapping.Key{Proto: mapping.TCP, External: ext}, true},
		{mapping.Key{Proto: mapping.UDP, External: ext, Remote: netip.MustParseAddr("0.0.0.0")},
			mapping.Key{Proto: mapping.UDP, External: ext, Remote: netip.MustParseAddr("0.0.0.0")}, true},
		{mapping.Key{Proto: mapping.UDP, External: mapped, Remote: netip.MustParseAddr("::ffff:198.51.100.7")},
			mapping.Key{Proto: mapping.UDP, External: ext, Remote: netip.MustParseAddr("198.51.100.7")}, true},
		{mapping.Key{Proto: mapping.TCP, External: netip.MustParseAddrPort("[2001:db8::1]:80")}, mapping.Key{}, false},
		{mapping.Key{Proto: mapping.TCP, External: ext, Remote: netip.MustParseAddr("2001:db8::7")}, mapping.Key{}, false},
		{mapping.Key{}, mapping.Key{}, false},
	}
	for _, tt := range tests {
		c, ok := keyOf(tt.in)
		if ok != tt.ok {
			t.Errorf("keyOf(%v): ok %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		if ok && c.key() != tt.want {
			t.Errorf("keyOf(%v).key() = %v, want %v", tt.in, c.key(), tt.want)
		}
	}
	// A remote host of 0.0.0.0 is a restriction, not "any remote host".
	unrestricted, _ := keyOf(mapping.Key{Proto: mapping.UDP, External: ext})
	zero, _ := keyOf(mapping.Key{Proto: mapping.UDP, External: ext, Remote: netip.MustParseAddr("0.0.0.0")})
	if unrestricted == zero {
		t.Error("a key restricted to 0.0.0.0 equals the unrestricted one")
	}
}

// TestSNATWinnerOrder checks the preference among UDP mappings sharing an
// Internal on the compact keys: unrestricted first, then the lowest
// external address (compared as numbers, not as text) and port, then the
// lowest remote host.
func TestSNATWinnerOrder(t *testing.T) {
	k := func(ext, remote string) key {
		mk := mapping.Key{Proto: mapping.UDP, External: netip.MustParseAddrPort(ext)}
		if remote != "" {
			mk.Remote = netip.MustParseAddr(remote)
		}
		return mustKey(mk)
	}
	want := []key{
		k("9.0.0.1:5000", ""),
		k("10.0.0.1:4000", ""),
		k("10.0.0.1:40000", ""),
		k("10.0.0.2:1", ""),
		k("9.0.0.1:1", "198.51.100.7"),
		k("9.0.0.1:1", "198.51.100.20"),
		k("9.0.0.1:2", "1.2.3.4"),
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, func(a, b key) int {
		switch {
		case snatWinner(a, b):
			return -1
		case snatWinner(b, a):
			return 1
		}
		return 0
	})
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", keys(got), keys(want))
		}
	}
}

func keys(ks []key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.key().String()
	}
	return out
}
