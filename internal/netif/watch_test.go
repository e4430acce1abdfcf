package netif

import (
	"net/netip"
	"testing"
)

func TestIsNetworkOrBroadcast(t *testing.T) {
	for _, tt := range []struct {
		prefix, addr string
		want         bool
	}{
		{"192.168.1.0/24", "192.168.1.0", true},
		{"192.168.1.0/24", "192.168.1.255", true},
		{"192.168.1.0/24", "192.168.1.1", false},
		{"192.168.1.0/24", "192.168.2.0", false}, // outside
		{"10.0.0.0/8", "10.255.255.255", true},
		{"10.0.0.4/30", "10.0.0.7", true},
		{"10.0.0.4/31", "10.0.0.4", false}, // RFC 3021: both are hosts
		{"10.0.0.4/32", "10.0.0.4", false},
		{"fd00::/64", "fd00::", false}, // IPv6 has no broadcast
	} {
		if got := IsNetworkOrBroadcast(netip.MustParsePrefix(tt.prefix), netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("%s in %s: got %v, want %v", tt.addr, tt.prefix, got, tt.want)
		}
	}
}
