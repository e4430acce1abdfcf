package porttest

import (
	"net"
	"net/netip"
	"testing"
)

// Free gives ports in its range that can then be bound, for both
// networks, never the same one twice.
func TestFree(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	seen := map[uint16]bool{}
	for _, network := range []string{"tcp", "udp"} {
		for range 20 {
			p := Free(t, network, lo)
			if seen[p] {
				t.Fatalf("port %d given twice", p)
			}
			seen[p] = true
			if p < Low || p > High {
				t.Fatalf("%s port %d outside %d–%d", network, p, Low, High)
			}
			ap := netip.AddrPortFrom(lo, p).String()
			if network == "tcp" {
				ln, err := net.Listen("tcp", ap)
				if err != nil {
					t.Fatalf("binding the port Free gave: %v", err)
				}
				ln.Close()
			} else {
				c, err := net.ListenPacket("udp", ap)
				if err != nil {
					t.Fatalf("binding the port Free gave: %v", err)
				}
				c.Close()
			}
		}
	}
}
