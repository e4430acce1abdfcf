package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

func TestRangeSet(t *testing.T) {
	set := func(rs ...mapping.PortRange) []mapping.PortRange { return rs }
	tests := []struct {
		name string
		op   func([]mapping.PortRange, mapping.PortRange) []mapping.PortRange
		in   []mapping.PortRange
		r    mapping.PortRange
		want []mapping.PortRange
	}{
		{"union into empty", union, nil, ports(5, 9), set(ports(5, 9))},
		{"union before", union, set(ports(10, 20)), ports(1, 5), set(ports(1, 5), ports(10, 20))},
		{"union after", union, set(ports(10, 20)), ports(30, 40), set(ports(10, 20), ports(30, 40))},
		{"union touching below", union, set(ports(10, 20)), ports(5, 9), set(ports(5, 20))},
		{"union touching above", union, set(ports(10, 20)), ports(21, 25), set(ports(10, 25))},
		{"union bridging", union, set(ports(1, 5), ports(10, 20), ports(30, 40)), ports(6, 29), set(ports(1, 40))},
		{"union inside", union, set(ports(1, 50)), ports(6, 29), set(ports(1, 50))},
		{"union top", union, set(ports(0, 0)), ports(65535, 65535), set(ports(0, 0), ports(65535, 65535))},
		{"union all", union, set(ports(0, 0), ports(65535, 65535)), ports(1, 65534), set(mapping.AllPorts)},
		{"subtract miss", subtract, set(ports(10, 20)), ports(21, 30), set(ports(10, 20))},
		{"subtract split", subtract, set(ports(10, 20)), ports(15, 15), set(ports(10, 14), ports(16, 20))},
		{"subtract across", subtract, set(ports(1, 5), ports(10, 20), ports(30, 40)), ports(3, 35), set(ports(1, 2), ports(36, 40))},
		{"subtract whole", subtract, set(ports(1, 5), ports(10, 20)), mapping.AllPorts, set()},
		{"subtract edges", subtract, set(mapping.AllPorts), ports(0, 0), set(ports(1, 65535))},
		{"subtract top", subtract, set(mapping.AllPorts), ports(65535, 65535), set(ports(0, 65534))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.op(slices.Clone(tt.in), tt.r)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%v op %v: got %v, want %v", tt.in, tt.r, got, tt.want)
			}
		})
	}
}

// TestDecideMatchesModel compares Decide's Ports with a port-by-port model
// of first-match-wins on random rule sets. The allowed set is piecewise
// constant between range edges, so checking every edge and its neighbours
// (of the rules, the reserved blocks and the answer) proves equality.
func TestDecideMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randRange := func() mapping.PortRange {
		if rng.IntN(8) == 0 {
			return mapping.AllPorts
		}
		// Cluster near both ends of the port space to hit the edges.
		a, b := uint16(rng.IntN(300)), uint16(rng.IntN(300))
		if rng.IntN(3) == 0 {
			a, b = 65535-a, 65535-b
		}
		return mapping.PortRange{Lo: min(a, b), Hi: max(a, b)}
	}
	hosts := []netip.Prefix{lan4, netip.MustParsePrefix("192.168.0.5/32"), netip.MustParsePrefix("192.168.0.128/25")}
	r := req("192.168.0.5", "192.168.0.5:100", 0, false)

	for i := range 500 {
		var rules []Rule
		for range 1 + rng.IntN(10) {
			rules = append(rules, Rule{
				Allow:    rng.IntN(2) == 0,
				External: randRange(),
				Internal: hosts[rng.IntN(len(hosts))],
				IntPorts: randRange(),
			})
		}
		var res []Reserved
		for range rng.IntN(3) {
			res = append(res, Reserved{Proto: []mapping.Protocol{0, mapping.TCP, mapping.UDP}[rng.IntN(3)], Ports: randRange()})
		}
		p, err := New(Config{LAN: []netip.Prefix{lan4}, Rules: rules, Reserved: res})
		if err != nil {
			t.Fatal(err)
		}
		d := p.Decide(r, Usage{})

		model := func(port uint16) bool {
			for _, rs := range res {
				if (rs.Proto == 0 || rs.Proto == r.Proto) && rs.Ports.Contains(port) {
					return false
				}
			}
			for _, ru := range rules {
				if ru.Internal.Contains(r.Internal.Addr()) && ru.IntPorts.Contains(r.Internal.Port()) && ru.External.Contains(port) {
					return ru.Allow
				}
			}
			return false
		}
		var edges []mapping.PortRange
		for _, ru := range rules {
			edges = append(edges, ru.External)
		}
		for _, rs := range res {
			edges = append(edges, rs.Ports)
		}
		edges = append(edges, d.Ports...)
		edges = append(edges, mapping.AllPorts)
		name := fmt.Sprintf("case %d rules %v reserved %v", i, rules, res)
		checkNormal(t, name, d.Ports)
		for _, e := range edges {
			for _, port := range []int{int(e.Lo) - 1, int(e.Lo), int(e.Hi), int(e.Hi) + 1} {
				if port < 0 || port > 65535 {
					continue
				}
				if got, want := holds(d.Ports, uint16(port)), model(uint16(port)); got != want {
					t.Fatalf("%s: port %d: got allowed %v, want %v (Ports %v)", name, port, got, want, d.Ports)
				}
			}
		}
		if d.Allow != (len(d.Ports) > 0) {
			t.Fatalf("%s: got Allow %v with Ports %v", name, d.Allow, d.Ports)
		}
	}
}

// checkNormal fails unless set is sorted, non-empty ranges that neither
// overlap nor touch.
func checkNormal(t *testing.T, name string, set []mapping.PortRange) {
	t.Helper()
	for i, r := range set {
		if r.Empty() || (i > 0 && int(set[i-1].Hi)+1 >= int(r.Lo)) {
			t.Fatalf("%s: got Ports %v, want sorted disjoint non-touching ranges", name, set)
		}
	}
}
