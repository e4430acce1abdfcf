package natpmp

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/internal/golden"
)

// loadGolden reads testdata/name (see internal/golden: hex lines, each
// with a comment naming the field and its RFC section).
func loadGolden(t testing.TB, name string) []byte {
	return golden.Hex(t, filepath.Join("testdata", name))
}

// goldenFiles lists every testdata/*.txt, for seeds and round trips.
func goldenFiles(t testing.TB) []string { return golden.Files(t, "testdata") }

var extAddr = netip.MustParseAddr("198.51.100.7")

// requestGoldens are the requests in testdata: RFC 6886 figures and what
// natpmpc 20150609 sent (natpmpc-*, captured by testdata/capture.sh).
var requestGoldens = []struct {
	file string
	want Request
}{
	{"address-request.txt", Request{Op: OpAddress}},
	{"map-udp-request.txt", Request{Op: OpMapUDP, InternalPort: 8080, SuggestedPort: 8080, Lifetime: 7200}},
	{"map-tcp-request.txt", Request{Op: OpMapTCP, InternalPort: 6881, Lifetime: 3600}},
	{"delete-request.txt", Request{Op: OpMapUDP, InternalPort: 8080}},
	{"delete-all-request.txt", Request{Op: OpMapTCP}},
	{"natpmpc-20150609-address.txt", Request{Op: OpAddress}},
	{"natpmpc-20150609-map-udp.txt", Request{Op: OpMapUDP, InternalPort: 5678, SuggestedPort: 1234, Lifetime: 3600}},
	// natpmpc keeps the suggested port on delete (COMPAT N6): ignore it.
	{"natpmpc-20150609-map-tcp-delete.txt", Request{Op: OpMapTCP, InternalPort: 5678, SuggestedPort: 1234}},
	{"natpmpc-20150609-delete-all.txt", Request{Op: OpMapUDP}},
}

func TestGoldenRequests(t *testing.T) {
	for _, tt := range requestGoldens {
		t.Run(tt.file, func(t *testing.T) {
			b := loadGolden(t, tt.file)
			if act, code := Classify(b); act != Reply || code != Success {
				t.Errorf("Classify = %v, %v, want reply, success", act, code)
			}
			got, err := ParseRequest(b)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseRequest = %+v, want %+v", got, tt.want)
			}
			if enc := tt.want.AppendTo(nil); !bytes.Equal(enc, b) {
				t.Errorf("AppendTo = %x, want %x", enc, b)
			}
		})
	}
}

// responseGoldens are the responses in testdata, all hand-assembled from
// RFC 6886 figures (the natpmpc captures are requests only).
var responseGoldens = []struct {
	file string
	want Response
}{
	{"address-response.txt", Response{Op: OpAddress, Epoch: 7200, ExternalAddr: extAddr}},
	{"address-error-response.txt", Response{Op: OpAddress, Result: NetworkFailure, Epoch: 3600, ExternalAddr: netip.IPv4Unspecified()}},
	{"map-response.txt", Response{Op: OpMapUDP, Epoch: 7200, InternalPort: 8080, ExternalPort: 8081, Lifetime: 3600}},
	{"map-error-response.txt", Response{Op: OpMapTCP, Result: NotAuthorized, Epoch: 60, InternalPort: 6881}},
	{"delete-response.txt", Response{Op: OpMapUDP, Epoch: 7200, InternalPort: 8080}},
	{"unsupported-version-reply.txt", Response{Op: OpAddress, Result: UnsupportedVersion, Epoch: 7200}},
	{"unsupported-opcode-reply.txt", Response{Op: 3, Result: UnsupportedOpcode, Epoch: 7200}},
}

func TestGoldenResponses(t *testing.T) {
	for _, tt := range responseGoldens {
		t.Run(tt.file, func(t *testing.T) {
			b := loadGolden(t, tt.file)
			got, err := ParseResponse(b)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseResponse = %+v, want %+v", got, tt.want)
			}
			if n := tt.want.Len(); n != len(b) {
				t.Errorf("Len = %d, want %d", n, len(b))
			}
			if enc := tt.want.AppendTo(nil); !bytes.Equal(enc, b) {
				t.Errorf("AppendTo = %x, want %x", enc, b)
			}
		})
	}
}

// TestGoldenErrorReplies builds each error reply from its request golden
// the way a server does: Classify, then ErrorResponse.
func TestGoldenErrorReplies(t *testing.T) {
	tests := []struct {
		request  string
		classify bool // take the code from Classify (else the request is valid and refused)
		code     ResultCode
		epoch    uint32
		reply    string
	}{
		{"version1-request.txt", true, UnsupportedVersion, 7200, "unsupported-version-reply.txt"},
		{"opcode3-request.txt", true, UnsupportedOpcode, 7200, "unsupported-opcode-reply.txt"},
		{"map-tcp-request.txt", false, NotAuthorized, 60, "map-error-response.txt"},
		{"address-request.txt", false, NetworkFailure, 3600, "address-error-response.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.reply, func(t *testing.T) {
			req, want := loadGolden(t, tt.request), loadGolden(t, tt.reply)
			act, code := Classify(req)
			switch {
			case tt.classify && (act != ReplyError || code != tt.code):
				t.Fatalf("Classify = %v, %v, want reply-error, %v", act, code, tt.code)
			case !tt.classify && act != Reply:
				t.Fatalf("Classify = %v, %v, want reply", act, code)
			}
			r := ErrorResponse(req, tt.code, tt.epoch)
			if got := r.AppendTo(nil); !bytes.Equal(got, want) {
				t.Errorf("ErrorResponse(%x).AppendTo = %x, want %x", req, got, want)
			}
			if r.Len() != len(want) {
				t.Errorf("Len = %d, want %d", r.Len(), len(want))
			}
		})
	}
}

func TestGoldenAnnouncement(t *testing.T) {
	want := loadGolden(t, "address-response.txt")
	if got := Announcement(7200, extAddr).AppendTo(nil); !bytes.Equal(got, want) {
		t.Errorf("Announcement.AppendTo = %x, want %x", got, want)
	}
}

// badRequests are the goldens that are valid in no direction: requests a
// server answers with an error reply.
var badRequests = map[string]bool{"version1-request.txt": true, "opcode3-request.txt": true}

// TestGoldenRoundTrip checks parse → AppendTo → parse on every golden
// that parses as a request or as a response.
func TestGoldenRoundTrip(t *testing.T) {
	for _, name := range goldenFiles(t) {
		t.Run(name, func(t *testing.T) {
			b := loadGolden(t, name)
			parsed := false
			if r, err := ParseRequest(b); err == nil {
				parsed = true
				enc := r.AppendTo(nil)
				if r2, err := ParseRequest(enc); err != nil || r2 != r || !bytes.Equal(enc, b) {
					t.Errorf("request %x → %+v → %x → %+v, %v", b, r, enc, r2, err)
				}
			}
			if r, err := ParseResponse(b); err == nil {
				parsed = true
				enc := r.AppendTo(nil)
				if r2, err := ParseResponse(enc); err != nil || r2 != r || !bytes.Equal(enc, b) {
					t.Errorf("response %x → %+v → %x → %+v, %v", b, r, enc, r2, err)
				}
			}
			if !parsed && !badRequests[name] {
				t.Errorf("%x parses neither as a request nor as a response", b)
			}
		})
	}
}
