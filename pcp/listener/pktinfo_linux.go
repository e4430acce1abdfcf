//go:build linux

package listener

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// arrivalIndex returns the index of the interface a packet arrived on,
// from the IP_PKTINFO (v4) or IPV6_PKTINFO control message that prepare
// asked the kernel for; 0 when oob holds none or is malformed. When oob
// holds several, the last counts. oob must be as the kernel filled it,
// starting at an aligned address (each header is read in place).
//
// It gives what x/net's ControlMessage.Parse gives (FuzzArrivalIndex
// checks that), without the list of messages that one allocates for every
// packet: that allocation and the collector's work it caused were about 2%
// of berthd's CPU for each new NAT-PMP mapping.
func arrivalIndex(oob []byte, v4 bool) int {
	idx := 0
	// Trailing bytes too short for a header end the list, as in x/net.
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		switch {
		case v4 && h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: int ipi_ifindex first.
			idx = int(int32(binary.NativeEndian.Uint32(data)))
		case !v4 && h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo: the address, then int ipi6_ifindex (the
			// kernel's type; x/sys declares it unsigned).
			idx = int(int32(binary.NativeEndian.Uint32(data[16:])))
		}
		oob = rest
	}
	return idx
}
