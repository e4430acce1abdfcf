package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// reframe returns payload p with a frame: its length and a correct CRC.
func reframe(p []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, castagnoli))
	return append(b, p...)
}

// payloadOf returns a golden's payload, for mutation.
func payloadOf(t *testing.T, file string) []byte {
	t.Helper()
	return bytes.Clone(loadGolden(t, file)[frameLen:])
}

func TestCastagnoli(t *testing.T) {
	// The check value of CRC-32C (RFC 3720 §B.4, and the CRC catalogue).
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xe3069283 {
		t.Fatalf("CRC-32C(123456789) = %#x, want 0xe3069283", got)
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	put := func(t *testing.T) []byte { return payloadOf(t, "put-ipv4.txt") }
	peers := func(t *testing.T) []byte { return payloadOf(t, "put-ipv6-peers.txt") }
	// Offsets in put-ipv4.txt's payload (see the golden's comments).
	const (
		offExtFamily = 2
		offDescLen   = 23
		offPeerCount = 55
	)
	// Offsets in put-ipv6-peers.txt's payload.
	const (
		offPeer0Bits = 88
		offPeer1     = 91
	)
	tests := []struct {
		name  string
		rec   func(t *testing.T) []byte
		field string
		want  error
	}{
		{"empty", func(*testing.T) []byte { return nil }, "length", ErrTruncated},
		{"frame cut", func(t *testing.T) []byte { return loadGolden(t, "epoch.txt")[:7] }, "length", ErrTruncated},
		{"payload cut", func(t *testing.T) []byte { b := loadGolden(t, "epoch.txt"); return b[:len(b)-1] }, "payload", ErrTruncated},
		{"zero length", func(*testing.T) []byte { return make([]byte, 16) }, "length", ErrLength},
		{"length above the bound", func(*testing.T) []byte {
			b := reframe(make([]byte, MaxRecordLen+1))
			return b
		}, "length", ErrLength},
		{"length larger than the input", func(t *testing.T) []byte {
			b := loadGolden(t, "epoch.txt")
			binary.BigEndian.PutUint32(b, 4000)
			return b
		}, "payload", ErrTruncated},
		{"bad checksum", func(t *testing.T) []byte {
			b := loadGolden(t, "epoch.txt")
			b[len(b)-1] ^= 1
			return b
		}, "checksum", ErrChecksum},
		{"unknown type", func(*testing.T) []byte { return reframe([]byte{9, 0}) }, "type", ErrType},
		{"type 0", func(*testing.T) []byte { return reframe([]byte{0}) }, "type", ErrType},
		{"address length 5", func(t *testing.T) []byte {
			p := put(t)
			p[offExtFamily] = 5
			return reframe(p)
		}, "external", ErrField},
		{"description above 1024", func(t *testing.T) []byte {
			p := put(t)
			binary.BigEndian.PutUint16(p[offDescLen:], 1025)
			return reframe(p)
		}, "description", ErrField},
		{"description past the payload", func(t *testing.T) []byte {
			p := put(t)
			binary.BigEndian.PutUint16(p[offDescLen:], 1000)
			return reframe(p)
		}, "description", ErrField},
		{"peer count above 64", func(t *testing.T) []byte {
			p := put(t)
			binary.BigEndian.PutUint16(p[offPeerCount:], 65)
			return reframe(p)
		}, "peer count", ErrField},
		{"peer past the payload", func(t *testing.T) []byte {
			p := put(t)
			binary.BigEndian.PutUint16(p[offPeerCount:], 1)
			return reframe(p)
		}, "peer", ErrField},
		{"unmasked peer prefix", func(t *testing.T) []byte {
			p := peers(t)
			p[offPeer0Bits] = 16 // 198.51.100.0/16 has host bits set
			return reframe(p)
		}, "peer", ErrField},
		{"peer prefix length above 32", func(t *testing.T) []byte {
			p := peers(t)
			p[offPeer0Bits] = 33
			return reframe(p)
		}, "peer", ErrField},
		{"peers out of order", func(t *testing.T) []byte {
			p := peers(t)
			second := bytes.Clone(p[offPeer1:])
			first := bytes.Clone(p[offPeer1-8 : offPeer1])
			return reframe(append(append(p[:offPeer1-8], second...), first...))
		}, "peer", ErrField},
		{"duplicate peer", func(t *testing.T) []byte {
			p := peers(t)
			p = p[:offPeer1] // the count stays 2: peer 0, then peer 0 again
			p = append(p, p[offPeer1-8:offPeer1]...)
			return reframe(p)
		}, "peer", ErrField},
		{"IPv4-mapped peer prefix", func(t *testing.T) []byte {
			p := payloadOf(t, "put-ipv4.txt")
			binary.BigEndian.PutUint16(p[offPeerCount:], 1)
			p = append(p, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 0, 120, 0, 0)
			return reframe(p)
		}, "peer", ErrField},
		{"zero peer prefix with a length", func(t *testing.T) []byte {
			p := payloadOf(t, "put-ipv4.txt")
			binary.BigEndian.PutUint16(p[offPeerCount:], 1)
			return reframe(append(p, 0, 8, 0, 0))
		}, "peer", ErrField},
		{"trailing byte", func(t *testing.T) []byte { return reframe(append(put(t), 0)) }, "end", ErrTrailing},
		{"delete trailing byte", func(t *testing.T) []byte {
			return reframe(append(payloadOf(t, "delete-ipv4.txt"), 0))
		}, "end", ErrTrailing},
		{"epoch cut", func(t *testing.T) []byte { return reframe(payloadOf(t, "epoch.txt")[:5]) }, "epoch base", ErrField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.rec(t)
			_, _, err := DecodeRecord(b)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DecodeError", err)
			}
			if !errors.Is(err, tt.want) || de.Field != tt.field {
				t.Errorf("got %v, want field %q: %v", err, tt.field, tt.want)
			}
			if de.Off < 0 || de.Off > len(b) {
				t.Errorf("offset %d outside the %d-byte input", de.Off, len(b))
			}
			if !strings.HasPrefix(err.Error(), "store: record: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
		})
	}
}

func TestDecodeRecordIgnoresFollowingBytes(t *testing.T) {
	b := loadGolden(t, "epoch.txt")
	_, n, err := DecodeRecord(append(bytes.Clone(b), 0xde, 0xad))
	if err != nil || n != len(b) {
		t.Fatalf("got %d, %v; want %d, nil", n, err, len(b))
	}
}

func TestAppendToBounds(t *testing.T) {
	var ps []mapping.Peer
	for i := range 100 {
		ps = append(ps, mapping.Peer{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, byte(i), 15: 1}), 128), Port: 65535})
	}
	m := mapping.Mapping{
		Key:      mapping.Key{Proto: mapping.UDP, External: netip.MustParseAddrPort("[2001:db8::1]:1"), Remote: netip.MustParseAddr("2001:db8::2")},
		Internal: netip.MustParseAddrPort("[fd00::1]:1"),
		Client:   netip.MustParseAddr("fd00::1"),
		Origin:   mapping.Origin{Kind: mapping.KindPCP, Description: strings.Repeat("x", 5000)},
		Peers:    mapping.NewPeers(ps...),
	}
	b := appendPut(nil, m)
	if len(b) > frameLen+MaxRecordLen {
		t.Fatalf("largest record is %d bytes, above the %d bound", len(b), frameLen+MaxRecordLen)
	}
	t.Logf("largest record: %d bytes", len(b))
	r, _, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Mapping.Origin.Description); got != maxDescription {
		t.Errorf("description of %d bytes, want it cut to %d", got, maxDescription)
	}
	if got := r.Mapping.Peers.Len(); got != maxPeers {
		t.Errorf("%d peers, want the first %d", got, maxPeers)
	}
	if got, want := r.Mapping.Peers.All(), m.Peers.All()[:maxPeers]; !slicesEqualPeers(got, want) {
		t.Errorf("kept peers %v, want the first 64 of the set", got)
	}
}

func slicesEqualPeers(a, b []mapping.Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestZoneNotStored(t *testing.T) {
	k := mapping.Key{Proto: mapping.TCP, External: netip.MustParseAddrPort("[fe80::1%eth0]:80")}
	r, _, err := DecodeRecord(appendDelete(nil, k))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("[fe80::1]:80"); r.Mapping.External != want {
		t.Fatalf("got %v, want %v", r.Mapping.External, want)
	}
}

// TestKeyEnd checks that the key of a put and of a delete for the same
// mapping are the same bytes, for every address form, so Delete finds
// what Put stored; and that IPv4 and IPv4-mapped IPv6 keys differ, as
// mapping.Key values do.
func TestKeyEnd(t *testing.T) {
	addrs := []string{"", "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"}
	seen := map[string]mapping.Key{}
	for _, ext := range addrs {
		for _, remote := range addrs {
			k := mapping.Key{Proto: mapping.UDP}
			if ext != "" {
				k.External = netip.AddrPortFrom(netip.MustParseAddr(ext), 9)
			}
			if remote != "" {
				k.Remote = netip.MustParseAddr(remote)
			}
			put := appendPut(nil, mapping.Mapping{Key: k})[frameLen:]
			del := appendDelete(nil, k)[frameLen:]
			pk, dk := put[offKey:keyEnd(put)], del[offKey:keyEnd(del)]
			if !bytes.Equal(pk, dk) || keyEnd(del) != len(del) {
				t.Fatalf("%v: put key %x, delete key %x (delete is %d bytes, key ends at %d)", k, pk, dk, len(del), keyEnd(del))
			}
			if other, dup := seen[string(pk)]; dup {
				t.Fatalf("keys %v and %v encode alike: %x", k, other, pk)
			}
			seen[string(pk)] = k
		}
	}
}

// TestSortKeyOrder checks that encoded keys sort as mapping.Key.Compare
// orders keys, over every pair of a mixed set.
func TestSortKeyOrder(t *testing.T) {
	addrs := []netip.Addr{{}, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("::"), netip.MustParseAddr("::ffff:192.0.2.1"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("ff02::1")}
	var keys []mapping.Key
	for _, port := range []uint16{0, 1, 255, 256, 65535} {
		for _, proto := range []mapping.Protocol{mapping.TCP, mapping.UDP} {
			for _, ext := range addrs {
				for _, remote := range addrs[:4] {
					keys = append(keys, mapping.Key{Proto: proto, External: netip.AddrPortFrom(ext, port), Remote: remote})
				}
			}
		}
	}
	sk := func(k mapping.Key) sortKey {
		d := appendDelete(nil, k)[frameLen:]
		return makeSortKey(string(d[offKey:]))
	}
	for _, a := range keys {
		ka := sk(a)
		for _, b := range keys {
			kb := sk(b)
			if got, want := bytes.Compare(ka[:], kb[:]), a.Compare(b); sign(got) != sign(want) {
				t.Fatalf("%v vs %v: sort keys compare %d, keys %d", a, b, got, want)
			}
		}
	}
}

func sign(n int) int { return min(max(n, -1), 1) }
