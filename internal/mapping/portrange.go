package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of ports. The zero value (0-0) is used by
// Filter to mean "any port"; elsewhere a range with Lo > Hi is empty.
type PortRange struct{ Lo, Hi uint16 }

// AllPorts is 0-65535.
var AllPorts = PortRange{0, 65535}

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// Empty reports whether the range holds no port.
func (r PortRange) Empty() bool { return r.Lo > r.Hi }

// String returns "lo-hi", or "p" for a single port.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// ParsePortRange accepts "p" or "lo-hi" with lo <= hi.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	l, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !found {
		return PortRange{l, l}, nil
	}
	h, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if l > h {
		return PortRange{}, fmt.Errorf("mapping: port range %q: low end above high end", s)
	}
	return PortRange{l, h}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("mapping: bad port %q", s)
	}
	return uint16(n), nil
}
