package nft

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// nth is the i-th of many distinct mappings: external port and address
// vary so that 100,000 keys fit.
func nth(i int) mapping.Mapping {
	ext := netip.AddrFrom4([4]byte{203, 0, 113, byte(i / 60000)})
	in := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return mapping.Mapping{
		Key:      mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, uint16(1024+i%60000))},
		Internal: netip.AddrPortFrom(in, 80),
	}
}

// mixed is nth(i), UDP for even i: TCP and UDP alternating, as clients
// send them.
func mixed(i int) mapping.Mapping {
	m := nth(i)
	if i%2 == 0 {
		m.Proto = mapping.UDP
	}
	return m
}

// berthdConfig is the table as berthd configures it
// (internal/daemon/backend.go): hairpin and source-port preservation.
var berthdConfig = Config{WANInterface: "wan0", Hairpin: true, PreserveSourcePort: true}

// BenchmarkApplyAdd measures one Apply that adds one mapping (and one that
// deletes it, to keep the count) with 1, 1,000 and 100,000 mappings
// installed. The cost should be flat: a batch touches only its elements.
//
// berthd is the table as berthd configures it, with TCP and UDP mappings
// installed and a UDP mapping added, which also adds its element to
// snat_udp; bare is a table without hairpin and source-port preservation,
// with TCP mappings only.
func BenchmarkApplyAdd(b *testing.B) {
	variants := []struct {
		name      string
		cfg       Config
		installed func(i int) mapping.Mapping
		proto     mapping.Protocol // of the mapping added
	}{
		{"berthd", berthdConfig, mixed, mapping.UDP},
		{"bare", Config{}, nth, mapping.TCP},
	}
	for _, v := range variants {
		for _, present := range []int{1, 1000, 100000} {
			b.Run(fmt.Sprintf("%s/present=%d", v.name, present), func(b *testing.B) {
				ctx := context.Background()
				ns := newNetNS(b)
				c := v.cfg
				c.Conn, c.PortID = ns.lastingConn(b)
				c.Conntrack = ns.conntrack(b)
				n, err := New(c)
				if err != nil {
					b.Fatal(err)
				}
				defer n.Close()
				want := make([]mapping.Mapping, present)
				for i := range want {
					want[i] = v.installed(i)
				}
				if err := n.Sync(ctx, want); err != nil {
					b.Fatalf("Sync of %d mappings: %v", present, err)
				}
				m := nth(present)
				m.Proto = v.proto
				cs := []backend.Change{{Op: backend.Add, Mapping: m}}
				ds := []backend.Change{{Op: backend.Delete, Mapping: m}}
				b.ResetTimer()
				for b.Loop() {
					if err := n.Apply(ctx, cs); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := n.Apply(ctx, ds); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkSyncFromEmpty is the kernel's part of berthd's restart: one
// Sync of n stored mappings into a new table, configured as berthd
// configures it (hairpin, source-port preservation).
func BenchmarkSyncFromEmpty(b *testing.B) {
	for _, size := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("n=%d", size), func(b *testing.B) {
			ctx := context.Background()
			ns := newNetNS(b)
			c, port := ns.lastingConn(b)
			want := make([]mapping.Mapping, size)
			for i := range want {
				want[i] = nth(i)
			}
			for b.Loop() {
				b.StopTimer()
				n, err := New(Config{Conn: c, PortID: port, Conntrack: ns.conntrack(b), WANInterface: "wan0", Hairpin: true, PreserveSourcePort: true})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := n.Sync(ctx, want); err != nil {
					b.Fatalf("Sync of %d mappings: %v", size, err)
				}
				b.StopTimer()
				n.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkApplyBatch measures one Apply of 1, 4 and 16 new mappings,
// TCP and UDP alternating as clients send them, with 10,000 installed,
// configured as berthd configures the table (hairpin, source-port
// preservation): the batches a burst of NAT-PMP or PCP requests makes. The
// sizes show what a batch costs whatever its size and what each mapping
// adds.
func BenchmarkApplyBatch(b *testing.B) {
	const present = 10000
	ctx := context.Background()
	ns := newNetNS(b)
	c, port := ns.lastingConn(b)
	cfg := berthdConfig
	cfg.Conn, cfg.PortID, cfg.Conntrack = c, port, ns.conntrack(b)
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	want := make([]mapping.Mapping, present)
	for i := range want {
		want[i] = mixed(i)
	}
	if err := n.Sync(ctx, want); err != nil {
		b.Fatalf("Sync of %d mappings: %v", present, err)
	}
	for _, batch := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			cs := make([]backend.Change, batch)
			ds := make([]backend.Change, batch)
			for i := range cs {
				m := mixed(present + i)
				cs[i] = backend.Change{Op: backend.Add, Mapping: m}
				ds[i] = backend.Change{Op: backend.Delete, Mapping: m}
			}
			var msgs uint64
			for b.Loop() {
				before := n.Stats().Messages
				if err := n.Apply(ctx, cs); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				msgs += n.Stats().Messages - before
				if err := n.Apply(ctx, ds); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/mapping")
			b.ReportMetric(float64(msgs)/float64(b.N), "msgs/batch")
		})
	}
}

// BenchmarkMoveAll is a WAN address change with n mappings installed:
// one Apply that deletes every mapping and adds it again on the new
// external address (portmap's SetExternalAddr), and one that moves them
// back.
func BenchmarkMoveAll(b *testing.B) {
	for _, size := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("n=%d", size), func(b *testing.B) {
			ctx := context.Background()
			ns := newNetNS(b)
			cfg := berthdConfig
			cfg.Conn, cfg.PortID = ns.lastingConn(b)
			cfg.Conntrack = ns.conntrack(b)
			n, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			at := func(ext netip.Addr) []mapping.Mapping {
				ms := make([]mapping.Mapping, size)
				for i := range ms {
					ms[i] = mixed(i)
					ms[i].External = netip.AddrPortFrom(ext, ms[i].External.Port())
					if i >= 60000 { // ports repeat: another protocol keeps the keys apart
						ms[i].Proto = mapping.TCP + mapping.UDP - ms[i].Proto
					}
				}
				return ms
			}
			a, z := at(netip.MustParseAddr("198.51.100.1")), at(netip.MustParseAddr("198.51.100.2"))
			if err := n.Sync(ctx, a); err != nil {
				b.Fatalf("Sync of %d mappings: %v", size, err)
			}
			move := func(from, to []mapping.Mapping) []backend.Change {
				cs := make([]backend.Change, 0, 2*len(from))
				for _, m := range from {
					cs = append(cs, backend.Change{Op: backend.Delete, Mapping: m})
				}
				for _, m := range to {
					cs = append(cs, backend.Change{Op: backend.Add, Mapping: m})
				}
				return cs
			}
			there, back := move(a, z), move(z, a)
			for b.Loop() {
				if err := n.Apply(ctx, there); err != nil {
					b.Fatalf("move %d mappings: %v", size, err)
				}
				if err := n.Apply(ctx, back); err != nil {
					b.Fatalf("move %d mappings back: %v", size, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/move")
		})
	}
}
