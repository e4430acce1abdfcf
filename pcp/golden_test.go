package pcp

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

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
		file: "map_error_address_mismatch.txt",
		want: Response{Op: OpMap, Result: AddressMismatch, Lifetime: goldenErrLifetime, Epoch: goldenEpoch,
			Nonce: goldenNonce, Protocol: goldenTCP, InternalPort: 8080, ExternalPort: 8080,
			ExternalAddr: netip.IPv4Unspecified()},
		// The Handler's answer when the packet's source is not the
		// client address the request names (§8.1): no Mapper is asked.
		build: func(t *testing.T) Response {
			h := &Handler{Epoch: func() uint32 { return goldenEpoch }}
			from := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.99"), ClientPort)
			b := h.Handle(context.Background(), readGolden(t, "map_request_v4.txt"), from, time.Time{}, nil)
			r, err := ParseResponse(b)
			if err != nil {
				t.Fatalf("Handle answered % x: %v", b, err)
			}
			return r
		},
	},
	// Captured from miniupnpd 2.3.1 (test/captures/miniupnpd-2.3.1.txt):
	// what a deployed server sends, decoded and rebuilt by our codec, and
	// where berth answers alike, built as berth builds it.
	{
		file:  "miniupnpd-2.3.1-announce-response.txt",
		want:  Response{Op: OpAnnounce, Epoch: miniupnpdEpoch},
		build: func(*testing.T) Response { return Announce(miniupnpdEpoch) },
	},
	{
		file: "miniupnpd-2.3.1-map-response.txt",
		want: Response{Op: OpMap, Lifetime: 3600, Epoch: miniupnpdEpoch, Nonce: miniupnpdNonce, Protocol: goldenUDP,
			InternalPort: 5000, ExternalPort: 6000, ExternalAddr: miniupnpdExternal},
		build: func(*testing.T) Response {
			r := miniupnpdMapRequest(3600).Answer(Success, 3600, miniupnpdEpoch)
			r.ExternalPort, r.ExternalAddr = 6000, miniupnpdExternal
			return r
		},
	},
	{
		// No build: berth's reply to a delete copies the suggested
		// external address (::ffff:0.0.0.0 in this request) where
		// miniupnpd puts its own (RFC 6887 §15.1, erratum 3621).
		file: "miniupnpd-2.3.1-map-delete-response.txt",
		want: Response{Op: OpMap, Lifetime: 0, Epoch: miniupnpdEpoch, Nonce: miniupnpdNonce, Protocol: goldenUDP,
			InternalPort: 5000, ExternalPort: 6000, ExternalAddr: miniupnpdExternal},
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

// The miniupnpd 2.3.1 captures: the client, external address, nonce and
// epoch of test/captures/miniupnpd.sh.
var (
	miniupnpdClient   = netip.MustParseAddr("192.168.77.10")
	miniupnpdExternal = netip.MustParseAddr("11.22.33.2")
	miniupnpdNonce    = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
)

const miniupnpdEpoch = 13

// miniupnpdMapRequest is the MAP request of the captures (UDP 5000,
// suggested port 6000) with the given lifetime.
func miniupnpdMapRequest(life uint32) Request {
	return Request{Op: OpMap, Lifetime: life, Client: miniupnpdClient, Nonce: miniupnpdNonce, Protocol: goldenUDP,
		InternalPort: 5000, SuggestedPort: 6000, SuggestedAddr: netip.IPv4Unspecified()}
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
		"announce_response.txt":                   24,
		"map_response_v4.txt":                     60,
		"map_error_not_authorized.txt":            60,
		"map_error_unsupp_option.txt":             60,
		"unsupp_version_response.txt":             24,
		"map_response_v6.txt":                     60,
		"peer_response.txt":                       80,
		"map_response_filter.txt":                 84,
		"map_error_address_mismatch.txt":          60,
		"miniupnpd-2.3.1-announce-response.txt":   24,
		"miniupnpd-2.3.1-map-response.txt":        60,
		"miniupnpd-2.3.1-map-delete-response.txt": 60,
	} {
		if got := len(readGolden(t, file)); got != want {
			t.Errorf("%s: got %d octets, want %d", file, got, want)
		}
	}
}

// notCanonical are the request goldens whose re-encoding differs from the
// file: an unknown optional option is dropped on parse (§7.3).
var notCanonical = map[string]bool{"map_unknown_optional.txt": true}

// badRequests are the goldens that parse in no direction: requests a
// server answers with an error reply.
var badRequests = map[string]bool{"map_unknown_mandatory.txt": true, "unsupp_version_request.txt": true}

// TestGoldenRoundTrip checks parse → AppendTo → parse on every golden
// that parses as a request or as a response, the captures included, so
// that no vector is only a fuzz seed.
func TestGoldenRoundTrip(t *testing.T) {
	for _, name := range goldenFiles(t) {
		t.Run(name, func(t *testing.T) {
			b := readGolden(t, name)
			parsed := false
			if r, err := ParseRequest(b); err == nil {
				parsed = true
				enc := r.AppendTo(nil)
				r2, err := ParseRequest(enc)
				if err != nil || !reflect.DeepEqual(r2, r) || (!notCanonical[name] && !bytes.Equal(enc, b)) {
					t.Errorf("request %x → %+v → %x → %+v, %v", b, r, enc, r2, err)
				}
			}
			if r, err := ParseResponse(b); err == nil {
				parsed = true
				enc := r.AppendTo(nil)
				r2, err := ParseResponse(enc)
				if err != nil || !reflect.DeepEqual(r2, r) || !bytes.Equal(enc, b) {
					t.Errorf("response %x → %+v → %x → %+v, %v", b, r, enc, r2, err)
				}
			}
			if parsed == badRequests[name] {
				t.Errorf("%x: parsed %v, want %v", b, parsed, !badRequests[name])
			}
		})
	}
}
