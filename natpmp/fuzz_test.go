package natpmp

import (
	"bytes"
	"errors"
	"testing"
)

// addGoldenSeeds seeds f with every testdata golden.
func addGoldenSeeds(f *testing.F) {
	for _, name := range goldenFiles(f) {
		f.Add(loadGolden(f, name))
	}
}

// FuzzParseRequest checks that ParseRequest never panics, agrees with
// Classify, and round-trips: parse → AppendTo → parse is the identity and
// gives back the input bytes (except the reserved field, which §3.3 says
// to ignore on reception, so AppendTo writes zero). It also checks the
// error reply a server would build for every input.
func FuzzParseRequest(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		act, code := Classify(b)
		r, err := ParseRequest(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *ParseError", err, err)
			}
			if pe.Off < 0 || pe.Off > MaxRequestLen || pe.Field == "" || pe.Err == nil {
				t.Fatalf("implausible %#v", pe)
			}
			switch {
			case act == Reply:
				t.Fatalf("Classify = reply, but ParseRequest: %v", err)
			case pe.Code != code || (act == ReplyError) != (code != Success):
				t.Fatalf("Classify = %v, %v, but ParseRequest error code %v", act, code, pe.Code)
			}
			checkErrorReply(t, b, code)
			return
		}
		if act != Reply || code != Success {
			t.Fatalf("ParseRequest succeeded, Classify = %v, %v", act, code)
		}
		out := r.AppendTo(nil)
		if len(out) > MaxRequestLen {
			t.Fatalf("AppendTo gave %d bytes", len(out))
		}
		want := bytes.Clone(b)
		if r.Op.isMap() {
			want[offReserved], want[offReserved+1] = 0, 0
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("AppendTo = %x, want %x", out, want)
		}
		r2, err := ParseRequest(out)
		if err != nil || r2 != r {
			t.Fatalf("reparse = %+v, %v, want %+v", r2, err, r)
		}
		checkErrorReply(t, b, NotAuthorized) // a refusal of a valid request
	})
}

// checkErrorReply checks the reply ErrorResponse builds for request b: at
// most MaxResponseLen bytes, Len() of them, and a response that
// ParseResponse reads back unchanged.
func checkErrorReply(t *testing.T, b []byte, code ResultCode) {
	t.Helper()
	if code == Success {
		return // dropped: no reply
	}
	r := ErrorResponse(b, code, 42)
	out := r.AppendTo(nil)
	if len(out) != r.Len() || len(out) > MaxResponseLen {
		t.Fatalf("error reply %+v: %d bytes, Len %d", r, len(out), r.Len())
	}
	if back, err := ParseResponse(out); err != nil || back != r {
		t.Fatalf("error reply %x parses as %+v, %v, want %+v", out, back, err, r)
	}
}

// FuzzParseResponse checks that ParseResponse never panics and that
// parse → AppendTo → parse is the identity and gives back the input bytes.
func FuzzParseResponse(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *ParseError", err, err)
			}
			if pe.Off < 0 || pe.Off > MaxResponseLen || pe.Field == "" || pe.Err == nil {
				t.Fatalf("implausible %#v", pe)
			}
			return
		}
		out := r.AppendTo(nil)
		if len(out) > MaxResponseLen || len(out) != r.Len() {
			t.Fatalf("AppendTo gave %d bytes, Len %d", len(out), r.Len())
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("AppendTo = %x, want %x", out, b)
		}
		r2, err := ParseResponse(out)
		if err != nil || r2 != r {
			t.Fatalf("reparse = %+v, %v, want %+v", r2, err, r)
		}
	})
}
