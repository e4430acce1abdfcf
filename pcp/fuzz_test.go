package pcp

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// addGoldenSeeds seeds f with every golden vector, requests and responses
// alike, and with option combinations built from them.
func addGoldenSeeds(f *testing.F) {
	for _, name := range goldenFiles(f) {
		f.Add(readGolden(f, name))
	}
	mapReq := readGolden(f, "map_request_v4.txt")
	mapResp := readGolden(f, "map_response_v4.txt")
	for _, b := range [][]byte{
		concat(mapReq, thirdPartyOpt("192.0.2.50"), preferFailureOpt, filterOpt(104, 80, "198.51.100.0"), filterOpt(32, 0, "2001:db8::")),
		concat(mapResp, thirdPartyOpt("2001:db8::50"), preferFailureOpt, filterOpt(0, 0, "::")),
		concat(readGolden(f, "peer_request.txt"), thirdPartyOpt("192.0.2.50")),
		concat(readGolden(f, "map_request_v6.txt"), optBytes(129, 1), optBytes(130, 1, 2), optBytes(131, 1, 2, 3), optBytes(132)),
		concat(readGolden(f, "announce_request.txt"), optBytes(200, 1, 2, 3, 4, 5)),
	} {
		f.Add(b)
	}
}

// FuzzParseRequest checks, for any input: no panic; Classify agrees with
// ParseRequest; a parsed request survives AppendTo and ParseRequest
// unchanged and encodes to at most MaxLen octets; every reply the server
// can build (Answer, ErrorResponse) encodes to at most MaxLen octets and
// parses as a response.
func FuzzParseRequest(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzCheckRequest(t, b)
	})
}

func fuzzCheckRequest(t *testing.T, b []byte) {
	t.Helper()
	act, code := Classify(b)
	r, err := ParseRequest(b)
	var pe *ParseError
	switch {
	case err == nil && act != Reply:
		t.Fatalf("ParseRequest accepts what Classify says %v %v to", act, code)
	case err != nil && !errors.As(err, &pe):
		t.Fatalf("ParseRequest: %T is not a *ParseError", err)
	case act == ReplyError && pe.Code != code:
		t.Fatalf("ParseRequest code %v, Classify code %v", pe.Code, code)
	}
	if act != Drop {
		fuzzCheckReply(t, ErrorResponse(b, code, 30, 1).AppendTo(nil))
	}
	if err != nil {
		if pe.Off < 0 || pe.Off > max(len(b), MaxLen) {
			t.Fatalf("error offset %d outside the message (%d octets)", pe.Off, len(b))
		}
		return
	}
	enc := r.AppendTo(nil)
	if len(enc) > MaxLen {
		t.Fatalf("AppendTo: %d octets", len(enc))
	}
	r2, err := ParseRequest(enc)
	if err != nil {
		t.Fatalf("ParseRequest(AppendTo(%+v)) = %x: %v", r, enc, err)
	}
	if !reflect.DeepEqual(r, r2) {
		t.Fatalf("round trip:\ngot  %+v\nwant %+v", r2, r)
	}
	fuzzCheckReply(t, r.Answer(Success, 7200, 1).AppendTo(nil))
}

// FuzzParseResponse checks, for any input: no panic; a parsed response
// survives AppendTo and ParseResponse unchanged and encodes to at most
// MaxLen octets.
func FuzzParseResponse(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseResponse: %T is not a *ParseError", err)
			}
			return
		}
		enc := r.AppendTo(nil)
		if len(enc) > MaxLen {
			t.Fatalf("AppendTo: %d octets", len(enc))
		}
		r2, err := ParseResponse(enc)
		if err != nil {
			t.Fatalf("ParseResponse(AppendTo(%+v)) = %x: %v", r, enc, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip:\ngot  %+v\nwant %+v", r2, r)
		}
		if again := r2.AppendTo(nil); !bytes.Equal(again, enc) {
			t.Fatalf("encoding not stable:\ngot  %x\nwant %x", again, enc)
		}
	})
}

// fuzzCheckReply checks a reply the server would send.
func fuzzCheckReply(t *testing.T, b []byte) {
	t.Helper()
	if len(b) > MaxLen {
		t.Fatalf("reply of %d octets", len(b))
	}
	if _, err := ParseResponse(b); err != nil {
		t.Fatalf("reply %x does not parse: %v", b, err)
	}
}

// TestFuzzCrasherShortPEER pins testdata/fuzz/FuzzParseRequest/3cbe555e38edbca1:
// a 24-octet PEER request answered with a header-only reply whose result
// was SUCCESS did not parse back, because ParseResponse took a header-only
// MAP or PEER reply for an error reply only.
func TestFuzzCrasherShortPEER(t *testing.T) {
	fuzzCheckRequest(t, []byte("\x02\x020000000000000000000000"))
}
