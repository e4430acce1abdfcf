package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strconv"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// The journal file. All integers are big-endian; offsets are in bytes.
//
//	file = header record*
//
//	header (headerLen = 12 bytes)
//	 0       1       2       3
//	+-------+-------+-------+-------+
//	|  'B'  |  'E'  |  'R'  |  'T'  |  0   magic "BERTHJ1\n"
//	+-------+-------+-------+-------+
//	|  'H'  |  'J'  |  '1'  |  '\n' |  4
//	+-------+-------+-------+-------+
//	|     format version (1)        |  8
//	+-------+-------+-------+-------+ 12
//
//	record (frameLen = 8 bytes of framing, then the payload)
//	 0       1       2       3
//	+-------+-------+-------+-------+
//	| payload length n (1..4096)    |  0
//	+-------+-------+-------+-------+
//	| CRC-32C (Castagnoli) of the   |  4
//	| n payload bytes               |
//	+-------+-------+-------+-------+
//	| type  | fields of the type ...   8   the payload: 8 .. 8+n
//	+-------+-----------------------
//
// Payload fields, in order. addr is a 1-byte length (0 for the zero Addr,
// 4 for IPv4, 16 for IPv6 including IPv4-mapped) followed by that many
// address bytes; IPv6 zones are not stored. time is an int64 of Unix
// nanoseconds, 0 for the zero Time. A key is the identity of a mapping.
//
//	key         = proto u8, external addr, external port u16, remote addr
//	TypePut     = 1, key, internal addr, internal port u16, client addr,
//	              origin kind u8, description length u16 (<= 1024) + bytes,
//	              PCP nonce [12]byte, expires time,
//	              peer count u16 (<= 64), peer*
//	peer        = prefix addr, prefix length u8, port u16  (a zero prefix
//	              is addr length 0 and prefix length 0); peers are stored
//	              as mapping.Peers normalises them: masked, sorted by
//	              Peer.Compare, without duplicates
//	TypeDelete  = 2, key
//	TypeEpoch   = 3, epoch base time
//
// A record is damaged when its length is out of range or runs past the
// file, its checksum does not match, its type is unknown, a field does not
// fit in the payload or holds a value the encoder never writes (an address
// length other than 0, 4, 16; an out-of-range prefix; unsorted or
// unmasked peers; a count above its bound), or bytes are left after the
// last field. Every record that decodes re-encodes to the same bytes.
const (
	magic     = "BERTHJ1\n"
	version   = 1
	offMagic  = 0
	offVer    = 8
	headerLen = 12

	offLength  = 0
	offCRC     = 4
	offPayload = 8
	frameLen   = offPayload

	// MaxRecordLen bounds a record's payload. The largest record the
	// encoder writes (a put with a 1024-byte description and 64 IPv6
	// peers) is about 2,400 bytes.
	MaxRecordLen = 4096

	maxDescription = 1024
	maxPeers       = 64

	// offKey is where the key starts in the payload of a put or delete.
	offKey = 1
)

// RecordType says what a record holds.
type RecordType uint8

// Record types.
const (
	TypePut    RecordType = 1 // a whole mapping, replacing any earlier one with its key
	TypeDelete RecordType = 2 // removes the mapping with a key
	TypeEpoch  RecordType = 3 // the wall time the NAT-PMP/PCP epoch started
)

// String returns "put", "delete", "epoch" or "type(N)".
func (t RecordType) String() string {
	switch t {
	case TypePut:
		return "put"
	case TypeDelete:
		return "delete"
	case TypeEpoch:
		return "epoch"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Record is one decoded journal record.
type Record struct {
	Type RecordType
	// Mapping is the mapping of a TypePut record. A TypeDelete record
	// sets only Mapping.Key.
	Mapping mapping.Mapping
	// EpochBase is the time of a TypeEpoch record.
	EpochBase time.Time
}

// Reasons a record does not decode; a *DecodeError wraps one of them.
var (
	ErrTruncated = errors.New("truncated record")           // the input ends inside the record
	ErrLength    = errors.New("record length out of range") // 0 or above MaxRecordLen
	ErrChecksum  = errors.New("bad checksum")
	ErrType      = errors.New("unknown record type")
	ErrField     = errors.New("bad field") // runs past the payload or holds a value never written
	ErrTrailing  = errors.New("trailing bytes in record")
)

// DecodeError says where and why a record does not decode.
type DecodeError struct {
	Field string // "length", "checksum", "type", "description", ...
	Off   int    // offset of the field from the start of the record
	Err   error  // one of the Err* variables above
}

// Error returns "store: record: <field> at offset <off>: <reason>".
func (e *DecodeError) Error() string {
	return "store: record: " + e.Field + " at offset " + strconv.Itoa(e.Off) + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *DecodeError) Unwrap() error { return e.Err }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DecodeRecord decodes the framed record at the start of b and returns it
// with the number of bytes it takes (frame included). Bytes after the
// record are not looked at. The error is a *DecodeError. The returned
// record shares no memory with b.
func DecodeRecord(b []byte) (Record, int, error) {
	if len(b) < frameLen {
		return Record{}, 0, &DecodeError{Field: "length", Off: offLength, Err: ErrTruncated}
	}
	n := binary.BigEndian.Uint32(b[offLength:])
	if n == 0 || n > MaxRecordLen {
		return Record{}, 0, &DecodeError{Field: "length", Off: offLength, Err: ErrLength}
	}
	end := frameLen + int(n)
	if len(b) < end {
		return Record{}, 0, &DecodeError{Field: "payload", Off: offPayload, Err: ErrTruncated}
	}
	if crc32.Checksum(b[offPayload:end], castagnoli) != binary.BigEndian.Uint32(b[offCRC:]) {
		return Record{}, 0, &DecodeError{Field: "checksum", Off: offCRC, Err: ErrChecksum}
	}
	d := decoder{b: b[:end], off: offPayload}
	r := Record{Type: RecordType(d.u8("type"))}
	switch r.Type {
	case TypePut:
		r.Mapping = d.mapping()
	case TypeDelete:
		r.Mapping.Key = d.key()
	case TypeEpoch:
		r.EpochBase = d.time("epoch base")
	default:
		return Record{}, 0, &DecodeError{Field: "type", Off: offPayload, Err: ErrType}
	}
	if d.err == nil && d.off != end {
		d.fail("end", ErrTrailing)
	}
	if d.err != nil {
		return Record{}, 0, d.err
	}
	return r, end, nil
}

// AppendTo appends the framed record to b. A description longer than
// 1024 bytes is cut to 1024 and only the first 64 peers are kept (the
// lease table holds at most mapping.MaxPeers). A record of an unknown type
// appends nothing.
func (r Record) AppendTo(b []byte) []byte {
	switch r.Type {
	case TypePut:
		return appendPut(b, r.Mapping)
	case TypeDelete:
		return appendDelete(b, r.Mapping.Key)
	case TypeEpoch:
		return appendEpoch(b, r.EpochBase)
	}
	return b
}

// appendHeader appends the file header.
func appendHeader(b []byte) []byte {
	b = append(b, magic...)
	return binary.BigEndian.AppendUint32(b, version)
}

// beginRecord appends the frame of a record of type t with its length
// and checksum left blank; endRecord fills them in.
func beginRecord(b []byte, t RecordType) ([]byte, int) {
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0, byte(t)), len(b)
}

func endRecord(b []byte, start int) []byte {
	payload := b[start+offPayload:]
	binary.BigEndian.PutUint32(b[start+offLength:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+offCRC:], crc32.Checksum(payload, castagnoli))
	return b
}

func appendPut(b []byte, m mapping.Mapping) []byte {
	b, start := beginRecord(b, TypePut)
	b = appendKey(b, m.Key)
	b = appendAddr(b, m.Internal.Addr())
	b = binary.BigEndian.AppendUint16(b, m.Internal.Port())
	b = appendAddr(b, m.Client)
	b = append(b, byte(m.Origin.Kind))
	desc := m.Origin.Description
	if len(desc) > maxDescription {
		desc = desc[:maxDescription]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(desc)))
	b = append(b, desc...)
	b = append(b, m.Origin.Nonce[:]...)
	b = appendTime(b, m.Expires)
	var peers []mapping.Peer
	if !m.Peers.Empty() {
		peers = m.Peers.All()
	}
	peers = peers[:min(len(peers), maxPeers)]
	b = binary.BigEndian.AppendUint16(b, uint16(len(peers)))
	for _, p := range peers {
		if p.Prefix.IsValid() {
			b = appendAddr(b, p.Prefix.Addr())
			b = append(b, byte(p.Prefix.Bits()))
		} else {
			b = append(b, 0, 0)
		}
		b = binary.BigEndian.AppendUint16(b, p.Port)
	}
	return endRecord(b, start)
}

func appendDelete(b []byte, k mapping.Key) []byte {
	b, start := beginRecord(b, TypeDelete)
	return endRecord(appendKey(b, k), start)
}

func appendEpoch(b []byte, t time.Time) []byte {
	b, start := beginRecord(b, TypeEpoch)
	return endRecord(appendTime(b, t), start)
}

func appendKey(b []byte, k mapping.Key) []byte {
	b = append(b, byte(k.Proto))
	b = appendAddr(b, k.External.Addr())
	b = binary.BigEndian.AppendUint16(b, k.External.Port())
	return appendAddr(b, k.Remote)
}

// appendAddr appends a's length (0, 4 or 16) and bytes, without its zone.
func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	case a.Is6():
		v := a.As16()
		return append(append(b, 16), v[:]...)
	}
	return append(b, 0)
}

// appendTime appends t as Unix nanoseconds, 0 for the zero Time. (A time
// of exactly 1970-01-01T00:00:00Z therefore reads back as the zero Time.)
func appendTime(b []byte, t time.Time) []byte {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	return binary.BigEndian.AppendUint64(b, uint64(ns))
}

// keyEnd returns the offset in payload p, a put or delete that
// DecodeRecord accepted or this package encoded, just past its key.
func keyEnd(p []byte) int {
	i := offKey + 1 // proto
	i += 1 + int(p[i]) + 2
	return i + 1 + int(p[i])
}

// decoder reads the fields of one checked record. After the first error
// every read returns the zero value and err keeps that first error.
type decoder struct {
	b   []byte // the record, frame included
	off int
	err *DecodeError
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = &DecodeError{Field: field, Off: d.off, Err: err}
	}
}

// take returns the next n bytes, or nil when they are not all there.
func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail(field, ErrField)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(field string) uint8 {
	if p := d.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if p := d.take(2, field); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) time(field string) time.Time {
	p := d.take(8, field)
	if p == nil {
		return time.Time{}
	}
	if ns := int64(binary.BigEndian.Uint64(p)); ns != 0 {
		return time.Unix(0, ns).UTC()
	}
	return time.Time{}
}

func (d *decoder) addr(field string) netip.Addr {
	at := d.off
	switch d.u8(field) {
	case 0:
		return netip.Addr{}
	case 4:
		if p := d.take(4, field); p != nil {
			return netip.AddrFrom4([4]byte(p))
		}
	case 16:
		if p := d.take(16, field); p != nil {
			return netip.AddrFrom16([16]byte(p))
		}
	default:
		d.off = at
		d.fail(field, ErrField)
	}
	return netip.Addr{}
}

func (d *decoder) addrPort(field string) netip.AddrPort {
	a := d.addr(field)
	return netip.AddrPortFrom(a, d.u16(field+" port"))
}

func (d *decoder) key() mapping.Key {
	var k mapping.Key
	k.Proto = mapping.Protocol(d.u8("protocol"))
	k.External = d.addrPort("external")
	k.Remote = d.addr("remote")
	return k
}

func (d *decoder) mapping() mapping.Mapping {
	var m mapping.Mapping
	m.Key = d.key()
	m.Internal = d.addrPort("internal")
	m.Client = d.addr("client")
	m.Origin.Kind = mapping.Kind(d.u8("kind"))
	at := d.off
	if n := int(d.u16("description")); n > maxDescription {
		d.off = at
		d.fail("description", ErrField)
	} else if p := d.take(n, "description"); n > 0 && p != nil {
		m.Origin.Description = string(p)
	}
	if p := d.take(len(m.Origin.Nonce), "nonce"); p != nil {
		m.Origin.Nonce = [12]byte(p)
	}
	m.Expires = d.time("expires")
	m.Peers = d.peers()
	return m
}

// peers reads the peer list, which must be in the normal form
// mapping.NewPeers gives so that it re-encodes to the same bytes.
func (d *decoder) peers() *mapping.Peers {
	at := d.off
	n := int(d.u16("peer count"))
	if n > maxPeers {
		d.off = at
		d.fail("peer count", ErrField)
	}
	if n == 0 || d.err != nil {
		return nil
	}
	list := make([]mapping.Peer, 0, n)
	for range n {
		at := d.off
		a := d.addr("peer")
		bits := int(d.u8("peer prefix length"))
		port := d.u16("peer port")
		if d.err != nil {
			return nil
		}
		p := mapping.Peer{Port: port}
		if a.IsValid() {
			p.Prefix = netip.PrefixFrom(a, bits)
		}
		normal := p.Prefix.IsValid() && p.Prefix == p.Prefix.Masked() && !(a.Is4In6() && bits >= 96) ||
			!a.IsValid() && bits == 0
		if !normal || len(list) > 0 && list[len(list)-1].Compare(p) >= 0 {
			d.off = at
			d.fail("peer", ErrField)
			return nil
		}
		list = append(list, p)
	}
	return mapping.NewPeers(list...)
}
