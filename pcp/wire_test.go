package pcp

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// Builders for test messages. Offsets are those of the RFC figures (see the
// constants in wire.go and option.go).

// withBytes returns a copy of b changed by the edits (pairs of offset and byte).
func withBytes(b []byte, edits ...int) []byte {
	c := slices.Clone(b)
	for i := 0; i+1 < len(edits); i += 2 {
		c[edits[i]] = byte(edits[i+1])
	}
	return c
}

// concat concatenates byte slices into a new one.
func concat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// optBytes returns an option with Option Length len(data), padded to 4 octets.
func optBytes(code byte, data ...byte) []byte {
	o := []byte{code, 0, byte(len(data) >> 8), byte(len(data))}
	o = append(o, data...)
	for len(o)%4 != 0 {
		o = append(o, 0)
	}
	return o
}

// optHeaderBytes returns an option header claiming length n followed by data, unpadded.
func optHeaderBytes(code byte, n int, data ...byte) []byte {
	return append([]byte{code, 0, byte(n >> 8), byte(n)}, data...)
}

func addr16(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

func thirdPartyOpt(s string) []byte { return optBytes(byte(OptThirdParty), addr16(s)...) }

func filterOpt(prefix byte, port uint16, s string) []byte {
	return optBytes(byte(OptFilter), append([]byte{0, prefix, byte(port >> 8), byte(port)}, addr16(s)...)...)
}

var preferFailureOpt = optBytes(byte(OptPreferFailure))

func repeatBytes(b []byte, n int) []byte { return bytes.Repeat(b, n) }

func TestParseRequestErrors(t *testing.T) {
	mapReq := readGolden(t, "map_request_v4.txt")
	peerReq := readGolden(t, "peer_request.txt")
	announce := readGolden(t, "announce_request.txt")
	tp := thirdPartyOpt("192.0.2.50")
	flt := filterOpt(120, 0, "198.51.100.0")
	tests := []struct {
		name string
		in   []byte
		want ParseError
	}{
		{"empty", nil, ParseError{"length", 0, MalformedRequest}},
		{"one octet", []byte{2}, ParseError{"length", 1, MalformedRequest}},
		{"R bit set", withBytes(mapReq, 1, 0x81), ParseError{"R bit", 1, MalformedRequest}},
		{"NAT-PMP version 0", []byte{0, 0}, ParseError{"version", 0, UnsuppVersion}},
		{"version 1", readGolden(t, "unsupp_version_request.txt"), ParseError{"version", 0, UnsuppVersion}},
		{"version 3 oversize", concat(withBytes(mapReq, 0, 3), make([]byte, 1044)), ParseError{"version", 0, UnsuppVersion}},
		{"shorter than header", announce[:20], ParseError{"length", 20, MalformedRequest}},
		{"two octets", []byte{2, 1}, ParseError{"length", 2, MalformedRequest}},
		{"longer than 1100", concat(mapReq, make([]byte, 1044)), ParseError{"length", 1100, MalformedRequest}},
		{"not a multiple of 4", concat(announce, []byte{0, 0}), ParseError{"length", 26, MalformedRequest}},
		{"opcode 3", withBytes(announce, 1, 3), ParseError{"opcode", 1, UnsuppOpcode}},
		{"opcode 127", withBytes(announce, 1, 0x7f), ParseError{"opcode", 1, UnsuppOpcode}},
		{"MAP without data", withBytes(announce, 1, 1), ParseError{"MAP opcode data", 24, MalformedRequest}},
		{"MAP data cut", mapReq[:56], ParseError{"MAP opcode data", 24, MalformedRequest}},
		{"PEER data cut", peerReq[:60], ParseError{"PEER opcode data", 24, MalformedRequest}},
		{"PEER protocol 0", withBytes(peerReq, 36, 0), ParseError{"protocol", 36, MalformedRequest}},
		{"PEER internal port 0", withBytes(peerReq, 40, 0, 41, 0), ParseError{"internal port", 40, MalformedRequest}},
		{"PEER remote port 0", withBytes(peerReq, 60, 0, 61, 0), ParseError{"remote peer port", 60, MalformedRequest}},
		{"option data past end", concat(mapReq, optHeaderBytes(1, 16, 0, 0, 0, 0)), ParseError{"option length", 62, MalformedOption}},
		{"optional option past end", concat(mapReq, optHeaderBytes(200, 8, 0, 0, 0, 0)), ParseError{"option length", 62, MalformedOption}},
		{"padding past end", concat(mapReq, optHeaderBytes(200, 5, 1, 2, 3, 4)), ParseError{"option length", 62, MalformedOption}},
		{"unknown mandatory option", readGolden(t, "map_unknown_mandatory.txt"), ParseError{"option code", 60, UnsuppOption}},
		{"unknown mandatory option 127", concat(mapReq, optBytes(127)), ParseError{"option code", 60, UnsuppOption}},
		{"unknown mandatory after known", concat(mapReq, preferFailureOpt, optBytes(5)), ParseError{"option code", 64, UnsuppOption}},
		{"THIRD_PARTY 12 octets", concat(mapReq, optBytes(1, make([]byte, 12)...)), ParseError{"THIRD_PARTY length", 62, MalformedOption}},
		{"THIRD_PARTY twice", concat(mapReq, tp, tp), ParseError{"THIRD_PARTY repeated", 80, MalformedOption}},
		{"THIRD_PARTY in ANNOUNCE", concat(announce, tp), ParseError{"THIRD_PARTY not valid for ANNOUNCE", 24, MalformedOption}},
		{"PREFER_FAILURE with data", concat(mapReq, optBytes(2, 0, 0, 0, 0)), ParseError{"PREFER_FAILURE length", 62, MalformedOption}},
		{"PREFER_FAILURE twice", concat(mapReq, preferFailureOpt, preferFailureOpt), ParseError{"PREFER_FAILURE repeated", 64, MalformedOption}},
		// §12.1: "it MUST return a MALFORMED_REQUEST error response".
		{"PREFER_FAILURE in PEER", concat(peerReq, preferFailureOpt), ParseError{"PREFER_FAILURE not valid for PEER", 80, MalformedRequest}},
		{"PREFER_FAILURE in ANNOUNCE", concat(announce, preferFailureOpt), ParseError{"PREFER_FAILURE not valid for ANNOUNCE", 24, MalformedOption}},
		{"FILTER in PEER", concat(peerReq, flt), ParseError{"FILTER not valid for PEER", 80, MalformedOption}},
		{"FILTER 16 octets", concat(mapReq, optBytes(3, make([]byte, 16)...)), ParseError{"FILTER length", 62, MalformedOption}},
		{"FILTER IPv4 prefix 95", concat(mapReq, filterOpt(95, 0, "198.51.100.0")), ParseError{"FILTER prefix length", 65, MalformedOption}},
		{"FILTER IPv4 prefix 8", concat(mapReq, filterOpt(8, 0, "10.0.0.0")), ParseError{"FILTER prefix length", 65, MalformedOption}},
		{"FILTER IPv4 prefix 129", concat(mapReq, filterOpt(129, 0, "198.51.100.1")), ParseError{"FILTER prefix length", 65, MalformedOption}},
		{"FILTER IPv6 prefix 129", concat(mapReq, filterOpt(129, 0, "2001:db8::1")), ParseError{"FILTER prefix length", 65, MalformedOption}},
		{"second FILTER bad", concat(mapReq, flt, filterOpt(200, 0, "2001:db8::1")), ParseError{"FILTER prefix length", 89, MalformedOption}},
		{"17 FILTERs", concat(mapReq, repeatBytes(flt, MaxFilters+1)), ParseError{"FILTER count", 60 + MaxFilters*24, ExcessiveRemotePeers}},
		{"33 options", concat(mapReq, repeatBytes(optBytes(200), maxOptions+1)), ParseError{"option count", 60 + maxOptions*4, MalformedOption}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got error %v, want *ParseError %v", err, &tt.want)
			}
			if *pe != tt.want {
				t.Errorf("got %+v, want %+v", *pe, tt.want)
			}
		})
	}
}

// TestParseRequestAccepts covers the requests at the edges of the rules
// that must parse.
func TestParseRequestAccepts(t *testing.T) {
	mapReq := readGolden(t, "map_request_v4.txt")
	peerReq := readGolden(t, "peer_request.txt")
	withOpts := func(o Options) Request { r := goldenMapRequest; r.Options = o; return r }
	tests := []struct {
		name string
		in   []byte
		want Request
	}{
		{"reserved bits ignored", withBytes(mapReq, 2, 0xff, 3, 0xff, 37, 1, 38, 2, 39, 3), goldenMapRequest},
		{"option reserved ignored", concat(mapReq, withBytes(preferFailureOpt, 1, 0xff)), withOpts(Options{PreferFailure: true})},
		{"unknown optional, empty", concat(mapReq, optBytes(128)), goldenMapRequest},
		{"unknown optional, 1 to 3 octets", concat(mapReq, optBytes(129, 1), optBytes(130, 1, 2), optBytes(255, 1, 2, 3)), goldenMapRequest},
		{"suggested :: from IPv4 client", concat(mapReq[:44], make([]byte, 16)), goldenMapRequest},
		{"MAP protocol 0 keeps internal port", withBytes(mapReq, 36, 0), func() Request { r := goldenMapRequest; r.Protocol = 0; return r }()},
		{"FILTER prefix 0 removes filters", concat(mapReq, filterOpt(0, 0, "0.0.0.0")),
			withOpts(Options{Filters: []Filter{{RemoteAddr: netip.IPv4Unspecified()}}})},
		{"FILTER IPv4 /0 and /32", concat(mapReq, filterOpt(96, 0, "0.0.0.0"), filterOpt(128, 443, "198.51.100.7")),
			withOpts(Options{Filters: []Filter{{PrefixLen: 96, RemoteAddr: netip.IPv4Unspecified()},
				{PrefixLen: 128, RemotePort: 443, RemoteAddr: netip.MustParseAddr("198.51.100.7")}}})},
		{"FILTER IPv6 /1", concat(mapReq, filterOpt(1, 0, "8000::")),
			withOpts(Options{Filters: []Filter{{PrefixLen: 1, RemoteAddr: netip.MustParseAddr("8000::")}}})},
		{"16 FILTERs", concat(mapReq, repeatBytes(filterOpt(120, 0, "198.51.100.0"), MaxFilters)),
			withOpts(Options{Filters: slices.Repeat([]Filter{{PrefixLen: 120, RemoteAddr: netip.MustParseAddr("198.51.100.0")}}, MaxFilters)})},
		{"THIRD_PARTY in PEER", concat(peerReq, thirdPartyOpt("2001:db8::50")), Request{Op: OpPeer, Lifetime: 300, Client: goldenClient4,
			Nonce: goldenNonce, Protocol: goldenUDP, InternalPort: 5004, RemotePort: 443, RemoteAddr: goldenPeer4,
			Options: Options{ThirdParty: netip.MustParseAddr("2001:db8::50")}}},
		{"all options, 1100 octets", concat(mapReq, thirdPartyOpt("192.0.2.50"), preferFailureOpt, repeatBytes(optBytes(200, make([]byte, 252)...), 3), optBytes(201, make([]byte, 244)...)),
			withOpts(Options{ThirdParty: netip.MustParseAddr("192.0.2.50"), PreferFailure: true})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in)%4 != 0 || len(tt.in) > MaxLen {
				t.Fatalf("bad test input: %d octets", len(tt.in))
			}
			got, err := ParseRequest(tt.in)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	mapResp := readGolden(t, "map_response_v4.txt")
	peerResp := readGolden(t, "peer_response.txt")
	announce := readGolden(t, "announce_response.txt")
	tests := []struct {
		name string
		in   []byte
		want ParseError
	}{
		{"empty", nil, ParseError{"length", 0, MalformedRequest}},
		{"shorter than header", announce[:20], ParseError{"length", 20, MalformedRequest}},
		{"longer than 1100", concat(mapResp, make([]byte, 1044)), ParseError{"length", 1100, MalformedRequest}},
		{"not a multiple of 4", concat(announce, []byte{0}), ParseError{"length", 25, MalformedRequest}},
		{"version 0", withBytes(announce, 0, 0), ParseError{"version", 0, UnsuppVersion}},
		{"a request", readGolden(t, "map_request_v4.txt"), ParseError{"R bit", 1, MalformedRequest}},
		{"PEER data cut", peerResp[:76], ParseError{"PEER opcode data", 24, MalformedRequest}},
		{"THIRD_PARTY 12 octets", concat(mapResp, optBytes(1, make([]byte, 12)...)), ParseError{"THIRD_PARTY length", 62, MalformedOption}},
		{"PREFER_FAILURE in ANNOUNCE", concat(announce, preferFailureOpt), ParseError{"PREFER_FAILURE not valid for ANNOUNCE", 24, MalformedOption}},
		{"unknown mandatory option", concat(mapResp, optBytes(9)), ParseError{"option code", 60, UnsuppOption}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseResponse(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got error %v, want *ParseError %v", err, &tt.want)
			}
			if *pe != tt.want {
				t.Errorf("got %+v, want %+v", *pe, tt.want)
			}
		})
	}
}

// An UNSUPP_OPCODE reply may carry a copied body of unknown layout: the
// header is decoded and the rest skipped.
func TestParseResponseUnknownOpcode(t *testing.T) {
	b := concat(withBytes(readGolden(t, "announce_response.txt"), 1, 0x80|9, 3, int(UnsuppOpcode)), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	got, err := ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Response{Op: 9, Result: UnsuppOpcode, Epoch: goldenEpoch}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := len(got.AppendTo(nil)); n != headerLen {
		t.Errorf("AppendTo: got %d octets, want %d", n, headerLen)
	}
}

func TestParseErrorString(t *testing.T) {
	err := error(&ParseError{Field: "option length", Off: 62, Code: MalformedOption})
	if got, want := err.Error(), "pcp: option length at offset 62: MALFORMED_OPTION"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	filters := []Filter{
		{PrefixLen: 0, RemoteAddr: netip.IPv6Unspecified()},
		{PrefixLen: 104, RemotePort: 5060, RemoteAddr: netip.MustParseAddr("198.51.100.0")},
		{PrefixLen: 48, RemoteAddr: netip.MustParseAddr("2001:db8:1::")},
	}
	tests := []Request{
		{Op: OpAnnounce, Client: goldenClient6},
		{Op: OpAnnounce, Lifetime: 99, Client: netip.IPv6Unspecified()},
		goldenMapRequest,
		{Op: OpMap, Lifetime: 1<<32 - 1, Client: goldenClient6, Nonce: goldenNonce, Protocol: 132, InternalPort: 65535,
			SuggestedPort: 1, SuggestedAddr: netip.MustParseAddr("2001:db8::7")},
		{Op: OpMap, Client: goldenClient4, Protocol: 0, InternalPort: 0}, // delete all
		{Op: OpMap, Lifetime: 60, Client: goldenClient4, Protocol: goldenTCP, InternalPort: 80,
			Options: Options{ThirdParty: netip.MustParseAddr("192.0.2.50"), PreferFailure: true, Filters: filters}},
		{Op: OpPeer, Lifetime: 300, Client: goldenClient6, Nonce: goldenNonce, Protocol: goldenTCP, InternalPort: 1,
			SuggestedPort: 2, SuggestedAddr: netip.MustParseAddr("2001:db8::2"), RemotePort: 3,
			RemoteAddr: netip.MustParseAddr("2001:db8::3"), Options: Options{ThirdParty: goldenClient6}},
	}
	for _, want := range tests {
		b := want.AppendTo(nil)
		got, err := ParseRequest(b)
		if err != nil {
			t.Errorf("%+v: ParseRequest(%x): %v", want, b, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\ngot  %+v\nwant %+v", got, want)
		}
		if again := got.AppendTo(nil); !bytes.Equal(again, b) {
			t.Errorf("re-encoding differs:\ngot  %x\nwant %x", again, b)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	tests := []Response{
		Announce(0),
		{Op: OpAnnounce, Result: UnsuppVersion, Lifetime: 1800, Epoch: 1},
		{Op: OpMap, Result: 200, Lifetime: 1<<32 - 1, Epoch: 1<<32 - 1, Nonce: goldenNonce, Protocol: goldenUDP,
			InternalPort: 9, ExternalPort: 10, ExternalAddr: goldenExternal4,
			Options: Options{ThirdParty: netip.MustParseAddr("2001:db8::9"), PreferFailure: true,
				Filters: []Filter{{PrefixLen: 128, RemotePort: 1, RemoteAddr: goldenPeer4}}}},
		{Op: OpPeer, Result: CannotProvideExternal, Nonce: goldenNonce, Protocol: goldenTCP, InternalPort: 1,
			ExternalPort: 2, ExternalAddr: goldenClient6, RemotePort: 3, RemoteAddr: goldenPeer4},
	}
	for _, want := range tests {
		b := want.AppendTo(nil)
		got, err := ParseResponse(b)
		if err != nil {
			t.Errorf("%+v: ParseResponse(%x): %v", want, b, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\ngot  %+v\nwant %+v", got, want)
		}
	}
}

// AppendTo writes at most MaxFilters filters, so no value encodes to more
// than MaxLen octets.
func TestAppendToBounded(t *testing.T) {
	many := slices.Repeat([]Filter{{PrefixLen: 128, RemoteAddr: goldenPeer4}}, 100)
	opts := Options{ThirdParty: goldenClient6, PreferFailure: true, Filters: many}
	req := Request{Op: OpPeer, Client: goldenClient4, Options: opts}
	resp := Response{Op: OpPeer, Options: opts}
	want := peerLen + 4 + thirdPartyLen + 4 + MaxFilters*(4+filterLen)
	for name, b := range map[string][]byte{"request": req.AppendTo(nil), "response": resp.AppendTo(nil)} {
		if len(b) != want || len(b) > MaxLen {
			t.Errorf("%s: got %d octets, want %d (≤ %d)", name, len(b), want, MaxLen)
		}
	}
}

// AppendTo appends: it keeps what b holds.
func TestAppendToAppends(t *testing.T) {
	prefix := []byte("xyz")
	b := goldenMapRequest.AppendTo(slices.Clone(prefix))
	if !bytes.HasPrefix(b, prefix) || !bytes.Equal(b[len(prefix):], readGolden(t, "map_request_v4.txt")) {
		t.Errorf("got %x", b)
	}
}

func TestFilterPrefix(t *testing.T) {
	tests := []struct {
		f      Filter
		want   string
		wantOK bool
	}{
		{Filter{PrefixLen: 0, RemoteAddr: goldenPeer4}, "", false},
		{Filter{PrefixLen: 120, RemoteAddr: netip.MustParseAddr("198.51.100.77")}, "198.51.100.0/24", true},
		{Filter{PrefixLen: 96, RemoteAddr: goldenPeer4}, "0.0.0.0/0", true},
		{Filter{PrefixLen: 128, RemoteAddr: goldenPeer4}, "198.51.100.20/32", true},
		{Filter{PrefixLen: 95, RemoteAddr: goldenPeer4}, "", false},
		{Filter{PrefixLen: 64, RemoteAddr: netip.MustParseAddr("2001:db8:1:2:3::4")}, "2001:db8:1:2::/64", true},
		{Filter{PrefixLen: 129, RemoteAddr: goldenClient6}, "", false},
		{Filter{PrefixLen: 8}, "", false},
	}
	for _, tt := range tests {
		p, ok := tt.f.Prefix()
		if ok != tt.wantOK || (ok && p.String() != tt.want) {
			t.Errorf("%+v.Prefix(): got %v %v, want %s %v", tt.f, p, ok, tt.want, tt.wantOK)
		}
		if ok != tt.f.valid() && tt.f.PrefixLen != 0 && tt.f.RemoteAddr.IsValid() {
			t.Errorf("%+v: Prefix ok %v disagrees with valid %v", tt.f, ok, tt.f.valid())
		}
	}
}

// A MAP or PEER reply of the common header alone is a reply to a request
// without opcode data (see Response.HeaderOnly); it parses as such.
func TestParseHeaderOnlyResponse(t *testing.T) {
	for _, op := range []Opcode{OpMap, OpPeer} {
		want := Response{Op: op, Result: MalformedRequest, Lifetime: 1800, Epoch: 9, HeaderOnly: true}
		b := want.AppendTo(nil)
		if len(b) != 24 {
			t.Fatalf("%v: encoded %d octets, want 24", op, len(b))
		}
		got, err := ParseResponse(b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: got %+v, %v; want %+v", op, got, err, want)
		}
	}
}
