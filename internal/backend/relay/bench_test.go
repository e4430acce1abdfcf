package relay

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

// BenchmarkApply measures adding and then deleting mappings, each with its
// own socket, per mapping.
func BenchmarkApply(b *testing.B) {
	for _, proto := range []mapping.Protocol{mapping.TCP, mapping.UDP} {
		for _, n := range []int{1, 64} {
			b.Run(proto.String()+"/batch="+strconv.Itoa(n), func(b *testing.B) {
				r, _ := newRelay(b, Config{})
				seen := make(map[uint16]bool)
				var ms []mapping.Mapping
				for len(ms) < n {
					p := freePort(b, proto)
					if !seen[p] {
						seen[p] = true
						ms = append(ms, mkMap(proto, netip.AddrPortFrom(lo, p), netip.AddrPortFrom(lo, 9)))
					}
				}
				add, del := changes(backend.Add, ms...), changes(backend.Delete, ms...)
				ctx := context.Background()
				for b.Loop() {
					if err := r.Apply(ctx, add); err != nil {
						b.Fatal(err)
					}
					if err := r.Apply(ctx, del); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/mapping")
			})
		}
	}
}

// BenchmarkUDPRoundTrip measures one 64-byte datagram relayed to an echo
// server and back.
func BenchmarkUDPRoundTrip(b *testing.B) {
	r, _ := newRelay(b, Config{})
	echo, _ := udpEcho(b, "")
	m := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(b, mapping.UDP)), echo)
	mustApply(b, r, changes(backend.Add, m)...)
	c := udpClient(b, lo)
	c.SetReadDeadline(clock.Real{}.Now().Add(time.Minute))
	msg, buf := make([]byte, 64), make([]byte, 2048)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := c.WriteToUDPAddrPort(msg, m.External); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTCPThroughput measures bytes relayed to an echo server and back
// over one connection, in 64 KiB writes.
func BenchmarkTCPThroughput(b *testing.B) {
	r, _ := newRelay(b, Config{})
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	})
	m := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(b, mapping.TCP)), netip.MustParseAddrPort(l.Addr().String()))
	mustApply(b, r, changes(backend.Add, m)...)
	c, err := tcpClient(b, lo, m.External)
	if err != nil {
		b.Fatal(err)
	}
	c.SetDeadline(clock.Real{}.Now().Add(time.Minute))
	msg, buf := make([]byte, 64<<10), make([]byte, 64<<10)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
