package ssdp

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testDevice = Device{
	Root:                   "uuid:11111111-2222-3333-4444-000000000001",
	WANDevice:              "uuid:11111111-2222-3333-4444-000000000002",
	WANConnectionDevice:    "11111111-2222-3333-4444-000000000003", // prefix optional
	IGDVersion:             2,
	WANIPConnectionVersion: 2,
}

// capture is one testdata/search file: the message and the expectations
// from its "# want-…:" comments.
type capture struct {
	name string
	msg  []byte
	want map[string]string
}

// loadCaptures reads testdata/search/*.txt (format described in each file).
func loadCaptures(t testing.TB) []capture {
	t.Helper()
	files, err := filepath.Glob("testdata/search/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	var out []capture
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := capture{name: filepath.Base(f), want: map[string]string{}}
		var body strings.Builder
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "# want-"), ": "); ok && strings.HasPrefix(line, "# want-") {
				c.want[k] = v
				continue
			}
			if strings.HasPrefix(line, "#") {
				continue
			}
			body.WriteString(line)
		}
		r := strings.NewReplacer(`\r`, "\r", `\n`, "\n", `\t`, "\t")
		c.msg = []byte(r.Replace(body.String()))
		out = append(out, c)
	}
	return out
}

func TestCaptures(t *testing.T) {
	for _, c := range loadCaptures(t) {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSearch(c.msg)
			if err != nil {
				t.Fatalf("ParseSearch: %v", err)
			}
			if s.ST != c.want["st"] {
				t.Errorf("got ST %q, want %q", s.ST, c.want["st"])
			}
			if mx, _ := strconv.Atoi(c.want["mx"]); s.MX != mx {
				t.Errorf("got MX %d, want %d", s.MX, mx)
			}
			n, _ := strconv.Atoi(c.want["answers"])
			if got := Matches(s.ST, testDevice); len(got) != n {
				t.Errorf("got %d answers, want %d: %v", len(got), n, got)
			}
		})
	}
}

// COMPAT S7, one rule per row.
func TestParseSearchTolerance(t *testing.T) {
	const st = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
	tests := []struct {
		name string
		msg  string
		want Search
	}{
		{"canonical", "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: " + st + "\r\n\r\n",
			Search{ST: st, MX: 2, Man: "ssdp:discover"}},
		{"lower-case names", "M-SEARCH * HTTP/1.1\r\nhost: x\r\nman: \"ssdp:discover\"\r\nmx: 1\r\nst: " + st + "\r\n\r\n",
			Search{ST: st, MX: 1, Man: "ssdp:discover"}},
		{"no space after colon", "M-SEARCH * HTTP/1.1\r\nMX:1\r\nST:" + st + "\r\n\r\n", Search{ST: st, MX: 1}},
		{"extra spaces", "M-SEARCH * HTTP/1.1\r\nMX:    1   \r\nST:   " + st + "   \r\n\r\n", Search{ST: st, MX: 1}},
		{"tabs", "M-SEARCH * HTTP/1.1\r\nMX:\t1\r\nST:\t" + st + "\t\r\n\r\n", Search{ST: st, MX: 1}},
		{"space before colon", "M-SEARCH * HTTP/1.1\r\nST : " + st + "\r\n", Search{ST: st, MX: -1}},
		{"LF only", "M-SEARCH * HTTP/1.1\nMX: 1\nST: " + st + "\n\n", Search{ST: st, MX: 1}},
		{"mixed line ends", "M-SEARCH * HTTP/1.1\r\nMX: 1\nST: " + st + "\r\n\n", Search{ST: st, MX: 1}},
		{"extra blank lines", "M-SEARCH * HTTP/1.1\r\n\r\nST: " + st + "\r\n\r\n\r\n\r\n", Search{ST: st, MX: -1}},
		{"leading blank line", "\r\nM-SEARCH * HTTP/1.1\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1}},
		{"no final blank line", "M-SEARCH * HTTP/1.1\r\nST: " + st, Search{ST: st, MX: -1}},
		{"missing MAN and MX", "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1}},
		{"MX capped", "M-SEARCH * HTTP/1.1\r\nMX: 120\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: MaxMX}},
		{"MX zero", "M-SEARCH * HTTP/1.1\r\nMX: 0\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: 0}},
		{"MX garbage", "M-SEARCH * HTTP/1.1\r\nMX: soon\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1}},
		{"MX negative", "M-SEARCH * HTTP/1.1\r\nMX: -3\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1}},
		{"odd MAN kept", "M-SEARCH * HTTP/1.1\r\nMAN: ssdp:discover\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1, Man: "ssdp:discover"}},
		{"first ST wins", "M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nST: " + st + "\r\n\r\n", Search{ST: "ssdp:all", MX: -1}},
		{"HTTP/1.0 and lower-case method", "m-search * HTTP/1.0\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1}},
		{"user agent cleaned", "M-SEARCH * HTTP/1.1\r\nST: " + st + "\r\nUSER-AGENT: a\x01b\x7fc\xffd\r\n\r\n", Search{ST: st, MX: -1, UserAgent: "abcd"}},
		{"unknown headers ignored", "M-SEARCH * HTTP/1.1\r\nCPFN.UPNP.ORG: x\r\nTCPPORT.UPNP.ORG: 1\r\nST: " + st + "\r\n\r\n", Search{ST: st, MX: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSearch([]byte(tt.msg))
			if err != nil {
				t.Fatalf("ParseSearch: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSearchRejects(t *testing.T) {
	tests := []struct {
		name, msg, field string
		notSearch        bool
	}{
		{"empty", "", "start-line", false},
		{"only blank lines", "\r\n\r\n", "start-line", false},
		{"too long", "M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nX: " + strings.Repeat("a", MaxSearchLen) + "\r\n\r\n", "length", false},
		{"notify", "NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\r\n", "start-line", true},
		{"response", "HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n", "start-line", true},
		{"GET", "GET / HTTP/1.1\r\nST: ssdp:all\r\n\r\n", "start-line", false},
		{"target not *", "M-SEARCH / HTTP/1.1\r\nST: ssdp:all\r\n\r\n", "start-line", false},
		{"bad version", "M-SEARCH * HTTP/2\r\nST: ssdp:all\r\n\r\n", "start-line", false},
		{"two fields", "M-SEARCH *\r\nST: ssdp:all\r\n\r\n", "start-line", false},
		{"header without colon", "M-SEARCH * HTTP/1.1\r\nST ssdp:all\r\n\r\n", "header", false},
		{"header without name", "M-SEARCH * HTTP/1.1\r\n: ssdp:all\r\n\r\n", "header", false},
		{"missing ST", "M-SEARCH * HTTP/1.1\r\nMX: 1\r\n\r\n", "ST", false},
		{"empty ST", "M-SEARCH * HTTP/1.1\r\nST:   \r\n\r\n", "ST", false},
		{"ST with space", "M-SEARCH * HTTP/1.1\r\nST: ssdp:all x\r\n\r\n", "ST", false},
		{"ST with CR", "M-SEARCH * HTTP/1.1\r\nST: ssdp:\rall\r\n\r\n", "ST", false},
		{"ST too long", "M-SEARCH * HTTP/1.1\r\nST: " + strings.Repeat("u", 300) + "\r\n\r\n", "ST", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSearch([]byte(tt.msg))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Field != tt.field {
				t.Errorf("got field %q, want %q (%v)", pe.Field, tt.field, err)
			}
			if errors.Is(err, ErrNotSearch) != tt.notSearch {
				t.Errorf("errors.Is(ErrNotSearch) = %v, want %v", !tt.notSearch, tt.notSearch)
			}
		})
	}
}

func TestSearchRoundTrip(t *testing.T) {
	for _, s := range []Search{
		{ST: "ssdp:all", MX: 2, Man: "ssdp:discover"},
		{ST: "upnp:rootdevice", MX: -1, Man: "ssdp:discover", UserAgent: "Linux/6 UPnP/1.1 test/1"},
	} {
		got, err := ParseSearch(s.AppendTo(nil))
		if err != nil || got != s {
			t.Errorf("round trip of %+v: got %+v, %v", s, got, err)
		}
	}
}

var testResponse = Response{
	ST:       "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	USN:      "uuid:11111111-2222-3333-4444-000000000001::urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	Location: "http://192.168.1.1:5000/rootDesc.xml",
	Server:   "Linux/6.12 UPnP/1.1 berth/1.0",
	BootID:   7,
	ConfigID: 1,
	Date:     time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
}

// COMPAT S3: exact bytes.
func TestResponseGolden(t *testing.T) {
	want := "HTTP/1.1 200 OK\r\n" +
		"CACHE-CONTROL: max-age=1800\r\n" +
		"DATE: Mon, 23 Nov 2026 12:00:00 GMT\r\n" +
		"EXT:\r\n" +
		"LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n" +
		"SERVER: Linux/6.12 UPnP/1.1 berth/1.0\r\n" +
		"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
		"USN: uuid:11111111-2222-3333-4444-000000000001::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
		"BOOTID.UPNP.ORG: 7\r\n" +
		"CONFIGID.UPNP.ORG: 1\r\n" +
		"OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n" +
		"01-NLS: 7\r\n" +
		"\r\n"
	if got := string(testResponse.AppendTo(nil)); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

// COMPAT S3: tailscale parses answers with http.ReadResponse.
func TestResponseReadByNetHTTP(t *testing.T) {
	b := testResponse.AppendTo(nil)
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Location": testResponse.Location, "St": testResponse.ST, "Usn": testResponse.USN,
		"Server": testResponse.Server, "Cache-Control": "max-age=1800", "Bootid.upnp.org": "7",
		"Date": "Mon, 23 Nov 2026 12:00:00 GMT",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	if _, ok := res.Header["Ext"]; !ok || res.StatusCode != 200 {
		t.Errorf("got status %d, EXT present %v", res.StatusCode, ok)
	}
	if len(b) > 1024 {
		t.Errorf("answer is %d bytes, want ≤ 1 KiB", len(b))
	}
}

// Values from the caller can never start a header of their own.
func TestResponseStripsControlCharacters(t *testing.T) {
	r := testResponse
	r.Location = "http://192.168.1.1:5000/x\r\nX-Evil: 1"
	r.Server = "  lead\ttab"
	b := string(r.AppendTo(nil))
	if strings.Contains(b, "\r\nX-Evil") || !strings.Contains(b, "LOCATION: http://192.168.1.1:5000/xX-Evil: 1\r\n") {
		t.Fatalf("injection not neutralised:\n%s", b)
	}
	if !strings.Contains(b, "SERVER: leadtab\r\n") {
		t.Fatalf("want exactly one space after the colon:\n%s", b)
	}
}

// COMPAT S8: NOTIFYs are valid HTTP requests with the UDA 1.1 headers.
func TestNotify(t *testing.T) {
	a := Answer{ST: STRootDevice, USN: "uuid:1::upnp:rootdevice"}
	tests := []struct {
		name string
		n    Notify
		want map[string]string
		none []string
	}{
		{"alive", Alive(a, "http://192.168.1.1:5000/rootDesc.xml", "Linux/6 UPnP/1.1 berth/1", 7, 1, 1800),
			map[string]string{"Nts": "ssdp:alive", "Nt": STRootDevice, "Usn": a.USN, "Host": MulticastHost,
				"Location": "http://192.168.1.1:5000/rootDesc.xml", "Cache-Control": "max-age=1800",
				"Bootid.upnp.org": "7", "Configid.upnp.org": "1", "01-Nls": "7"}, nil},
		{"byebye", Byebye(a, 7, 1),
			map[string]string{"Nts": "ssdp:byebye", "Nt": STRootDevice, "Usn": a.USN, "Bootid.upnp.org": "7"},
			[]string{"Location", "Cache-Control", "Server"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(tt.n.AppendTo(nil))))
			if err != nil {
				t.Fatal(err)
			}
			if req.Method != "NOTIFY" || req.RequestURI != "*" {
				t.Fatalf("got %s %s", req.Method, req.RequestURI)
			}
			for k, want := range tt.want {
				got := req.Header.Get(k)
				if k == "Host" {
					got = req.Host
				}
				if got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			for _, k := range tt.none {
				if _, ok := req.Header[k]; ok {
					t.Errorf("%s present in a byebye", k)
				}
			}
			if _, err := ParseSearch(tt.n.AppendTo(nil)); !errors.Is(err, ErrNotSearch) {
				t.Errorf("ParseSearch of our NOTIFY: got %v, want ErrNotSearch", err)
			}
		})
	}
}
