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

// BenchmarkRequestPath is a PCP MAP renewal, decode → Service → encode,
// with 10,000 mappings present (COMPAT: Tailscale and Apple renew at half
// the lifetime, so renewals dominate).
func BenchmarkRequestPath(b *testing.B) {
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, SecureMode: true,
		Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindPCP: {Min: 120 * time.Second, Max: 24 * time.Hour}}})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	svc := portmap.New(portmap.Config{Backend: nopBackend{}, Policy: pol, Clock: clocktest.NewFake(now),
		External: netip.MustParseAddr("203.0.113.2")})
	defer svc.Close()
	h := &pcp.Handler{Mapper: svc, Epoch: svc.Epoch}
	ctx := context.Background()
	reqs := make([][]byte, 10_000)
	out := make([]byte, 0, pcp.MaxLen)
	for i := range reqs {
		reqs[i] = mapReq(benchHost(i), 17, 5000, 0, 3600).AppendTo(nil)
		from := netip.AddrPortFrom(benchHost(i), 5350)
		if reply := h.Handle(ctx, reqs[i], from, now, out[:0]); len(reply) != 60 || reply[3] != 0 {
			b.Fatalf("setup %d: reply % x", i, reply)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % len(reqs)
		if reply := h.Handle(ctx, reqs[k], netip.AddrPortFrom(benchHost(k), 5350), now, out[:0]); len(reply) != 60 || reply[3] != 0 {
			b.Fatalf("reply % x", reply)
		}
	}
}
