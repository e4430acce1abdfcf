package lease

import (
	"math/bits"

	"github.com/berthd/berth/internal/mapping"
)

// portSet is a bitmap of the external ports in use for one protocol.
// Finding the nearest free port scans at most 1,024 words in each
// direction: bounded work whatever the table size.
type portSet [65536 / 64]uint64

func (s *portSet) set(p uint16)          { s[p/64] |= 1 << (p % 64) }
func (s *portSet) clear(p uint16)        { s[p/64] &^= 1 << (p % 64) }
func (s *portSet) has(p uint16) bool     { return s[p/64]&(1<<(p%64)) != 0 }
func (s *portSet) free(p uint16) bool    { return !s.has(p) }
func lowMask(n uint16) uint64            { return (1 << n) - 1 } // bits below n (n < 64)
func highMask(n uint16) uint64           { return ^uint64(0) << n }
func (s *portSet) freeWord(i int) uint64 { return ^s[i] }

// nextFree returns the lowest free port in [from, hi].
func (s *portSet) nextFree(from, hi uint16) (uint16, bool) {
	if from > hi {
		return 0, false
	}
	w := int(from / 64)
	free := s.freeWord(w) & highMask(from%64)
	for {
		if free != 0 {
			p := uint16(w*64 + bits.TrailingZeros64(free))
			return p, p <= hi && p >= from
		}
		w++
		if w > int(hi/64) {
			return 0, false
		}
		free = s.freeWord(w)
	}
}

// prevFree returns the highest free port in [lo, from].
func (s *portSet) prevFree(from, lo uint16) (uint16, bool) {
	if from < lo {
		return 0, false
	}
	w := int(from / 64)
	free := s.freeWord(w)
	if from%64 != 63 {
		free &= lowMask(from%64 + 1)
	}
	for {
		if free != 0 {
			p := uint16(w*64 + 63 - bits.LeadingZeros64(free))
			return p, p >= lo && p <= from
		}
		w--
		if w < int(lo/64) {
			return 0, false
		}
		free = s.freeWord(w)
	}
}

// nearest returns the free port in ranges closest to hint; on a tie the
// higher port wins (clients that asked for a taken port commonly try the
// next one up). ranges are sorted and disjoint.
func (s *portSet) nearest(hint uint16, ranges []mapping.PortRange) (uint16, bool) {
	var best uint16
	bestDist := -1
	consider := func(p uint16) {
		d := int(p) - int(hint)
		if d < 0 {
			d = -d
		}
		if bestDist < 0 || d < bestDist || (d == bestDist && p > best) {
			best, bestDist = p, d
		}
	}
	for _, r := range ranges {
		if r.Empty() || r.Lo == 0 && r.Hi == 0 {
			continue
		}
		lo := max(r.Lo, 1) // port 0 is never allocated
		switch {
		case hint < lo:
			if p, ok := s.nextFree(lo, r.Hi); ok {
				consider(p)
			}
		case hint > r.Hi:
			if p, ok := s.prevFree(r.Hi, lo); ok {
				consider(p)
			}
		default:
			if p, ok := s.nextFree(hint, r.Hi); ok {
				consider(p)
			}
			if p, ok := s.prevFree(hint, lo); ok {
				consider(p)
			}
		}
		if bestDist == 0 {
			break
		}
	}
	return best, bestDist >= 0
}
