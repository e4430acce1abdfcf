package pcp

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/berthd/berth/internal/golden"
)

// Golden vectors live in testdata/*.txt: hex, one field per line, each
// with a comment citing RFC 6887; the first line names the provenance.

// readGolden returns the bytes of testdata/name (see internal/golden).
func readGolden(t testing.TB, name string) []byte {
	return golden.Hex(t, filepath.Join("testdata", name))
}

// goldenFiles lists the vectors in testdata, for the fuzz seeds.
func goldenFiles(t testing.TB) []string { return golden.Files(t, "testdata") }

var (
	goldenNonce     = [12]byte{0x8f, 0x3c, 0x1a, 0x2b, 0x4d, 0x5e, 0x6f, 0x70, 0x11, 0x22, 0x33, 0x44}
	goldenClient4   = netip.MustParseAddr("192.0.2.33")
	goldenClient6   = netip.MustParseAddr("2001:db8::33")
	goldenExternal4 = netip.MustParseAddr("203.0.113.7")
	goldenPeer4     = netip.MustParseAddr("198.51.100.20")
)

const (
	goldenEpoch          = 1234
	goldenErrLifetime    = 1800
	goldenTCP, goldenUDP = 6, 17
)

// goldenMapRequest is map_request_v4.txt decoded.
var goldenMapRequest = Request{
	Op: OpMap, Lifetime: 7200, Client: goldenClient4, Nonce: goldenNonce,
	Protocol: goldenTCP, InternalPort: 8080, SuggestedPort: 8080,
}

var requestGoldens = []struct {
	file      string
	want      Request
	canonical bool        // want.AppendTo reproduces the file byte for byte
	wantErr   *ParseError // instead of want
}{
	{file: "announce_request.txt", canonical: true,
		want: Request{Op: OpAnnounce, Client: goldenClient4}},
	{file: "map_request_v4.txt", canonical: true, want: goldenMapRequest},
	{file: "map_delete.txt", canonical: true,
		want: Request{Op: OpMap, Lifetime: 0, Client: goldenClient4, Nonce: goldenNonce, Protocol: goldenTCP,
			InternalPort: 8080, SuggestedPort: 8080, SuggestedAddr: goldenExternal4}},
	{file: "map_request_v6.txt", canonical: true,
		want: Request{Op: OpMap, Lifetime: 7200, Client: goldenClient6, Nonce: goldenNonce, Protocol: goldenUDP,
			InternalPort: 51413}},
	{file: "peer_request.txt", canonical: true,
		want: Request{Op: OpPeer, Lifetime: 300, Client: goldenClient4, Nonce: goldenNonce, Protocol: goldenUDP,
			InternalPort: 5004, RemotePort: 443, RemoteAddr: goldenPeer4}},
	{file: "map_third_party.txt", canonical: true,
		want: Request{Op: OpMap, Lifetime: 3600, Client: netip.MustParseAddr("192.0.2.1"), Nonce: goldenNonce,
			Protocol: goldenUDP, InternalPort: 9000,
			Options: Options{ThirdParty: netip.MustParseAddr("192.0.2.50")}}},
	{file: "map_prefer_failure.txt", canonical: true,
		want: Request{Op: OpMap, Lifetime: 7200, Client: goldenClient4, Nonce: goldenNonce, Protocol: goldenTCP,
			InternalPort: 8080, SuggestedPort: 8080, SuggestedAddr: goldenExternal4,
			Options: Options{PreferFailure: true}}},
	{file: "map_filter.txt", canonical: true,
		want: Request{Op: OpMap, Lifetime: 7200, Client: goldenClient4, Nonce: goldenNonce, Protocol: goldenTCP,
			InternalPort: 22,
			Options:      Options{Filters: []Filter{{PrefixLen: 120, RemoteAddr: netip.MustParseAddr("198.51.100.0")}}}}},
	// The unknown optional option is dropped: same request as map_request_v4.txt.
	{file: "map_unknown_optional.txt", want: goldenMapRequest},
	{file: "map_unknown_mandatory.txt",
		wantErr: &ParseError{Field: "option code", Off: 60, Code: UnsuppOption}},
	{file: "unsupp_version_request.txt",
		wantErr: &ParseError{Field: "version", Off: 0, Code: UnsuppVersion}},
}

func TestGoldenRequests(t *testing.T) {
	for _, tt := range requestGoldens {
		t.Run(tt.file, func(t *testing.T) {
			b := readGolden(t, tt.file)
			got, err := ParseRequest(b)
			if tt.wantErr != nil {
				var pe *ParseError
				if !errors.As(err, &pe) || *pe != *tt.wantErr {
					t.Fatalf("ParseRequest: got error %v, want %v", err, tt.wantErr)
				}
				if act, code := Classify(b); act == Drop {
					t.Errorf("Classify: got %v %v, want an answer", act, code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRequest:\ngot  %+v\nwant %+v", got, tt.want)
			}
			if act, code := Classify(b); act != Reply {
				t.Errorf("Classify: got %v %v, want reply", act, code)
			}
			if enc := tt.want.AppendTo(nil); tt.canonical && !bytes.Equal(enc, b) {
				t.Errorf("AppendTo:\ngot  %x\nwant %x", enc, b)
			}
		})
	}
}

var responseGoldens = []struct {
	file  string
	want  Response
	build func(t *testing.T) Response // how the server produces it, if it does
}{
	{
		file:  "announce_response.txt",
		want:  Response{Op: OpAnnounce, Epoch: goldenEpoch},
		build: func(*testing.T) Response { return Announce(goldenEpoch) },
	},
	{
		file: "map_response_v4.txt",
		want: Response{Op: OpMap, Lifetime: 7200, Epoch: goldenEpoch, Nonce: goldenNonce, Protocol: goldenTCP,
			InternalPort: 8080, ExternalPort: 8080, ExternalAddr: goldenExternal4},
		build: func(t *testing.T) Response {
			r := parseGoldenRequest(t, "map_request_v4.txt").Answer(Success, 7200, goldenEpoch)
			r.ExternalPort, r.ExternalAddr = 8080, goldenExternal4
			return r
		},
	},
	{
		file: "map_error_not_authorized.txt",
		want: Response{Op: OpMap, Result: NotAuthorized, Lifetime: goldenErrLifetime, Epoch: goldenEpoch,
			Nonce: goldenNonce, Protocol: goldenTCP, InternalPort: 8080, ExternalPort: 8080,
			ExternalAddr: netip.IPv4Unspecified()},
		build: func(t *testing.T) Response {
			return ErrorResponse(readGolden(t, "map_request_v4.txt"), NotAuthorized, goldenErrLifetime, goldenEpoch)
		},
	},
	{
		file: "map_error_unsupp_option.txt",
		want: Response{Op: OpMap, Result: UnsuppOption, Lifetime: goldenErrLifetime, Epoch: goldenEpoch,
			Nonce: goldenNonce, Protocol: goldenTCP, InternalPort: 8080, ExternalPort: 8080,
			ExternalAddr: netip.IPv4Unspecified()},
		build: func(t *testing.T) Response {
			return ErrorResponse(readGolden(t, "map_unknown_mandatory.txt"), UnsuppOption, goldenErrLifetime, goldenEpoch)
		},
	},
	{
		file: "unsupp_version_response.txt",
		want: Response{Op: OpMap, Result: UnsuppVersion, Lifetime: goldenErrLifetime, Epoch: goldenEpoch,
			HeaderOnly: true},
		build: func(t *testing.T) Response {
			b := readGolden(t, "unsupp_version_request.txt")
			act, code := Classify(b)
			if act != ReplyError || code != UnsuppVersion {
				t.Fatalf("Classify: got %v %v, want reply-error UNSUPP_VERSION", act, code)
			}
			return ErrorResponse(b, code, goldenErrLifetime, goldenEpoch)
		},
	},
	{
		file: "peer_response.txt",
		want: Response{Op: OpPeer, Lifetime: 300, Epoch: goldenEpoch, Nonce: goldenNonce, Protocol: goldenUDP,
			InternalPort: 5004, ExternalPort: 61000, ExternalAddr: goldenExternal4, RemotePort: 443, RemoteAddr: goldenPeer4},
		build: func(t *testing.T) Response {
			r := parseGoldenRequest(t, "peer_request.txt").Answer(Success, 300, goldenEpoch)
			r.ExternalPort, r.ExternalAddr = 61000, goldenExternal4
			return r
		},
	},
	{
		file: "map_response_filter.txt",
		want: Response{Op: OpMap, Lifetime: 7200, Epoch: goldenEpoch, Nonce: goldenNonce, Protocol: goldenTCP,
			InternalPort: 22, ExternalPort: 2222, ExternalAddr: goldenExternal4,
			Options: Options{Filters: []Filter{{PrefixLen: 120, RemoteAddr: netip.MustParseAddr("198.51.100.0")}}}},
		build: func(t *testing.T) Response {
			r := parseGoldenRequest(t, "map_filter.txt").Answer(Success, 7200, goldenEpoch)
			r.ExternalPort, r.ExternalAddr = 2222, goldenExternal4
			return r
		},
	},
	{
		file: "map_response_v6.txt",
		want: Response{Op: OpMap, Lifetime: 7200, Epoch: goldenEpoch, Nonce: goldenNonce, Protocol: goldenUDP,
			InternalPort: 51413, ExternalPort: 51413, ExternalAddr: goldenClient6},
		build: func(t *testing.T) Response {
			r := parseGoldenRequest(t, "map_request_v6.txt").Answer(Success, 7200, goldenEpoch)
			r.ExternalPort, r.ExternalAddr = r.InternalPort, goldenClient6
			return r
		},
	},
}

func parseGoldenRequest(t *testing.T, name string) Request {
	t.Helper()
	r, err := ParseRequest(readGolden(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

func TestGoldenResponses(t *testing.T) {
	for _, tt := range responseGoldens {
		t.Run(tt.file, func(t *testing.T) {
			b := readGolden(t, tt.file)
			got, err := ParseResponse(b)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseResponse:\ngot  %+v\nwant %+v", got, tt.want)
			}
			if enc := tt.want.AppendTo(nil); !bytes.Equal(enc, b) {
				t.Errorf("AppendTo:\ngot  %x\nwant %x", enc, b)
			}
			if tt.build == nil {
				return
			}
			// Bytes, not structs: a built error reply may hold the zero
			// Addr where the parsed one holds ::, both encoded as ::.
			if enc := tt.build(t).AppendTo(nil); !bytes.Equal(enc, b) {
				t.Errorf("built AppendTo:\ngot  %x\nwant %x", enc, b)
			}
		})
	}
}

// TestGoldenSizes pins the reply sizes clients check (COMPAT C1, C2).
func TestGoldenSizes(t *testing.T) {
	for file, want := range map[string]int{
		"announce_response.txt":        24,
		"map_response_v4.txt":          60,
		"map_error_not_authorized.txt": 60,
		"map_error_unsupp_option.txt":  60,
		"unsupp_version_response.txt":  24,
		"map_response_v6.txt":          60,
		"peer_response.txt":            80,
		"map_response_filter.txt":      84,
	} {
		if got := len(readGolden(t, file)); got != want {
			t.Errorf("%s: got %d octets, want %d", file, got, want)
		}
	}
}
