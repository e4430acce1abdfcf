package natpmp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// edit returns a copy of golden name, truncated to n bytes when n >= 0,
// with extra appended and then f applied.
func edit(t *testing.T, name string, n int, extra []byte, f func(b []byte)) []byte {
	t.Helper()
	b := loadGolden(t, name)
	if n >= 0 {
		b = b[:n]
	}
	b = append(b, extra...)
	if f != nil {
		f(b)
	}
	return b
}

func setByte(i int, v byte) func([]byte) { return func(b []byte) { b[i] = v } }

// wantParseError checks that err is a *ParseError with the given fields.
func wantParseError(t *testing.T, err error, field string, off int, code ResultCode, sentinel error) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v (%T), want *ParseError", err, err)
	}
	if pe.Field != field || pe.Off != off || pe.Code != code {
		t.Errorf("got {Field %q, Off %d, Code %v}, want {%q, %d, %v}", pe.Field, pe.Off, pe.Code, field, off, code)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("got %v, want errors.Is %v", err, sentinel)
	}
}

func TestParseRequestErrors(t *testing.T) {
	const (
		addr  = "address-request.txt"
		mapU  = "map-udp-request.txt"
		v1    = "version1-request.txt"
		op3   = "opcode3-request.txt"
		whole = -1
	)
	tests := []struct {
		name     string
		in       []byte
		field    string
		off      int
		code     ResultCode
		sentinel error
		action   Action
	}{
		{"empty", edit(t, addr, 0, nil, nil), "version", 0, Success, ErrTruncated, Drop},
		{"one byte", edit(t, addr, 1, nil, nil), "opcode", 1, Success, ErrTruncated, Drop},
		{"response bit", edit(t, addr, whole, nil, setByte(1, 128)), "opcode", 1, Success, ErrNotRequest, Drop},
		{"response bit on map", edit(t, mapU, whole, nil, setByte(1, 129)), "opcode", 1, Success, ErrNotRequest, Drop},
		{"response bit before version", edit(t, v1, whole, nil, setByte(1, 255)), "opcode", 1, Success, ErrNotRequest, Drop},
		{"version 1", edit(t, v1, whole, nil, nil), "version", 0, UnsupportedVersion, ErrVersion, ReplyError},
		{"version 2 map layout", edit(t, mapU, whole, nil, setByte(0, 2)), "version", 0, UnsupportedVersion, ErrVersion, ReplyError},
		{"version 255 short map", edit(t, mapU, 5, nil, setByte(0, 255)), "version", 0, UnsupportedVersion, ErrVersion, ReplyError},
		{"version before opcode", edit(t, op3, whole, nil, setByte(0, 1)), "version", 0, UnsupportedVersion, ErrVersion, ReplyError},
		{"opcode 3", edit(t, op3, whole, nil, nil), "opcode", 1, UnsupportedOpcode, ErrOpcode, ReplyError},
		{"opcode 127 long", edit(t, mapU, whole, []byte{1, 2, 3}, setByte(1, 127)), "opcode", 1, UnsupportedOpcode, ErrOpcode, ReplyError},
		{"map without reserved", edit(t, mapU, 2, nil, nil), "reserved", 2, Success, ErrTruncated, Drop},
		{"map half reserved", edit(t, mapU, 3, nil, nil), "reserved", 2, Success, ErrTruncated, Drop},
		{"map without internal port", edit(t, mapU, 4, nil, nil), "internal port", 4, Success, ErrTruncated, Drop},
		{"map half internal port", edit(t, mapU, 5, nil, nil), "internal port", 4, Success, ErrTruncated, Drop},
		{"map without suggested port", edit(t, mapU, 6, nil, nil), "suggested external port", 6, Success, ErrTruncated, Drop},
		{"map without lifetime", edit(t, mapU, 8, nil, nil), "lifetime", 8, Success, ErrTruncated, Drop},
		{"map short lifetime", edit(t, mapU, 11, nil, nil), "lifetime", 8, Success, ErrTruncated, Drop},
		{"address trailing byte", edit(t, addr, whole, []byte{0}, nil), "trailing data", 2, Success, ErrTrailing, Drop},
		{"address in map layout", edit(t, mapU, whole, nil, setByte(1, 0)), "trailing data", 2, Success, ErrTrailing, Drop},
		{"map trailing byte", edit(t, mapU, whole, []byte{0}, nil), "trailing data", 12, Success, ErrTrailing, Drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest(tt.in)
			if r != (Request{}) {
				t.Errorf("got request %+v with the error, want zero", r)
			}
			wantParseError(t, err, tt.field, tt.off, tt.code, tt.sentinel)
			if act, code := Classify(tt.in); act != tt.action || code != tt.code {
				t.Errorf("Classify = %v, %v, want %v, %v", act, code, tt.action, tt.code)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	const (
		addr  = "address-response.txt"
		mapR  = "map-response.txt"
		uv    = "unsupported-version-reply.txt"
		uo    = "unsupported-opcode-reply.txt"
		mapE  = "map-error-response.txt"
		whole = -1
	)
	tests := []struct {
		name     string
		in       []byte
		field    string
		off      int
		code     ResultCode
		sentinel error
	}{
		{"empty", edit(t, addr, 0, nil, nil), "version", 0, Success, ErrTruncated},
		{"one byte", edit(t, addr, 1, nil, nil), "opcode", 1, Success, ErrTruncated},
		{"version 1", edit(t, addr, whole, nil, setByte(0, 1)), "version", 0, UnsupportedVersion, ErrVersion},
		{"request", loadGolden(t, "address-request.txt"), "opcode", 1, Success, ErrNotResponse},
		{"map request", loadGolden(t, "map-udp-request.txt"), "opcode", 1, Success, ErrNotResponse},
		{"no result code", edit(t, addr, 2, nil, nil), "result code", 2, Success, ErrTruncated},
		{"short result code", edit(t, addr, 3, nil, nil), "result code", 2, Success, ErrTruncated},
		{"short epoch", edit(t, addr, 7, nil, nil), "epoch", 4, Success, ErrTruncated},
		{"header-form epoch", edit(t, uo, 6, nil, nil), "epoch", 4, Success, ErrTruncated},
		{"address without address", edit(t, addr, 8, nil, nil), "external address", 8, Success, ErrTruncated},
		{"address short address", edit(t, addr, 11, nil, nil), "external address", 8, Success, ErrTruncated},
		{"map without internal port", edit(t, mapR, 8, nil, nil), "internal port", 8, Success, ErrTruncated},
		{"map short mapped port", edit(t, mapR, 11, nil, nil), "mapped external port", 10, Success, ErrTruncated},
		{"map short lifetime", edit(t, mapR, 15, nil, nil), "lifetime", 12, Success, ErrTruncated},
		{"map error as 12 bytes", edit(t, mapE, 12, nil, nil), "lifetime", 12, Success, ErrTruncated},
		{"address trailing", edit(t, addr, whole, []byte{0}, nil), "trailing data", 12, Success, ErrTrailing},
		{"map trailing", edit(t, mapR, whole, []byte{0}, nil), "trailing data", 16, Success, ErrTrailing},
		{"version reply in address form", edit(t, uv, whole, []byte{0, 0, 0, 0}, nil), "trailing data", 8, Success, ErrTrailing},
		{"opcode reply with echo", edit(t, uo, whole, []byte{1}, nil), "trailing data", 8, Success, ErrTrailing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResponse(tt.in)
			if r != (Response{}) {
				t.Errorf("got response %+v with the error, want zero", r)
			}
			wantParseError(t, err, tt.field, tt.off, tt.code, tt.sentinel)
		})
	}
}

func TestParseErrorString(t *testing.T) {
	_, err := ParseRequest(loadGolden(t, "version1-request.txt"))
	const want = "natpmp: version at offset 0: unsupported version"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		action Action
		code   ResultCode
	}{
		{"nil", nil, Drop, Success},
		{"address request", loadGolden(t, "address-request.txt"), Reply, Success},
		{"map udp", loadGolden(t, "map-udp-request.txt"), Reply, Success},
		{"map tcp", loadGolden(t, "map-tcp-request.txt"), Reply, Success},
		{"delete", loadGolden(t, "delete-request.txt"), Reply, Success},
		{"delete all", loadGolden(t, "delete-all-request.txt"), Reply, Success},
		{"natpmpc map", loadGolden(t, "natpmpc-20150609-map-udp.txt"), Reply, Success},
		{"address response", loadGolden(t, "address-response.txt"), Drop, Success},
		{"map response", loadGolden(t, "map-response.txt"), Drop, Success},
		{"version reply", loadGolden(t, "unsupported-version-reply.txt"), Drop, Success},
		{"version 1", loadGolden(t, "version1-request.txt"), ReplyError, UnsupportedVersion},
		{"opcode 3", loadGolden(t, "opcode3-request.txt"), ReplyError, UnsupportedOpcode},
		{"reserved set", edit(t, "map-udp-request.txt", -1, nil, setByte(offReserved, 0xff)), Reply, Success},
		{"short map", edit(t, "map-tcp-request.txt", 10, nil, nil), Drop, Success},
		{"long map", edit(t, "map-tcp-request.txt", -1, []byte{0, 0, 0, 0}, nil), Drop, Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			act, code := Classify(tt.in)
			if act != tt.action || code != tt.code {
				t.Errorf("Classify(%x) = %v, %v, want %v, %v", tt.in, act, code, tt.action, tt.code)
			}
			_, err := ParseRequest(tt.in)
			if (act == Reply) != (err == nil) {
				t.Errorf("Classify = %v but ParseRequest error = %v", act, err)
			}
		})
	}
}

// TestReservedIgnored: §3.3 says the reserved field MUST be ignored on
// reception, so a non-zero one parses and AppendTo writes zero again.
func TestReservedIgnored(t *testing.T) {
	want := loadGolden(t, "map-udp-request.txt")
	in := edit(t, "map-udp-request.txt", -1, nil, func(b []byte) { b[offReserved], b[offReserved+1] = 0xde, 0xad })
	r, err := ParseRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AppendTo(nil); !bytes.Equal(got, want) {
		t.Errorf("AppendTo = %x, want %x", got, want)
	}
}

func TestErrorResponse(t *testing.T) {
	mapReq := loadGolden(t, "map-tcp-request.txt") // internal port 6881
	tests := []struct {
		name string
		req  []byte
		code ResultCode
		want Response
		len  int
	}{
		{"nil request", nil, NotAuthorized, Response{Result: NotAuthorized, ExternalAddr: netip.IPv4Unspecified()}, 12},
		{"out of resources", mapReq, OutOfResources, Response{Op: OpMapTCP, Result: OutOfResources, InternalPort: 6881}, 16},
		{"short map request", mapReq[:5], NotAuthorized, Response{Op: OpMapTCP, Result: NotAuthorized}, 16},
		{"map internal port only", mapReq[:6], NotAuthorized, Response{Op: OpMapTCP, Result: NotAuthorized, InternalPort: 6881}, 16},
		{"other version", edit(t, "map-tcp-request.txt", -1, nil, setByte(0, 7)), UnsupportedVersion, Response{Op: OpMapTCP, Result: UnsupportedVersion}, 8},
		{"other version refused", edit(t, "map-tcp-request.txt", -1, nil, setByte(0, 7)), NotAuthorized, Response{Op: OpMapTCP, Result: NotAuthorized}, 16},
		{"response bit stripped", edit(t, "map-tcp-request.txt", -1, nil, setByte(1, 0x82)), NetworkFailure, Response{Op: OpMapTCP, Result: NetworkFailure, InternalPort: 6881}, 16},
		{"unknown opcode, other code", edit(t, "opcode3-request.txt", -1, nil, nil), NotAuthorized, Response{Op: 3, Result: NotAuthorized}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ErrorResponse(tt.req, tt.code, 0)
			if got != tt.want {
				t.Errorf("ErrorResponse = %+v, want %+v", got, tt.want)
			}
			if got.Len() != tt.len || len(got.AppendTo(nil)) != tt.len {
				t.Errorf("Len = %d, AppendTo %d bytes, want %d", got.Len(), len(got.AppendTo(nil)), tt.len)
			}
		})
	}
}

func TestResponseLen(t *testing.T) {
	tests := []struct {
		r    Response
		want int
	}{
		{Response{Op: OpAddress}, 12},
		{Response{Op: OpAddress, Result: NetworkFailure}, 12},
		{Response{Op: OpMapUDP}, 16},
		{Response{Op: OpMapTCP, Result: OutOfResources}, 16},
		{Response{Op: OpMapUDP, Result: 99}, 16},
		{Response{Op: OpAddress, Result: UnsupportedVersion}, 8},
		{Response{Op: OpMapTCP, Result: UnsupportedVersion}, 8},
		{Response{Op: OpMapTCP, Result: UnsupportedOpcode}, 8},
		{Response{Op: 3, Result: UnsupportedOpcode}, 8},
		{Response{Op: 127}, 8},
	}
	for _, tt := range tests {
		if got := tt.r.Len(); got != tt.want {
			t.Errorf("%+v.Len() = %d, want %d", tt.r, got, tt.want)
		}
		if got := len(tt.r.AppendTo(nil)); got != tt.want {
			t.Errorf("%+v.AppendTo: %d bytes, want %d", tt.r, got, tt.want)
		}
	}
}

func TestAppendToKeepsPrefix(t *testing.T) {
	prefix := []byte("xy")
	req := Request{Op: OpMapUDP, InternalPort: 8080, SuggestedPort: 8080, Lifetime: 7200}
	if got, want := req.AppendTo(prefix), append([]byte("xy"), loadGolden(t, "map-udp-request.txt")...); !bytes.Equal(got, want) {
		t.Errorf("Request.AppendTo = %x, want %x", got, want)
	}
	resp := Response{Op: OpMapUDP, Epoch: 7200, InternalPort: 8080, ExternalPort: 8081, Lifetime: 3600}
	if got, want := resp.AppendTo(prefix), append([]byte("xy"), loadGolden(t, "map-response.txt")...); !bytes.Equal(got, want) {
		t.Errorf("Response.AppendTo = %x, want %x", got, want)
	}
}

func TestRequestAppendToUnknownOpcode(t *testing.T) {
	if got := (Request{Op: 9, InternalPort: 1, Lifetime: 2}).AppendTo(nil); !bytes.Equal(got, []byte{Version, 9}) {
		t.Errorf("AppendTo = %x, want the 2-byte header 0009", got)
	}
}

func TestExternalAddrForms(t *testing.T) {
	want := loadGolden(t, "address-response.txt")
	mapped := netip.AddrFrom16(extAddr.As16()) // ::ffff:198.51.100.7
	if got := Announcement(7200, mapped).AppendTo(nil); !bytes.Equal(got, want) {
		t.Errorf("IPv4-mapped address: got %x, want %x", got, want)
	}
	zero := edit(t, "address-response.txt", 8, []byte{0, 0, 0, 0}, nil)
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("2001:db8::1")} {
		if got := Announcement(7200, a).AppendTo(nil); !bytes.Equal(got, zero) {
			t.Errorf("%v: got %x, want %x", a, got, zero)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{OpAddress.String(), "address"},
		{OpMapUDP.String(), "map-udp"},
		{OpMapTCP.String(), "map-tcp"},
		{Opcode(7).String(), "opcode(7)"},
		{Success.String(), "success"},
		{UnsupportedVersion.String(), "unsupported version"},
		{NotAuthorized.String(), "not authorized"},
		{NetworkFailure.String(), "network failure"},
		{OutOfResources.String(), "out of resources"},
		{UnsupportedOpcode.String(), "unsupported opcode"},
		{ResultCode(300).String(), "result(300)"},
		{Drop.String(), "drop"},
		{Reply.String(), "reply"},
		{ReplyError.String(), "reply-error"},
		{Action(9).String(), "action(9)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
