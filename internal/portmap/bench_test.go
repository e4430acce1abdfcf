package portmap

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// nop is a backend that accepts everything at no cost, so the benchmarks
// measure the Service itself.
type nop struct{}

func (nop) Apply(context.Context, []backend.Change) error { return nil }
func (nop) Sync(context.Context, []mapping.Mapping) error { return nil }
func (nop) Close() error                                  { return nil }

var benchSizes = []int{1_000, 100_000, 1_000_000}

// benchService returns a Service holding n mappings of hosts in
// 10.0.0.0/8. One external address has 65,535 ports per protocol, so a
// million mappings need several addresses; the Service's own external
// address is the first.
func benchService(b *testing.B, n int) (*Service, *clocktest.Fake) {
	b.Helper()
	return benchServiceWith(b, n, nop{})
}

// benchServiceWith is benchService with the backend be.
func benchServiceWith(b testing.TB, n int, be backend.Backend) (*Service, *clocktest.Fake) {
	b.Helper()
	pol, err := policy.New(policy.Config{
		LAN:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindNATPMP: {Min: time.Minute, Max: 24 * time.Hour}},
	})
	if err != nil {
		b.Fatal(err)
	}
	clk := clocktest.NewFake(t0)
	s := New(Config{Backend: be, Policy: pol, Clock: clk, External: extN(0)})
	for i := range n {
		proto := mapping.UDP
		if i%2 == 1 {
			proto = mapping.TCP
		}
		// Hosts from 10.0.0.1: 10.0.0.0 is the LAN's network address,
		// which the policy refuses.
		h := i + 1
		host := netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)})
		// The Service's own address holds at most 100,000 mappings (so new
		// ones still find ports); the rest go 128,000 to an address.
		addr, j := 0, i
		if i >= 100_000 {
			addr, j = 1+(i-100_000)/128_000, (i-100_000)%128_000
		}
		s.table.Put(mapping.Mapping{
			Key:      mapping.Key{Proto: proto, External: netip.AddrPortFrom(extN(addr), uint16(1024+j/2))},
			Internal: netip.AddrPortFrom(host, 5000),
			Client:   host,
			Origin:   mapping.Origin{Kind: mapping.KindNATPMP},
			Expires:  t0.Add(2*time.Hour + time.Duration(i)*time.Millisecond),
		})
	}
	s.schedule()
	return s, clk
}

func extN(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 127, byte(i), 1}) }

func BenchmarkServiceMap(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := benchService(b, n)
			host := netip.MustParseAddr("10.255.255.1")
			var ring [1000]mapping.Request
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r := mapping.Request{Client: host, Proto: mapping.UDP, Internal: netip.AddrPortFrom(host, uint16(1024+i%60000)),
					Lifetime: time.Hour, Origin: mapping.Origin{Kind: mapping.KindNATPMP}}
				if _, err := s.Map(ctx, r); err != nil {
					b.Fatal(err)
				}
				slot := &ring[i%len(ring)]
				if slot.Client.IsValid() {
					if err := s.Unmap(ctx, *slot); err != nil {
						b.Fatal(err)
					}
				}
				*slot = r
			}
		})
	}
}

func BenchmarkServiceRenew(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := benchService(b, n)
			ms := s.List(mapping.Filter{Ports: mapping.PortRange{Lo: 1024, Hi: 1100}})
			var rs []mapping.Request
			for _, m := range ms {
				if m.External.Addr() == extN(0) {
					rs = append(rs, mapping.Request{Client: m.Client, Proto: m.Proto, Internal: m.Internal, Lifetime: time.Hour, Origin: m.Origin})
				}
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := s.Map(ctx, rs[i%len(rs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkServiceUnmapRemap(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := benchService(b, n)
			var rs []mapping.Request
			for _, m := range s.List(mapping.Filter{Ports: mapping.PortRange{Lo: 1024, Hi: 1100}}) {
				if m.External.Addr() == extN(0) {
					rs = append(rs, mapping.Request{Client: m.Client, Proto: m.Proto, Internal: m.Internal, Lifetime: time.Hour, Origin: m.Origin})
				}
			}
			// Each half is timed on its own too, so that Unmap's cost is
			// visible without its Map (two clock reads, ~50 ns, per half).
			var unmap, remap time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r := rs[i%len(rs)]
				t0 := clock.Real{}.Now()
				if err := s.Unmap(ctx, r); err != nil {
					b.Fatal(err)
				}
				t1 := clock.Real{}.Now()
				if _, err := s.Map(ctx, r); err != nil {
					b.Fatal(err)
				}
				unmap += t1.Sub(t0)
				remap += clock.Real{}.Now().Sub(t1)
			}
			b.ReportMetric(float64(unmap.Nanoseconds())/float64(b.N), "unmap-ns/op")
			b.ReportMetric(float64(remap.Nanoseconds())/float64(b.N), "map-ns/op")
		})
	}
}

// BenchmarkServiceMemory reports the heap a Service holds per mapping:
// the lease table and its indexes with the Service around them.
func BenchmarkServiceMemory(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				before := heapInUse()
				s, _ := benchService(b, n)
				after := heapInUse()
				b.ReportMetric(float64(after-before)/float64(n), "B/mapping")
				s.Close()
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkServiceExpire lets one lease expire per iteration through the
// timer path and puts it back with a later deadline.
func BenchmarkServiceExpire(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, clk := benchService(b, n)
			sub := s.Subscribe(1)
			defer sub.Cancel()
			b.ResetTimer()
			for b.Loop() {
				next, _ := s.table.NextExpiry()
				clk.Set(next)
				select {
				case e := <-sub.C():
					m := e.Mapping
					m.Expires = m.Expires.Add(2 * time.Hour)
					s.mu.Lock()
					s.table.Put(m)
					s.schedule()
					s.mu.Unlock()
				default:
					b.Fatal("nothing expired")
				}
			}
		})
	}
}

// BenchmarkListOnePort measures List for one external port
// (GetSpecificPortMappingEntry, the IGD listing's lease refresh): the cost
// should not grow with the table.
func BenchmarkListOnePort(b *testing.B) {
	for _, n := range benchSizes[:2] {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := benchService(b, n)
			defer s.Close()
			f := mapping.Filter{Proto: mapping.TCP, Ports: mapping.PortRange{Lo: 1100, Hi: 1100}}
			for b.Loop() {
				if len(s.List(f)) != 1 {
					b.Fatal("no mapping on the port")
				}
			}
		})
	}
}

// slowApply is a backend whose every Apply takes a while, as a netlink
// transaction does, and counts them.
type slowApply struct {
	nop
	applies atomic.Int64
}

func (s *slowApply) Apply(context.Context, []backend.Change) error {
	s.applies.Add(1)
	time.Sleep(50 * time.Microsecond)
	return nil
}

// BenchmarkServiceMapParallel is 16 clients making new mappings at once,
// each waiting for its own, as the NAT-PMP/PCP responder's workers do.
// One op is 16,000 mappings on a fresh Service; batches/mapping is the
// backend transactions per mapping: below 1 when concurrent requests
// share them (applier.go).
func BenchmarkServiceMapParallel(b *testing.B) {
	const clients, each = 16, 1000
	var applies, mappings int64
	for b.Loop() {
		b.StopTimer()
		be := &slowApply{}
		s, _ := benchServiceWith(b, 0, be)
		b.StartTimer()
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for i := range each {
					host := netip.AddrFrom4([4]byte{10, 1, byte(c), byte(i % 250)})
					proto := mapping.UDP
					if i/250%2 == 1 {
						proto = mapping.TCP
					}
					r := mapping.Request{Client: host, Proto: proto, Internal: netip.AddrPortFrom(host, uint16(2000+i/500)),
						Lifetime: time.Hour, Origin: mapping.Origin{Kind: mapping.KindNATPMP}}
					if _, err := s.Map(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		applies += be.applies.Load()
		mappings += clients * each
		b.StartTimer()
	}
	b.ReportMetric(float64(applies)/float64(mappings), "batches/mapping")
}

// BenchmarkServiceMoveAll is a WAN address change with 1,000 and 100,000
// mappings: SetExternalAddr moves every one, holding the Service's lock,
// on a backend that does nothing and without a lease store (the nft
// backend's part: BenchmarkMoveAll in internal/backend/nft).
func BenchmarkServiceMoveAll(b *testing.B) {
	for _, n := range benchSizes[:2] {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := benchService(b, n)
			addrs := [2]netip.Addr{extN(200), extN(0)}
			for i := 0; b.Loop(); i++ {
				if err := s.SetExternalAddr(ctx, addrs[i%2]); err != nil {
					b.Fatal(err)
				}
			}
			if got := len(s.List(mapping.Filter{})); got != n {
				b.Fatalf("%d mappings after the moves, want %d", got, n)
			}
		})
	}
}

// A renewal is the request clients send most (every few minutes each,
// COMPAT N7): it must not put the Service's working state on the heap.
// Taking the address of a field of the allocation plan once did, for
// every request: 424 bytes in two allocations per renewal instead of 8
// in one, and a quarter more time (BenchmarkServiceRenew).
func TestRenewalAllocatesLittle(t *testing.T) {
	s, _ := benchServiceWith(t, 1000, nop{})
	m := s.List(mapping.Filter{})[0]
	r := mapping.Request{Client: m.Client, Proto: m.Proto, Internal: m.Internal, Lifetime: time.Hour, Origin: m.Origin}
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.Map(ctx, r); err != nil {
			t.Fatal(err)
		}
	}); allocs > 1 {
		t.Errorf("%v allocations per renewal, want at most 1", allocs)
	}
}
