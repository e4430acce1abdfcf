package description

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var testDevice = Device{
	UDNs:             [3]string{"uuid:11111111-2222-3333-4444-555555555555", "uuid:11111111-2222-3333-4444-555555555556", "uuid:11111111-2222-3333-4444-555555555557"},
	FriendlyName:     "berth router",
	Manufacturer:     "berth",
	ManufacturerURL:  "https://github.com/berthd/berth",
	ModelName:        "berth IGD",
	ModelNumber:      "1",
	SerialNumber:     "00000001",
	PresentationURL:  "http://192.168.1.1/",
	Layer3Forwarding: true,
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden:\ngot  %s\nwant %s", name, got, want)
	}
}

// node is a generic strict parse of a description.
type node struct {
	XMLName xml.Name
	Attr    []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []node     `xml:",any"`
}

func parse(t *testing.T, b []byte) node {
	t.Helper()
	var n node
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	if err := d.Decode(&n); err != nil {
		t.Fatalf("strict parse: %v\n%s", err, b)
	}
	return n
}

func (n node) walk(f func(n node)) {
	f(n)
	for _, c := range n.Nodes {
		c.walk(f)
	}
}

func TestRoot(t *testing.T) {
	for _, v := range []int{1, 2} {
		for _, base := range []string{"", "http://192.168.1.1:5000"} {
			d := testDevice
			d.Version = v
			b := Root(d, base)
			name := "rootDesc-v" + itoa(v)
			if base != "" {
				name += "-urlbase"
			}
			golden(t, name+".xml", b)
			checkCommon(t, b, "urn:schemas-upnp-org:device-1-0")
			root := parse(t, b)
			var services []string
			var devices []string
			root.walk(func(n node) {
				switch n.XMLName.Local {
				case "URLBase":
					if n.Text != base {
						t.Errorf("URLBase %q, want %q", n.Text, base)
					}
				case "deviceType":
					devices = append(devices, n.Text)
				case "service":
					var order []string
					for _, c := range n.Nodes {
						order = append(order, c.XMLName.Local)
						if strings.HasSuffix(c.XMLName.Local, "URL") {
							checkURL(t, c.Text)
						}
					}
					// D5: Apple scans for the next controlURL after the type.
					if got := strings.Join(order, ","); got != "serviceType,serviceId,controlURL,eventSubURL,SCPDURL" {
						t.Errorf("service child order %s", got)
					}
					services = append(services, n.Nodes[0].Text)
				}
			})
			wantDevices := []string{DeviceType("InternetGatewayDevice", v), DeviceType("WANDevice", v), DeviceType("WANConnectionDevice", v)}
			if strings.Join(devices, " ") != strings.Join(wantDevices, " ") {
				t.Errorf("v%d devices %q, want %q", v, devices, wantDevices)
			}
			wantServices := []string{ServiceType(Layer3Forwarding, 1), ServiceType(WANCommonInterfaceConfig, 1), ServiceType(WANIPConnection, v)}
			if strings.Join(services, " ") != strings.Join(wantServices, " ") {
				t.Errorf("v%d services %q, want %q", v, services, wantServices)
			}
		}
	}
	d := testDevice
	d.Layer3Forwarding, d.PresentationURL, d.FriendlyName = false, "", " a & <b>\n"
	b := Root(d, "")
	if bytes.Contains(b, []byte("Layer3Forwarding")) || bytes.Contains(b, []byte("presentationURL")) {
		t.Errorf("optional parts not omitted: %s", b)
	}
	if !bytes.Contains(b, []byte("<friendlyName>a &amp; &lt;b&gt;</friendlyName>")) {
		t.Errorf("friendlyName not trimmed and escaped: %s", b)
	}
	parse(t, b)
}

// checkCommon checks D1–D3: default namespace, no prefixes, compact
// output, and spec-exact case of the elements clients match exactly.
func checkCommon(t *testing.T, b []byte, ns string) {
	t.Helper()
	if !bytes.Contains(b, []byte(`xmlns="`+ns+`"`)) {
		t.Errorf("no default xmlns %s", ns)
	}
	body := b[bytes.Index(b, []byte("?>"))+2:]
	if regexp.MustCompile(`<[A-Za-z]+:`).Match(body) {
		t.Errorf("element prefix in output")
	}
	if regexp.MustCompile(`>\s+<|>\s|\s<`).Match(bytes.TrimSpace(body)) {
		t.Errorf("whitespace between or inside elements (D2)")
	}
	for _, bad := range []string{"<urlBase", "<ServiceType", "<serviceid", "<controlUrl", "<eventSubUrl", "<scpdURL", "<SCPDUrl", "<udn>", "<Udn>"} {
		if bytes.Contains(b, []byte(bad)) {
			t.Errorf("wrong case %s (D3)", bad)
		}
	}
}

func checkURL(t *testing.T, u string) {
	t.Helper()
	if !strings.HasPrefix(u, "/") || len(u) > 127 || strings.ContainsAny(u, "&<>\"' %?#") {
		t.Errorf("URL %q breaks D4", u)
	}
}

func TestSCPD(t *testing.T) {
	for _, c := range []struct {
		service string
		version int
		want    []string // actions that must be there
	}{
		{WANIPConnection, 1, []string{"AddPortMapping", "DeletePortMapping", "GetGenericPortMappingEntry", "GetSpecificPortMappingEntry", "GetExternalIPAddress", "GetStatusInfo", "GetNATRSIPStatus", "GetConnectionTypeInfo"}},
		{WANIPConnection, 2, []string{"AddAnyPortMapping", "DeletePortMappingRange", "GetListOfPortMappings", "AddPortMapping"}},
		{WANCommonInterfaceConfig, 1, []string{"GetCommonLinkProperties", "GetTotalBytesSent", "GetTotalPacketsReceived"}},
		{Layer3Forwarding, 1, []string{"GetDefaultConnectionService"}},
	} {
		b := SCPD(c.service, c.version)
		golden(t, c.service+"-v"+itoa(c.version)+".xml", b)
		checkCommon(t, b, "urn:schemas-upnp-org:service-1-0")
		scpd := parse(t, b)
		actions, vars := map[string]bool{}, map[string]bool{}
		var related []string
		scpd.walk(func(n node) {
			switch n.XMLName.Local {
			case "action":
				actions[n.Nodes[0].Text] = true
			case "stateVariable":
				vars[n.Nodes[0].Text] = true
			case "relatedStateVariable":
				related = append(related, n.Text)
			}
		})
		for _, a := range c.want {
			if !actions[a] {
				t.Errorf("%s:%d lacks %s", c.service, c.version, a)
			}
		}
		for _, r := range related {
			if !vars[r] {
				t.Errorf("%s:%d: relatedStateVariable %s is not declared", c.service, c.version, r)
			}
		}
		if c.service == WANIPConnection && c.version == 1 && actions["AddAnyPortMapping"] {
			t.Errorf("v1 SCPD has a v2 action")
		}
	}
	if SCPD(WANIPConnection, 3) != nil || SCPD("Foo", 1) != nil || SCPD(Layer3Forwarding, 2) != nil {
		t.Errorf("SCPD of an unknown service or version is not nil")
	}
}

func TestPersonality(t *testing.T) {
	tests := []struct {
		ua       string
		searched bool
		mode     string
		want     int
	}{
		{"Microsoft-Windows/10.0 UPnP/1.0", false, "auto", 1},
		{"FDSSDP", false, "auto", 1},
		{"Darwin/23 UPnP/1.0 Windows NT/5.1", false, "auto", 1}, // Apple
		{"XBOX", false, "", 1},
		{"Go-http-client/1.1", false, "auto", 2},
		{"Go-http-client/1.1", true, "auto", 1},
		{"", false, "auto", 2},
		{"Microsoft", false, "v2", 2},
		{"Go-http-client/1.1", false, "v1", 1},
	}
	for _, tt := range tests {
		if got := Personality(tt.ua, tt.searched, tt.mode); got != tt.want {
			t.Errorf("Personality(%q, %v, %q): got %d, want %d", tt.ua, tt.searched, tt.mode, got, tt.want)
		}
	}
}
