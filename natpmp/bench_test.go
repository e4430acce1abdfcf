package natpmp_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
)

type nopBackend struct{}

func (nopBackend) Apply(context.Context, []backend.Change) error { return nil }
func (nopBackend) Sync(context.Context, []mapping.Mapping) error { return nil }
func (nopBackend) Close() error                                  { return nil }

// benchHandler is a Handler in front of a Service holding n NAT-PMP
// mappings of hosts in 10.0.0.0/16.
func benchHandler(b *testing.B, n int) (*natpmp.Handler, *clocktest.Fake) {
	b.Helper()
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour}}})
	if err != nil {
		b.Fatal(err)
	}
	clk := clocktest.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	svc := portmap.New(portmap.Config{Backend: nopBackend{}, Policy: pol, Clock: clk, External: netip.MustParseAddr("203.0.113.2")})
	b.Cleanup(func() { svc.Close() })
	h := &natpmp.Handler{Mapper: svc, Epoch: svc.Epoch}
	for i := range n {
		host := benchHost(i)
		if _, err := svc.Map(context.Background(), mapping.Request{Client: host, Proto: mapping.UDP,
			Internal: netip.AddrPortFrom(host, 5000), Lifetime: time.Hour, Origin: mapping.Origin{Kind: mapping.KindNATPMP}}); err != nil {
			b.Fatal(err)
		}
	}
	return h, clk
}

// BenchmarkRequestPath is the full path of a NAT-PMP map request, decode →
// Service → encode, with 10,000 mappings present: renewals (the common
// case: clients renew every few minutes) and new mappings.
func BenchmarkRequestPath(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	b.Run("renew", func(b *testing.B) {
		h, _ := benchHandler(b, 10_000)
		req := natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 5000, Lifetime: 3600}.AppendTo(nil)
		out := make([]byte, 0, 16)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			from := netip.AddrPortFrom(benchHost(i%10_000), 5350)
			if reply := h.Handle(ctx, req, from, now, out[:0]); len(reply) != 16 || reply[3] != 0 {
				b.Fatalf("reply % x", reply)
			}
		}
	})
	b.Run("map-delete", func(b *testing.B) {
		h, _ := benchHandler(b, 10_000)
		from := netip.AddrPortFrom(netip.MustParseAddr("10.1.0.2"), 5350)
		out := make([]byte, 0, 16)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			port := uint16(1024 + i%50000)
			m := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: port, Lifetime: 3600}.AppendTo(nil)
			if reply := h.Handle(ctx, m, from, now, out[:0]); len(reply) != 16 || reply[3] != 0 {
				b.Fatalf("map reply % x", reply)
			}
			d := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: port}.AppendTo(nil)
			if reply := h.Handle(ctx, d, from, now, out[:0]); len(reply) != 16 || reply[3] != 0 {
				b.Fatalf("delete reply % x", reply)
			}
		}
		// Two requests per op: per request as well.
		n := float64(2 * b.N)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/req")
		b.ReportMetric(n/b.Elapsed().Seconds(), "req/s")
	})
	b.Run("address", func(b *testing.B) {
		h, _ := benchHandler(b, 10_000)
		req := natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil)
		from := netip.AddrPortFrom(benchHost(0), 5350)
		out := make([]byte, 0, 16)
		for b.Loop() {
			if reply := h.Handle(ctx, req, from, now, out[:0]); len(reply) != 12 {
				b.Fatalf("reply % x", reply)
			}
		}
	})
}

// benchHost is the i-th host: 10.0.x.1 to 10.0.x.250.
func benchHost(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(1 + i%250)})
}
