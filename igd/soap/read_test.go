package soap

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const wanIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1"

// corpusCase is one file of testdata/requests: "#" comment lines, header
// lines (SOAPAction, want-name, want-ns, want-arg name=value), "--", body.
type corpusCase struct {
	soapAction string
	name, ns   string
	args       [][2]string
	body       []byte
}

func readCorpus(t testing.TB, path string) corpusCase {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c corpusCase
	rest := raw
	for len(rest) > 0 {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		rest = after
		l := strings.TrimSuffix(string(line), "\r")
		if l == "--" {
			c.body = rest
			return c
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "SOAPAction":
			c.soapAction = v
		case "want-name":
			c.name = v
		case "want-ns":
			c.ns = v
		case "want-arg":
			n, val, _ := strings.Cut(v, "=")
			c.args = append(c.args, [2]string{n, val})
		default:
			t.Fatalf("%s: unknown header line %q", path, l)
		}
	}
	t.Fatalf("%s: no -- line", path)
	return c
}

func TestReadActionCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/requests/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c := readCorpus(t, f)
			a, err := ReadAction(bytes.NewReader(c.body), c.soapAction)
			if err != nil {
				t.Fatalf("ReadAction: %v", err)
			}
			if a.Name != c.name || a.Namespace != c.ns {
				t.Errorf("got %s#%s, want %s#%s", a.Namespace, a.Name, c.ns, c.name)
			}
			for _, kv := range c.args {
				if got, ok := a.Args[kv[0]]; !ok || got != kv[1] {
					t.Errorf("arg %s: got %q (present %v), want %q", kv[0], got, ok, kv[1])
				}
			}
			// The same body without any header decodes to the same action.
			b, err := ReadAction(bytes.NewReader(c.body), "")
			if err != nil || b.Name != a.Name || !slices.Equal(b.ArgOrder, a.ArgOrder) {
				t.Errorf("without SOAPAction: got %+v, %v", b, err)
			}
		})
	}
}

func envelope(action string) string {
	return `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` + action + `</s:Body></s:Envelope>`
}

func TestReadAction(t *testing.T) {
	delPM := envelope(`<u:DeletePortMapping xmlns:u="` + wanIP1 + `"><NewRemoteHost/><NewExternalPort>80</NewExternalPort><NewProtocol>TCP</NewProtocol></u:DeletePortMapping>`)
	tests := []struct {
		name       string
		soapAction string
		body       string
		wantNS     string
		wantName   string
		wantArgs   map[string]string
		wantOrder  []string
	}{
		{"double quoted", `"` + wanIP1 + `#DeletePortMapping"`, delPM, wanIP1, "DeletePortMapping", nil, []string{"NewRemoteHost", "NewExternalPort", "NewProtocol"}},
		{"single quoted", `'` + wanIP1 + `#DeletePortMapping'`, delPM, wanIP1, "DeletePortMapping", nil, nil},
		{"unquoted with spaces", "  " + wanIP1 + "#DeletePortMapping \t", delPM, wanIP1, "DeletePortMapping", nil, nil},
		{"quotes inside spaces", ` " ` + wanIP1 + `#DeletePortMapping " `, delPM, wanIP1, "DeletePortMapping", nil, nil},
		{"header names other version", `"urn:schemas-upnp-org:service:WANIPConnection:2#DeletePortMapping"`, delPM,
			"urn:schemas-upnp-org:service:WANIPConnection:2", "DeletePortMapping", nil, nil},
		{"garbled header", `"#"`, delPM, wanIP1, "DeletePortMapping", nil, nil},
		{"header without hash", wanIP1, delPM, wanIP1, "DeletePortMapping", nil, nil},
		{"header disagrees with body", `"` + wanIP1 + `#GetStatusInfo"`, delPM, wanIP1, "DeletePortMapping", nil, nil},
		{"default namespace", "", envelope(`<GetStatusInfo xmlns="` + wanIP1 + `"/>`), wanIP1, "GetStatusInfo", map[string]string{}, []string{}},
		{"namespace on ancestor", "", `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="` + wanIP1 + `"><S:Body><m:GetStatusInfo/></S:Body></S:Envelope>`,
			wanIP1, "GetStatusInfo", nil, nil},
		{"undeclared prefixes", "", `<soap:Envelope><soap:Body><u:GetStatusInfo></u:GetStatusInfo></soap:Body></soap:Envelope>`, "", "GetStatusInfo", nil, nil},
		{"undeclared prefix, header", wanIP1 + "#GetStatusInfo", `<soap:Envelope><soap:Body><u:GetStatusInfo/></soap:Body></soap:Envelope>`, wanIP1, "GetStatusInfo", nil, nil},
		{"prefixed arguments and attributes", "", envelope(`<m:AddPortMapping xmlns:m="` + wanIP1 + `" xmlns:dt="urn:schemas-microsoft-com:datatypes"><m:NewExternalPort dt:dt="ui2"> 8080 </m:NewExternalPort><NewProtocol a='b'>tcp</NewProtocol></m:AddPortMapping>`),
			wanIP1, "AddPortMapping", map[string]string{"NewExternalPort": "8080", "NewProtocol": "tcp"}, []string{"NewExternalPort", "NewProtocol"}},
		{"raw ampersand and less-than", "", envelope(`<u:AddPortMapping xmlns:u="` + wanIP1 + `"><NewPortMappingDescription>Tom & Jerry <3 x<y &amp; &nbsp;!</NewPortMappingDescription><NewExternalPort>1</NewExternalPort></u:AddPortMapping>`),
			wanIP1, "AddPortMapping", map[string]string{"NewPortMappingDescription": "Tom & Jerry <3 x<y & \u00a0!", "NewExternalPort": "1"}, nil},
		{"tag-like description", "", envelope(`<u:AddPortMapping xmlns:u="` + wanIP1 + `"><NewPortMappingDescription><b>bold</NewPortMappingDescription></u:AddPortMapping>`),
			wanIP1, "AddPortMapping", map[string]string{"NewPortMappingDescription": "<b>bold"}, nil},
		{"duplicate argument keeps first", "", envelope(`<u:X xmlns:u="` + wanIP1 + `"><A>1</A><A>2</A></u:X>`), wanIP1, "X", map[string]string{"A": "1"}, []string{"A"}},
		{"BOM and no declaration", "", "\ufeff" + delPM + "\r\n", wanIP1, "DeletePortMapping", nil, nil},
		{"header only, empty body", `"` + wanIP1 + `#GetExternalIPAddress"`, "", wanIP1, "GetExternalIPAddress", map[string]string{}, nil},
		{"comments and CDATA", "", envelope(`<!-- x --><u:X xmlns:u="` + wanIP1 + `"><A><![CDATA[a<b]]></A></u:X>`), wanIP1, "X", map[string]string{"A": "a<b"}, nil},
		{"nested value keeps direct text", "", envelope(`<u:X xmlns:u="` + wanIP1 + `"><A>v<i>w</i></A></u:X>`), wanIP1, "X", map[string]string{"A": "v"}, nil},
		{"truncated body keeps arguments", "", `<s:Envelope><s:Body><u:X xmlns:u="` + wanIP1 + `"><A>1</A><B>2`, wanIP1, "X", map[string]string{"A": "1", "B": "2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ReadAction(strings.NewReader(tt.body), tt.soapAction)
			if err != nil {
				t.Fatalf("ReadAction: %v", err)
			}
			if a.Namespace != tt.wantNS || a.Name != tt.wantName {
				t.Errorf("got %q#%q, want %q#%q", a.Namespace, a.Name, tt.wantNS, tt.wantName)
			}
			if tt.wantArgs != nil && !mapsEqual(a.Args, tt.wantArgs) {
				t.Errorf("args: got %q, want %q", a.Args, tt.wantArgs)
			}
			if tt.wantOrder != nil && !slices.Equal(a.ArgOrder, tt.wantOrder) {
				t.Errorf("order: got %q, want %q", a.ArgOrder, tt.wantOrder)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestReadActionErrors(t *testing.T) {
	deep := strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100)
	tests := []struct {
		name       string
		soapAction string
		body       string
		want       error
	}{
		{"empty", "", "", NewFault(InvalidAction)},
		{"no body element", "", "<s:Envelope></s:Envelope>", NewFault(InvalidAction)},
		{"empty Body", "", "<s:Envelope><s:Body></s:Body></s:Envelope>", NewFault(InvalidAction)},
		{"not XML", "", "GET / HTTP/1.1\r\n", NewFault(InvalidAction)},
		{"too deep", "", envelope(deep), NewFault(InvalidAction)},
		{"too deep with header", wanIP1 + "#X", "<s:Body>" + deep, NewFault(InvalidAction)},
		{"invalid header name", `"` + wanIP1 + `#Add Port"`, "", NewFault(InvalidAction)},
		{"too large", "", envelope(strings.Repeat(" ", MaxBodySize)), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ReadAction(strings.NewReader(tt.body), tt.soapAction)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %+v, %v; want error %v", a, err, tt.want)
			}
		})
	}
}

// A body of exactly MaxBodySize is read; one byte more is ErrTooLarge.
func TestReadActionSizeCap(t *testing.T) {
	body := envelope(`<u:GetExternalIPAddress xmlns:u="` + wanIP1 + `"></u:GetExternalIPAddress>`)
	pad := strings.Repeat(" ", MaxBodySize-len(body))
	a, err := ReadAction(strings.NewReader(body+pad), "")
	if err != nil || a.Name != "GetExternalIPAddress" {
		t.Fatalf("a body of %d bytes: got %+v, %v", MaxBodySize, a, err)
	}
	if _, err := ReadAction(strings.NewReader(body+pad+" "), ""); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a body of %d bytes: got %v, want ErrTooLarge", MaxBodySize+1, err)
	}
}

func TestEscapeLeafText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<a>x</a>", "<a>x</a>"},
		{"<a>x<y</a>", "<a>x&lt;y</a>"},
		{"<r><a>1<2</a><b>3<4</b ></r>", "<r><a>1&lt;2</a><b>3&lt;4</b ></r>"},
		{"<a/><b>x</b>", "<a/><b>x</b>"},
		{"<a>x<y", "<a>x<y"},
		{"<<<", "<<<"},
		{"<a x='1'>v<w</a>", "<a x='1'>v&lt;w</a>"},
	}
	for _, tt := range tests {
		if got := string(escapeLeafText([]byte(tt.in))); got != tt.want {
			t.Errorf("escapeLeafText(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFastPathReadsRealClients checks that the requests of every client
// in the corpus take the fast path, and that it decodes them as
// encoding/xml does.
func TestFastPathReadsRealClients(t *testing.T) {
	files, _ := filepath.Glob("testdata/requests/*.txt")
	if len(files) == 0 {
		t.Fatal("no request corpus")
	}
	for _, p := range files {
		c := readCorpus(t, p)
		if _, _, err := decodeTokens(newFastTokens(prepare(c.body)).next); err == errFallback {
			t.Errorf("%s: the fast path gave up", filepath.Base(p))
		}
		checkFastPath(t, c.body)
	}
}
