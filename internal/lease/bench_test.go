package lease

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

var sizes = []int{1_000, 100_000, 1_000_000}

// fill maps n mappings: UDP and TCP ports 1024.. spread over 256*N hosts
// in 10.0.0.0/8 so that per-client lists stay realistic (a few per host).
func fill(tb testing.TB, n int) *Table {
	t := New()
	all := []mapping.PortRange{{Lo: 1, Hi: 65535}}
	for i := range n {
		proto := mapping.UDP
		if i%2 == 1 {
			proto = mapping.TCP
		}
		host := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r := mapping.Request{
			Client:   host,
			Proto:    proto,
			Internal: netip.AddrPortFrom(host, 5000),
			Origin:   mapping.Origin{Kind: mapping.KindPCP},
		}
		// Ports are reused across external addresses so that a million
		// mappings fit; each address carries 65,535 ports per protocol.
		e := netip.AddrFrom4([4]byte{203, 0, byte(i / 131070), 1})
		r.Suggest = netip.AddrPortFrom(e, uint16(1+(i/2)%65535))
		r.Exact = true
		p, err := t.Allocate(r, e, all, t0.Add(time.Hour+time.Duration(i)*time.Millisecond))
		if err != nil {
			tb.Fatalf("fill %d: %v", i, err)
		}
		t.Commit(p)
	}
	return t
}

func BenchmarkMapNew(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			t := fill(b, n)
			host := netip.MustParseAddr("192.168.1.2")
			r := mapping.Request{Client: host, Proto: mapping.UDP, Internal: netip.AddrPortFrom(host, 1), Origin: mapping.Origin{Kind: mapping.KindNATPMP}}
			all := []mapping.PortRange{{Lo: 1, Hi: 65535}}
			e := netip.MustParseAddr("198.51.100.1")
			var ring [1000]mapping.Key // delete what was added 1,000 maps ago: size stays n+1000
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.Internal = netip.AddrPortFrom(host, uint16(1+i%60000))
				p, err := t.Allocate(r, e, all, t0.Add(time.Hour))
				if err != nil {
					b.Fatal(err)
				}
				t.Commit(p)
				slot := &ring[i%len(ring)]
				if slot.Proto != 0 {
					t.Delete(*slot)
				}
				*slot = p.Mapping.Key
			}
		})
	}
}

func BenchmarkRenew(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			t := fill(b, n)
			ms := sample(t, 1024)
			all := []mapping.PortRange{{Lo: 1, Hi: 65535}}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				m := ms[i%len(ms)]
				r := mapping.Request{Client: m.Client, Proto: m.Proto, Internal: m.Internal, Suggest: m.External, Exact: true, Origin: m.Origin}
				p, err := t.Allocate(r, m.External.Addr(), all, t0.Add(time.Duration(2+i%3)*time.Hour))
				if err != nil || !p.Renewal() {
					b.Fatalf("renew: %v renewal=%v", err, p.Renewal())
				}
				t.Commit(p)
			}
		})
	}
}

func BenchmarkUnmapAndRemap(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			t := fill(b, n)
			ms := sample(t, 1024)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				m := ms[i%len(ms)]
				if _, ok := t.Delete(m.Key); !ok {
					b.Fatal("missing")
				}
				t.Put(m)
			}
		})
	}
}

func BenchmarkExpire(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			t := fill(b, n)
			b.ResetTimer()
			for b.Loop() {
				next, _ := t.NextExpiry()
				got := t.Expire(next)
				for _, m := range got { // put it back, one lease later
					m.Expires = m.Expires.Add(2 * time.Hour)
					t.Put(m)
				}
			}
		})
	}
}

// BenchmarkMemory reports the heap bytes held per mapping.
func BenchmarkMemory(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				before := heap()
				t := fill(b, n)
				after := heap()
				b.ReportMetric(float64(after-before)/float64(n), "B/mapping")
				runtime.KeepAlive(t)
			}
		})
	}
}

func heap() uint64 {
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	return s.HeapAlloc
}

func sample(t *Table, k int) []mapping.Mapping {
	var out []mapping.Mapping
	step := max(t.Len()/k, 1)
	i := 0
	for m := range t.All() {
		if i%step == 0 {
			out = append(out, m)
		}
		i++
	}
	return out
}
