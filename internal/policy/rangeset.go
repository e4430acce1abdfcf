package policy

import (
	"slices"

	"github.com/berthd/berth/internal/mapping"
)

// A range set is a []mapping.PortRange that is sorted, whose ranges are
// non-empty and disjoint, and in which no two ranges touch (4-5 and 6-9
// are stored as 4-9). The helpers below keep that form. They work in place
// and return the updated slice, like append, so Decide can run them on
// small stack buffers. Arithmetic is done in int so that 65535+1 and 0-1
// cannot wrap.

// union adds r to set.
func union(set []mapping.PortRange, r mapping.PortRange) []mapping.PortRange {
	i := 0
	for i < len(set) && int(set[i].Hi)+1 < int(r.Lo) {
		i++
	}
	j := i
	for j < len(set) && int(set[j].Lo) <= int(r.Hi)+1 {
		j++
	}
	if i < j {
		r.Lo = min(r.Lo, set[i].Lo)
		r.Hi = max(r.Hi, set[j-1].Hi)
	}
	return slices.Replace(set, i, j, r)
}

// subtract removes r from set.
func subtract(set []mapping.PortRange, r mapping.PortRange) []mapping.PortRange {
	i := 0
	for i < len(set) && set[i].Hi < r.Lo {
		i++
	}
	j := i
	for j < len(set) && set[j].Lo <= r.Hi {
		j++
	}
	if i == j {
		return set
	}
	var keep [2]mapping.PortRange
	n := 0
	if set[i].Lo < r.Lo {
		keep[n] = mapping.PortRange{Lo: set[i].Lo, Hi: r.Lo - 1}
		n++
	}
	if set[j-1].Hi > r.Hi {
		keep[n] = mapping.PortRange{Lo: r.Hi + 1, Hi: set[j-1].Hi}
		n++
	}
	return slices.Replace(set, i, j, keep[:n]...)
}

// addUncovered adds to a the ports of r that are not in covered.
func addUncovered(a, covered []mapping.PortRange, r mapping.PortRange) []mapping.PortRange {
	lo := int(r.Lo)
	for _, c := range covered {
		if int(c.Hi) < lo {
			continue
		}
		if int(c.Lo) > int(r.Hi) {
			break
		}
		if int(c.Lo) > lo {
			a = union(a, mapping.PortRange{Lo: uint16(lo), Hi: c.Lo - 1})
		}
		lo = int(c.Hi) + 1
		if lo > int(r.Hi) {
			return a
		}
	}
	if lo <= int(r.Hi) {
		a = union(a, mapping.PortRange{Lo: uint16(lo), Hi: r.Hi})
	}
	return a
}

// covers reports whether every port of r is in set. Because touching
// ranges are merged, that means one range of set holds all of r.
func covers(set []mapping.PortRange, r mapping.PortRange) bool {
	for _, s := range set {
		if s.Lo <= r.Lo && r.Hi <= s.Hi {
			return true
		}
		if s.Lo > r.Lo {
			return false
		}
	}
	return false
}

// overlaps reports whether some port of r is in set.
func overlaps(set []mapping.PortRange, r mapping.PortRange) bool {
	for _, s := range set {
		if s.Lo > r.Hi {
			return false
		}
		if s.Hi >= r.Lo {
			return true
		}
	}
	return false
}

// holds reports whether port p is in set.
func holds(set []mapping.PortRange, p uint16) bool {
	return covers(set, mapping.PortRange{Lo: p, Hi: p})
}
