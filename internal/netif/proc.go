package netif

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/berthd/berth/internal/mapping"
)

// Listener is a socket on the router that owns a local port: a listening
// TCP socket or a bound, unconnected UDP socket. berth keeps such ports
// out of the external ports it hands out.
type Listener struct {
	Proto mapping.Protocol
	// Addr is the local address and port; an unspecified address (0.0.0.0
	// or ::) means every address. IPv4-mapped IPv6 addresses are shown as
	// IPv4.
	Addr netip.AddrPort
}

// String formats the listener as "TCP 0.0.0.0:22".
func (l Listener) String() string { return l.Proto.String() + " " + l.Addr.String() }

// ListeningPorts returns the TCP sockets in LISTEN state and the UDP
// sockets that are bound but not connected, from /proc/net/{tcp,tcp6,udp,
// udp6} (proc(5)), sorted by port, protocol and address, without
// duplicates. Missing tcp6 and udp6 files (IPv6 disabled) are not an error.
// It works only on Linux.
func ListeningPorts() ([]Listener, error) {
	return listening("/proc/net", binary.NativeEndian)
}

// Socket states in the "st" column (include/net/tcp_states.h).
const (
	stateListen = 0x0a // TCP_LISTEN
	stateClose  = 0x07 // TCP_CLOSE: what an unconnected UDP socket shows
)

// listening reads the four files in dir. order is the byte order of the
// host that wrote them.
func listening(dir string, order binary.ByteOrder) ([]Listener, error) {
	files := []struct {
		name     string
		proto    mapping.Protocol
		optional bool
	}{
		{"tcp", mapping.TCP, false},
		{"tcp6", mapping.TCP, true},
		{"udp", mapping.UDP, false},
		{"udp6", mapping.UDP, true},
	}
	var all []Listener
	for _, f := range files {
		name := filepath.Join(dir, f.name)
		data, err := os.ReadFile(name)
		if f.optional && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netif: %w", err)
		}
		ls, err := parseProcNet(data, f.proto, order)
		if err != nil {
			return nil, fmt.Errorf("netif: %s: %w", name, err)
		}
		all = append(all, ls...)
	}
	slices.SortFunc(all, compareListeners)
	return slices.Compact(all), nil
}

func compareListeners(a, b Listener) int {
	return cmp.Or(
		cmp.Compare(a.Addr.Port(), b.Addr.Port()),
		cmp.Compare(a.Proto, b.Proto),
		a.Addr.Addr().Compare(b.Addr.Addr()),
	)
}

// parseProcNet parses one /proc/net/{tcp,tcp6,udp,udp6} file and returns
// its listening (TCP) or unconnected (UDP) sockets in file order. The first
// line is the column header. In each socket line the second field is the
// local address as HEXADDR:HEXPORT, where HEXADDR is 8 or 32 hex digits,
// each group of 8 being one 32-bit word of the address in the host's byte
// order (order), and HEXPORT is the port in 4 hex digits; the fourth field
// is the state in hex.
func parseProcNet(data []byte, proto mapping.Protocol, order binary.ByteOrder) ([]Listener, error) {
	want := stateListen
	if proto == mapping.UDP {
		want = stateClose
	}
	var out []Listener
	for n, line := range strings.Split(string(data), "\n") {
		if n == 0 || strings.TrimSpace(line) == "" {
			continue // header
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 4", n+1, len(f))
		}
		ap, err := parseHexAddrPort(f[1], order)
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", n+1, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || len(f[3]) != 2 {
			return nil, fmt.Errorf("line %d: bad state %q", n+1, f[3])
		}
		if int(st) == want {
			out = append(out, Listener{Proto: proto, Addr: ap})
		}
	}
	return out, nil
}

// parseHexAddrPort parses "0100007F:0035" (127.0.0.1:53 on a
// little-endian host) or its 32-digit IPv6 form.
func parseHexAddrPort(s string, order binary.ByteOrder) (netip.AddrPort, error) {
	ah, ph, ok := strings.Cut(s, ":")
	if !ok || (len(ah) != 8 && len(ah) != 32) || len(ph) != 4 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(ah)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(ph, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	// The kernel prints each 32-bit word of the address as an integer in
	// host order; put each back in memory order to get network order.
	b := make([]byte, len(raw))
	for i := 0; i+4 <= len(raw); i += 4 {
		order.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b) // 4 or 16 bytes: always ok
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}
