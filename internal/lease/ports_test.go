package lease

import (
	"math/rand/v2"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// TestNearestMatchesLinearScan compares the bitmap search with the obvious
// scan over every port, on random occupancy and ranges.
func TestNearestMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		var s portSet
		density := rng.Float64()
		for p := range 65536 {
			if rng.Float64() < density {
				s.set(uint16(p))
			}
		}
		var ranges []mapping.PortRange
		lo := 0
		for len(ranges) < 3 && lo < 65536 {
			a := lo + rng.IntN(20000)
			b := a + rng.IntN(3000)
			if b > 65535 {
				break
			}
			ranges = append(ranges, mapping.PortRange{Lo: uint16(a), Hi: uint16(b)})
			lo = b + 1
		}
		hint := uint16(rng.IntN(65536))
		got, gotOK := s.nearest(hint, ranges)
		want, wantOK := linearNearest(&s, hint, ranges)
		if got != want || gotOK != wantOK {
			t.Fatalf("iter %d: nearest(%d, %v) = %d,%v; want %d,%v", iter, hint, ranges, got, gotOK, want, wantOK)
		}
	}
}

func linearNearest(s *portSet, hint uint16, ranges []mapping.PortRange) (uint16, bool) {
	best, bestDist := uint16(0), -1
	for _, r := range ranges {
		for p := int(r.Lo); p <= int(r.Hi); p++ {
			if p == 0 || s.has(uint16(p)) {
				continue
			}
			d := p - int(hint)
			if d < 0 {
				d = -d
			}
			if bestDist < 0 || d < bestDist || d == bestDist && uint16(p) > best {
				best, bestDist = uint16(p), d
			}
		}
	}
	return best, bestDist >= 0
}

func TestPortZeroNeverAllocated(t *testing.T) {
	var s portSet
	if p, ok := s.nearest(0, []mapping.PortRange{{Lo: 0, Hi: 1}}); !ok || p != 1 {
		t.Fatalf("got %d,%v, want port 1", p, ok)
	}
}
