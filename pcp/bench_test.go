package pcp_test

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
	"github.com/berthd/berth/pcp"
)

type nopBackend struct{}

func (nopBackend) Apply(context.Context, []backend.Change) error { return nil }
func (nopBackend) Sync(context.Context, []mapping.Mapping) error { return nil }
func (nopBackend) Close() error                                  { return nil }

var nonce = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func mapReq(client netip.Addr, proto uint8, internal, suggested uint16, life uint32) pcp.Request {
	return pcp.Request{Op: pcp.OpMap, Lifetime: life, Client: client, Nonce: nonce, Protocol: proto,
		InternalPort: internal, SuggestedPort: suggested}
}

func benchHost(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(1 + i%250)})
}

// BenchmarkRequestPath is the full path of a PCP MAP request, decode →
// Service → encode, with 10,000 mappings present: renewals (the common
// case: Tailscale and Apple renew at half the lifetime) and new mappings.
func BenchmarkRequestPath(b *testing.B) {
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindPCP: {Min: 120 * time.Second, Max: 24 * time.Hour}}})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	// setup is a Handler in front of a Service holding 10,000 PCP
	// mappings, and their requests.
	setup := func(b *testing.B) (*pcp.Handler, [][]byte) {
		svc := portmap.New(portmap.Config{Backend: nopBackend{}, Policy: pol, Clock: clocktest.NewFake(now),
			External: netip.MustParseAddr("203.0.113.2")})
		b.Cleanup(func() { svc.Close() })
		h := &pcp.Handler{Mapper: svc, Epoch: svc.Epoch}
		reqs := make([][]byte, 10_000)
		out := make([]byte, 0, pcp.MaxLen)
		for i := range reqs {
			reqs[i] = mapReq(benchHost(i), 17, 5000, 0, 3600).AppendTo(nil)
			from := netip.AddrPortFrom(benchHost(i), 5350)
			if reply := h.Handle(ctx, reqs[i], from, now, out[:0]); len(reply) != 60 || reply[3] != 0 {
				b.Fatalf("setup %d: reply % x", i, reply)
			}
		}
		return h, reqs
	}
	b.Run("renew", func(b *testing.B) {
		h, reqs := setup(b)
		out := make([]byte, 0, pcp.MaxLen)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := i % len(reqs)
			if reply := h.Handle(ctx, reqs[k], netip.AddrPortFrom(benchHost(k), 5350), now, out[:0]); len(reply) != 60 || reply[3] != 0 {
				b.Fatalf("reply % x", reply)
			}
		}
	})
	// A new mapping and its delete per op, so the table stays at 10,000;
	// ns/req and req/s count each of the two requests.
	b.Run("map-delete", func(b *testing.B) {
		h, _ := setup(b)
		client := netip.MustParseAddr("10.1.0.2")
		from := netip.AddrPortFrom(client, 5350)
		req := make([]byte, 0, pcp.MaxLen)
		out := make([]byte, 0, pcp.MaxLen)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			port := uint16(1024 + i%50000)
			req = mapReq(client, 6, port, 0, 3600).AppendTo(req[:0])
			if reply := h.Handle(ctx, req, from, now, out[:0]); len(reply) != 60 || reply[3] != 0 {
				b.Fatalf("map reply % x", reply)
			}
			req = mapReq(client, 6, port, 0, 0).AppendTo(req[:0])
			if reply := h.Handle(ctx, req, from, now, out[:0]); len(reply) != 60 || reply[3] != 0 {
				b.Fatalf("delete reply % x", reply)
			}
		}
		reportPerRequest(b, 2)
	})
}

// reportPerRequest adds ns/req and req/s to a benchmark whose op is perOp
// requests.
func reportPerRequest(b *testing.B, perOp int) {
	n := float64(b.N * perOp)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/req")
	b.ReportMetric(n/b.Elapsed().Seconds(), "req/s")
}
