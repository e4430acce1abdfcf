//go:build linux

package listener

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/golden"
)

// xnetIndex is what x/net's parser, which arrivalIndex replaced, makes of
// oob, but for one message: x/net also takes an interface index from
// IPV6_PATHMTU, which the listener never asks the kernel for (prepare sets
// only the PKTINFO option), so such messages are made unknown ones first.
func xnetIndex(oob []byte, v4 bool) int {
	if !v4 {
		oob = withoutPathMTU(oob)
	}
	if v4 {
		var cm ipv4.ControlMessage
		if cm.Parse(oob) != nil {
			return 0
		}
		return cm.IfIndex
	}
	var cm ipv6.ControlMessage
	if cm.Parse(oob) != nil {
		return 0
	}
	return cm.IfIndex
}

// withoutPathMTU returns a copy of oob with the type of every IPV6_PATHMTU
// message changed to one no parser knows.
func withoutPathMTU(oob []byte) []byte {
	out := aligned(oob)
	for rest := out; len(rest) >= unix.SizeofCmsghdr; {
		h, _, next, err := unix.ParseOneSocketControlMessage(rest)
		if err != nil {
			break
		}
		if h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PATHMTU {
			// cmsg_type follows cmsg_len (a size_t) and cmsg_level.
			binary.NativeEndian.PutUint32(rest[unix.SizeofCmsghdr-4:], 0x7fff)
		}
		rest = next
	}
	return out
}

// aligned returns a copy of b at an address the kernel's would have: the
// parsers read each header in place.
func aligned(b []byte) []byte {
	words := make([]uint64, (len(b)+7)/8+1)
	out := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(b))
	copy(out, b)
	return out
}

// The golden vectors are the kernel's bytes on a 64-bit little-endian
// machine.
func skipUnlessGoldenLayout(t *testing.T) {
	t.Helper()
	if unix.SizeofCmsghdr != 16 || binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden control messages are laid out for 64-bit little-endian Linux")
	}
}

func pktinfoVector(t testing.TB, name string) []byte {
	return aligned(golden.Hex(t, filepath.Join("testdata", name)))
}

func TestArrivalIndexGolden(t *testing.T) {
	skipUnlessGoldenLayout(t)
	v4 := pktinfoVector(t, "pktinfo4.txt")
	v6 := pktinfoVector(t, "pktinfo6.txt")
	for _, c := range []struct {
		name string
		oob  []byte
		v4   bool
		want int
	}{
		{"IPv4 PKTINFO then TTL", v4, true, 1},
		{"IPv6 PKTINFO then HOPLIMIT", v6, false, 1},
		// A socket of one family never reads the other's messages.
		{"IPv4 messages on an IPv6 socket", v4, false, 0},
		{"IPv6 messages on an IPv4 socket", v6, true, 0},
		{"TTL alone", v4[28+4:], true, 0},
		{"no control message", nil, true, 0},
		{"PKTINFO without its padding", v4[:28], true, 1},
		{"PKTINFO data cut short", v4[:27], true, 0},
		{"trailing bytes shorter than a header", aligned(append(append([]byte{}, v4...), 1, 2, 3)), true, 1},
	} {
		if got := arrivalIndex(c.oob, c.v4); got != c.want {
			t.Errorf("%s: arrivalIndex = %d, want %d", c.name, got, c.want)
		}
		if got := xnetIndex(c.oob, c.v4); got != c.want {
			t.Errorf("%s: x/net says %d, want %d (the test's expectation is wrong)", c.name, got, c.want)
		}
	}

	// The last PKTINFO counts.
	two := aligned(append(append([]byte{}, v4...), v4[:32]...))
	binary.NativeEndian.PutUint32(two[len(v4)+16:], 7)
	if got := arrivalIndex(two, true); got != 7 {
		t.Errorf("two PKTINFO messages, the second for interface 7: got %d", got)
	}
	// A malformed length anywhere voids the whole list, as x/net's error
	// did: the index must not come from bytes that may be garbage.
	bad := aligned(v4)
	binary.NativeEndian.PutUint64(bad[32:], 200) // the TTL's cmsg_len past the end
	if got := arrivalIndex(bad, true); got != 0 {
		t.Errorf("second header's length past the end: got %d, want 0", got)
	}
	binary.NativeEndian.PutUint64(bad[32:], 3) // shorter than a header
	if got := arrivalIndex(bad, true); got != 0 {
		t.Errorf("second header's length under a header's: got %d, want 0", got)
	}
	// Every prefix of the vectors, as a truncated control buffer
	// (MSG_CTRUNC) would give: the same answer as x/net.
	for _, v := range [][]byte{v4, v6} {
		for n := range len(v) + 1 {
			p := aligned(v[:n])
			for _, fam := range []bool{true, false} {
				if got, want := arrivalIndex(p, fam), xnetIndex(p, fam); got != want {
					t.Errorf("prefix of %d bytes, v4=%v: got %d, x/net %d", n, fam, got, want)
				}
			}
		}
	}
}

// The bytes the running kernel gives for a datagram on loopback, with a
// second control message beside PKTINFO: the reader reports lo's index,
// for IPv4 and IPv6 (skipped where the host has no IPv6 loopback, unless
// BERTH_E2E=1 asks for everything, as TestReaderArrivalInterface does).
func TestArrivalIndexKernel(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		a := netip.MustParseAddr(addr)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			if a.Is4() || os.Getenv("BERTH_E2E") == "1" {
				t.Fatal(err)
			}
			t.Skip("no IPv6 loopback; BERTH_E2E=1 makes this a failure:", err)
		}
		defer c.Close()
		if a.Is4() {
			err = ipv4.NewPacketConn(c).SetControlMessage(ipv4.FlagInterface|ipv4.FlagTTL, true)
		} else {
			err = ipv6.NewPacketConn(c).SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true)
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Write([]byte{2, 1}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetReadDeadline(clock.Real{}.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		r := newReader()
		pkt, ifIndex, _, err := r.read(&sock{bind: Bind{Addr: a}, conn: c})
		if err != nil {
			t.Fatal(err)
		}
		if string(pkt) != "\x02\x01" || ifIndex != lo.Index {
			t.Errorf("%s: read %x from interface %d, want 0201 from lo (%d)", addr, pkt, ifIndex, lo.Index)
		}
	}
}

// FuzzArrivalIndex checks arrivalIndex against x/net's parser, for both
// families, on any bytes in an aligned buffer.
func FuzzArrivalIndex(f *testing.F) {
	for _, name := range []string{"pktinfo4.txt", "pktinfo6.txt"} {
		v := golden.Hex(f, filepath.Join("testdata", name))
		f.Add(v)
		f.Add(v[:len(v)-5])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := aligned(b)
		for _, v4 := range []bool{true, false} {
			if got, want := arrivalIndex(p, v4), xnetIndex(p, v4); got != want {
				t.Fatalf("v4=%v: arrivalIndex %d, x/net %d, for %x", v4, got, want, b)
			}
		}
	})
}
