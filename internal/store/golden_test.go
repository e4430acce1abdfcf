package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/golden"
	"github.com/berthd/berth/internal/mapping"
)

var update = flag.Bool("update", false, "rewrite the testdata goldens from the encoder")

// goldens are the records in testdata/records, each produced by our own
// encoder (go test -run TestGolden -update rewrites them).
var goldens = []struct {
	file       string
	provenance string
	rec        Record
}{
	{"put-ipv4.txt", "our encoder: a UPnP IGD mapping over IPv4 with an expiry and no peers", Record{
		Type: TypePut, Mapping: mapping.Mapping{
			Key:      mapping.Key{Proto: mapping.TCP, External: netip.MustParseAddrPort("203.0.113.2:8080")},
			Internal: netip.MustParseAddrPort("192.168.1.10:80"),
			Client:   netip.MustParseAddr("192.168.1.10"),
			Origin:   mapping.Origin{Kind: mapping.KindIGD, Description: "web server"},
			Expires:  time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		}}},
	{"put-ipv6-peers.txt", "our encoder: a PCP MAP over IPv6 with a nonce and two FILTER peers (RFC 6887 §13.3)", Record{
		Type: TypePut, Mapping: mapping.Mapping{
			Key:      mapping.Key{Proto: mapping.UDP, External: netip.MustParseAddrPort("[2001:db8::1]:4500")},
			Internal: netip.MustParseAddrPort("[fd00::10]:4500"),
			Client:   netip.MustParseAddr("fd00::10"),
			Origin:   mapping.Origin{Kind: mapping.KindPCP, Nonce: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
			Expires:  time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC),
			Peers: mapping.NewPeers(
				mapping.Peer{Prefix: netip.MustParsePrefix("198.51.100.0/24")},
				mapping.Peer{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Port: 443}),
		}}},
	{"put-remote-permanent.txt", "our encoder: a permanent static forward restricted to one remote host, description with odd bytes", Record{
		Type: TypePut, Mapping: mapping.Mapping{
			Key: mapping.Key{Proto: mapping.TCP, External: netip.MustParseAddrPort("203.0.113.2:22"),
				Remote: netip.MustParseAddr("198.51.100.7")},
			Internal: netip.MustParseAddrPort("192.168.1.20:22"),
			Client:   netip.MustParseAddr("192.168.1.20"),
			Origin:   mapping.Origin{Kind: mapping.KindStatic, Description: "caf\u00e9 \x00\xff\n"},
		}}},
	{"delete-ipv4.txt", "our encoder: the delete of put-ipv4.txt's mapping", Record{
		Type: TypeDelete, Mapping: mapping.Mapping{
			Key: mapping.Key{Proto: mapping.TCP, External: netip.MustParseAddrPort("203.0.113.2:8080")}}}},
	{"epoch.txt", "our encoder: the NAT-PMP/PCP epoch started 2025-06-01T11:00:00Z", Record{
		Type: TypeEpoch, EpochBase: time.Date(2025, 6, 1, 11, 0, 0, 0, time.UTC)}},
}

// loadGolden reads testdata/records/name (see internal/golden).
func loadGolden(t testing.TB, name string) []byte {
	return golden.Hex(t, filepath.Join("testdata", "records", name))
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			enc := g.rec.AppendTo(nil)
			if *update {
				writeGolden(t, g.file, g.provenance, enc)
			}
			b := loadGolden(t, g.file)
			if !bytes.Equal(enc, b) {
				t.Fatalf("AppendTo = %x, want the golden %x", enc, b)
			}
			got, n, err := DecodeRecord(b)
			if err != nil {
				t.Fatalf("DecodeRecord: %v", err)
			}
			if n != len(b) {
				t.Errorf("DecodeRecord took %d bytes, want %d", n, len(b))
			}
			if !sameRecord(got, g.rec) {
				t.Errorf("DecodeRecord = %s, want %s", describeRecord(got), describeRecord(g.rec))
			}
		})
	}
}

// writeGolden writes an encoded record to testdata/records/name with one
// commented line per field.
func writeGolden(t *testing.T, name, provenance string, rec []byte) {
	t.Helper()
	var out strings.Builder
	fmt.Fprintf(&out, "# provenance: %s\n", provenance)
	for _, f := range annotate(t, rec) {
		fmt.Fprintf(&out, "%-40s # %s\n", hex.EncodeToString(f.b), f.what)
	}
	if err := os.WriteFile(filepath.Join("testdata", "records", name), []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

type annotated struct {
	b    []byte
	what string
}

// annotate splits an encoded record into its fields, reading the layout of
// format.go independently of the decoder.
func annotate(t *testing.T, rec []byte) []annotated {
	t.Helper()
	var out []annotated
	off := 0
	field := func(n int, format string, args ...any) []byte {
		if off+n > len(rec) {
			t.Fatalf("annotate: %s runs past the record", fmt.Sprintf(format, args...))
		}
		b := rec[off : off+n]
		out = append(out, annotated{b, fmt.Sprintf(format, args...)})
		off += n
		return b
	}
	addr := func(name string) {
		n := int(field(1, "%s address length", name)[0])
		if n > 0 {
			field(n, "%s address", name)
		}
	}
	u16 := func(format string) uint16 {
		v := binary.BigEndian.Uint16(rec[off:])
		field(2, format, v)
		return v
	}
	tm := func(name string) {
		ns := int64(binary.BigEndian.Uint64(rec[off:]))
		if ns == 0 {
			field(8, "%s 0: the zero Time (permanent)", name)
			return
		}
		field(8, "%s, Unix ns: %s", name, time.Unix(0, ns).UTC().Format(time.RFC3339Nano))
	}
	field(4, "payload length %d", binary.BigEndian.Uint32(rec))
	field(4, "CRC-32C of the payload")
	typ := RecordType(rec[off])
	field(1, "type %d: %s", typ, typ)
	key := func() {
		field(1, "protocol %s", mapping.Protocol(rec[off]))
		addr("external")
		u16("external port %d")
		addr("remote host")
	}
	switch typ {
	case TypePut:
		key()
		addr("internal")
		u16("internal port %d")
		addr("client")
		field(1, "origin kind %s", mapping.Kind(rec[off]))
		if n := u16("description length %d"); n > 0 {
			field(int(n), "description %q", rec[off:off+int(n)])
		}
		field(12, "PCP nonce")
		tm("expires")
		for i := range int(u16("peer count %d")) {
			addr(fmt.Sprintf("peer %d prefix", i))
			field(1, "peer %d prefix length %d", i, rec[off])
			field(2, "peer %d port %d", i, binary.BigEndian.Uint16(rec[off:]))
		}
	case TypeDelete:
		key()
	case TypeEpoch:
		tm("epoch base")
	}
	if off != len(rec) {
		t.Fatalf("annotate: %d bytes left", len(rec)-off)
	}
	return out
}

// sameRecord compares records field by field: times with Equal, peer sets
// with Peers.Equal.
func sameRecord(a, b Record) bool {
	return a.Type == b.Type && a.EpochBase.Equal(b.EpochBase) && sameMapping(a.Mapping, b.Mapping)
}

func sameMapping(a, b mapping.Mapping) bool {
	return a.Key == b.Key && a.Internal == b.Internal && a.Client == b.Client && a.Origin == b.Origin &&
		a.Expires.Equal(b.Expires) && a.Peers.Equal(b.Peers)
}

func describeRecord(r Record) string {
	return fmt.Sprintf("{%s %s epoch %s}", r.Type, describe(r.Mapping), r.EpochBase.Format(time.RFC3339Nano))
}

func describe(m mapping.Mapping) string {
	return fmt.Sprintf("%s desc %q nonce %x expires %s", m, m.Origin.Description, m.Origin.Nonce,
		m.Expires.Format(time.RFC3339Nano))
}
