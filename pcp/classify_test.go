package pcp

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestClassify(t *testing.T) {
	mapReq := readGolden(t, "map_request_v4.txt")
	announce := readGolden(t, "announce_request.txt")
	tests := []struct {
		name string
		in   []byte
		act  Action
		code ResultCode
	}{
		{"empty", nil, Drop, Success},
		{"one octet", []byte{2}, Drop, Success},
		{"response (R bit)", readGolden(t, "map_response_v4.txt"), Drop, Success},
		{"our own ANNOUNCE looped back", readGolden(t, "announce_response.txt"), Drop, Success},
		{"R bit, short", []byte{2, 0x80}, Drop, Success},
		{"R bit, version 0", []byte{0, 0x81, 0, 0}, Drop, Success},
		{"NAT-PMP external address request", []byte{0, 0}, ReplyError, UnsuppVersion},
		{"NAT-PMP map request", []byte{0, 1, 0, 0, 0x1f, 0x90, 0x1f, 0x90, 0, 0, 0x1c, 0x20}, ReplyError, UnsuppVersion},
		{"version 1 MAP", readGolden(t, "unsupp_version_request.txt"), ReplyError, UnsuppVersion},
		{"version 3, odd length", []byte{3, 1, 0}, ReplyError, UnsuppVersion},
		{"version 255 oversize", concat(withBytes(mapReq, 0, 255), make([]byte, 2000)), ReplyError, UnsuppVersion},
		{"two octets", []byte{2, 1}, ReplyError, MalformedRequest},
		{"20 octets", announce[:20], ReplyError, MalformedRequest},
		{"1104 octets", concat(mapReq, make([]byte, 1044)), ReplyError, MalformedRequest},
		{"1101 octets", concat(mapReq, make([]byte, 1041)), ReplyError, MalformedRequest},
		{"62 octets", concat(mapReq, []byte{0, 0}), ReplyError, MalformedRequest},
		{"opcode 3", withBytes(announce, 1, 3), ReplyError, UnsuppOpcode},
		{"ANNOUNCE", announce, Reply, Success},
		{"MAP", mapReq, Reply, Success},
		{"PEER", readGolden(t, "peer_request.txt"), Reply, Success},
		{"1100 octets", concat(mapReq, optBytes(200, make([]byte, 1036)...)), Reply, Success},
		// Header-only: ParseRequest reports the missing data and the option.
		{"MAP without data", withBytes(announce, 1, 1), Reply, Success},
		{"unknown mandatory option", readGolden(t, "map_unknown_mandatory.txt"), Reply, Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			act, code := Classify(tt.in)
			if act != tt.act || code != tt.code {
				t.Errorf("got %v %v, want %v %v", act, code, tt.act, tt.code)
			}
			// ParseRequest agrees: it fails on whatever Classify rejects,
			// with the same code.
			_, err := ParseRequest(tt.in)
			var pe *ParseError
			switch {
			case act == Reply:
			case !errors.As(err, &pe):
				t.Errorf("ParseRequest: got %v, want a *ParseError", err)
			case act == ReplyError && pe.Code != code:
				t.Errorf("ParseRequest: got code %v, Classify %v", pe.Code, code)
			}
		})
	}
}

func TestErrorResponse(t *testing.T) {
	mapReq := readGolden(t, "map_request_v4.txt")
	peerReq := readGolden(t, "peer_request.txt")
	tp := netip.MustParseAddr("192.0.2.50")
	mapBody := Response{Op: OpMap, Nonce: goldenNonce, Protocol: goldenTCP, InternalPort: 8080, ExternalPort: 8080,
		ExternalAddr: netip.IPv4Unspecified()}
	withResult := func(r Response, o Options) Response {
		r.Result, r.Lifetime, r.Epoch, r.Options = NoResources, 30, 7, o
		return r
	}
	tests := []struct {
		name    string
		in      []byte
		want    Response
		wantLen int
	}{
		{"MAP", mapReq, withResult(mapBody, Options{}), 60},
		{"MAP with THIRD_PARTY echoes it", concat(mapReq, thirdPartyOpt("192.0.2.50")),
			withResult(mapBody, Options{ThirdParty: tp}), 80},
		{"MAP with unknown optional option", readGolden(t, "map_unknown_optional.txt"), withResult(mapBody, Options{}), 60},
		{"MAP too long: body kept, options not", concat(mapReq, preferFailureOpt, make([]byte, 1040)),
			withResult(mapBody, Options{}), 60},
		{"MAP without data", mapReq[:24], withResult(Response{Op: OpMap, HeaderOnly: true}, Options{}), 24},
		{"MAP cut at 58", mapReq[:58], withResult(Response{Op: OpMap, HeaderOnly: true}, Options{}), 24},
		{"PEER", peerReq, withResult(Response{Op: OpPeer, Nonce: goldenNonce, Protocol: goldenUDP, InternalPort: 5004,
			ExternalAddr: netip.IPv4Unspecified(), RemotePort: 443, RemoteAddr: goldenPeer4}, Options{}), 80},
		{"PEER cut at 60", peerReq[:60], withResult(Response{Op: OpPeer, Nonce: goldenNonce, Protocol: goldenUDP,
			InternalPort: 5004, ExternalAddr: netip.IPv4Unspecified()}, Options{}), 80},
		{"ANNOUNCE", readGolden(t, "announce_request.txt"), withResult(Response{Op: OpAnnounce}, Options{}), 24},
		{"unknown opcode", []byte{2, 42, 0, 0}, withResult(Response{Op: 42}, Options{}), 24},
		// No MAP data to copy: the header alone, not 36 octets of zeros
		// (a 12-octet request must not get a 60-octet reply).
		{"version 0", []byte{0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, withResult(Response{Op: OpMap, HeaderOnly: true}, Options{}), 24},
		{"short PEER", []byte{1, 2}, withResult(Response{Op: OpPeer, HeaderOnly: true}, Options{}), 24},
		{"one octet", []byte{2}, withResult(Response{}, Options{}), 24},
		{"empty", nil, withResult(Response{}, Options{}), 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ErrorResponse(tt.in, NoResources, 30, 7)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			b := got.AppendTo(nil)
			if len(b) != tt.wantLen {
				t.Errorf("AppendTo: got %d octets, want %d", len(b), tt.wantLen)
			}
			if b[offVersion] != Version || b[offOpcode]&rBit == 0 || ResultCode(b[offResultCode]) != NoResources {
				t.Errorf("AppendTo: bad header %x", b[:4])
			}
			if _, err := ParseResponse(b); err != nil {
				t.Errorf("ParseResponse: %v", err)
			}
		})
	}
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want netip.Addr // ExternalAddr
	}{
		{"IPv4 client, no preference", goldenMapRequest, netip.IPv4Unspecified()},
		{"IPv6 client, no preference", Request{Op: OpMap, Client: goldenClient6}, netip.IPv6Unspecified()},
		{"suggestion kept", Request{Op: OpMap, Client: goldenClient4, SuggestedAddr: goldenExternal4}, goldenExternal4},
		{"ANNOUNCE has no address", Request{Op: OpAnnounce, Client: goldenClient4}, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.req.Answer(CannotProvideExternal, 60, 5)
			if got.ExternalAddr != tt.want {
				t.Errorf("ExternalAddr: got %v, want %v", got.ExternalAddr, tt.want)
			}
			if got.Op != tt.req.Op || got.Result != CannotProvideExternal || got.Lifetime != 60 || got.Epoch != 5 ||
				got.Nonce != tt.req.Nonce || got.ExternalPort != tt.req.SuggestedPort {
				t.Errorf("got %+v for %+v", got, tt.req)
			}
		})
	}
}

func TestResultCode(t *testing.T) {
	names := []string{"SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED", "MALFORMED_REQUEST", "UNSUPP_OPCODE",
		"UNSUPP_OPTION", "MALFORMED_OPTION", "NETWORK_FAILURE", "NO_RESOURCES", "UNSUPP_PROTOCOL",
		"USER_EX_QUOTA", "CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS"}
	for i, want := range names {
		c := ResultCode(i)
		if got := c.String(); got != want {
			t.Errorf("ResultCode(%d): got %q, want %q", i, got, want)
		}
		wantTransient := c == NetworkFailure || c == NoResources || c == UserExQuota
		if c.Transient() != wantTransient {
			t.Errorf("%v.Transient(): got %v, want %v", c, c.Transient(), wantTransient)
		}
	}
	if got := ResultCode(14).String(); got != "RESULT_CODE(14)" {
		t.Errorf("got %q", got)
	}
	if ResultCode(200).Transient() {
		t.Error("unknown code is transient")
	}
}

func TestNames(t *testing.T) {
	for got, want := range map[string]string{
		OpAnnounce.String():       "ANNOUNCE",
		OpMap.String():            "MAP",
		OpPeer.String():           "PEER",
		Opcode(3).String():        "OPCODE(3)",
		OptThirdParty.String():    "THIRD_PARTY",
		OptPreferFailure.String(): "PREFER_FAILURE",
		OptFilter.String():        "FILTER",
		OptionCode(130).String():  "OPTION(130)",
		Drop.String():             "drop",
		Reply.String():            "reply",
		ReplyError.String():       "reply-error",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestAnnounceGroups(t *testing.T) {
	if AnnounceGroup4.String() != "224.0.0.1" || AnnounceGroup6.String() != "ff02::1" {
		t.Errorf("got %v %v", AnnounceGroup4, AnnounceGroup6)
	}
}
