// Package porttest picks ports for tests that must name a port before
// they bind it (a daemon's configured port, a mapping's external port).
//
// A port the kernel handed out for port 0 comes from the ephemeral range
// (net.ipv4.ip_local_port_range, 32768–60999 by default), from which the
// kernel also takes the source port of every connection any process
// opens: between the test closing it and binding it again, another test
// package running in parallel may get it. Free picks below that range,
// where the kernel hands out nothing by itself.
package porttest

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// Low and High bound where Free picks: below the default ephemeral range,
// above the ports services usually hold.
const (
	Low  = 20000
	High = 32767
)

// tries bounds the search; a busy machine holds a few ports of the range.
const tries = 200

// given are the ports Free returned in this process: a test that asks for
// several gets different ones, bound or not.
var (
	mu    sync.Mutex
	given = map[uint16]bool{}
)

// Free returns a port between Low and High that network ("tcp" or "udp")
// could bind on addr a moment ago; the test fails when none could.
func Free(t testing.TB, network string, addr netip.Addr) uint16 {
	t.Helper()
	for range tries {
		p := uint16(Low + rand.IntN(High-Low+1))
		// Claimed before the bind, so that two tests asking at once
		// never both get it.
		mu.Lock()
		taken := given[p]
		given[p] = true
		mu.Unlock()
		if taken {
			continue
		}
		ap := netip.AddrPortFrom(addr, p).String()
		var err error
		switch network {
		case "tcp":
			var ln net.Listener
			if ln, err = net.Listen("tcp", ap); err == nil {
				ln.Close()
			}
		case "udp":
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", ap); err == nil {
				c.Close()
			}
		default:
			t.Fatalf("porttest: network %q, want tcp or udp", network)
		}
		if err == nil {
			return p
		}
		mu.Lock()
		delete(given, p)
		mu.Unlock()
	}
	t.Fatalf("porttest: no free %s port on %v in %d tries", network, addr, tries)
	return 0
}
