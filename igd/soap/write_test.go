package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

const (
	wantStart = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>"
	wantEnd   = "</s:Body></s:Envelope>\r\n"
)

func TestWriteFault(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFault(&b, ConflictInMappingEntry, ""); err != nil {
		t.Fatal(err)
	}
	// The R2 shape, spelled out: unprefixed errorCode, no whitespace around
	// the number (libtorrent, Apple scan for ">718</errorCode").
	want := wantStart + `<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>` +
		`<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode>` +
		`<errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>` + wantEnd
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	checkWellFormed(t, b.Bytes())

	b.Reset()
	WriteFault(&b, InvalidArgs, "bad <value>\x00")
	if !strings.Contains(b.String(), "<errorCode>402</errorCode><errorDescription>bad &lt;value&gt;</errorDescription>") {
		t.Errorf("custom description: got %s", b.String())
	}
}

func TestWriteResponse(t *testing.T) {
	tests := []struct {
		name string
		ns   string
		act  string
		out  []Arg
		want string
	}{
		{"void", wanIP1, "AddPortMapping", nil,
			`<u:AddPortMappingResponse xmlns:u="` + wanIP1 + `"></u:AddPortMappingResponse>`},
		{"args in order", wanIP1, "GetStatusInfo", []Arg{{Name: "NewConnectionStatus", Value: "Connected"}, {Name: "NewLastConnectionError", Value: "ERROR_NONE"}, {Name: "NewUptime", Value: "42"}},
			`<u:GetStatusInfoResponse xmlns:u="` + wanIP1 + `"><NewConnectionStatus>Connected</NewConnectionStatus><NewLastConnectionError>ERROR_NONE</NewLastConnectionError><NewUptime>42</NewUptime></u:GetStatusInfoResponse>`},
		{"escaped and stripped", wanIP1, "GetSpecificPortMappingEntry", []Arg{{Name: "NewPortMappingDescription", Value: "a&b<c>\"d'\r\ne\x7f\u0085f\xff"}},
			`<u:GetSpecificPortMappingEntryResponse xmlns:u="` + wanIP1 + `"><NewPortMappingDescription>a&amp;b&lt;c&gt;&quot;d&apos;e` + "f\ufffd" + `</NewPortMappingDescription></u:GetSpecificPortMappingEntryResponse>`},
		{"empty external address", wanIP1, "GetExternalIPAddress", []Arg{{Name: "NewExternalIPAddress"}},
			`<u:GetExternalIPAddressResponse xmlns:u="` + wanIP1 + `"><NewExternalIPAddress></NewExternalIPAddress></u:GetExternalIPAddressResponse>`},
		{"cdata", wanIP1, "GetListOfPortMappings", []Arg{{Name: "NewPortListing", Value: "<x>]]></x>", CDATA: true}},
			`<u:GetListOfPortMappingsResponse xmlns:u="` + wanIP1 + `"><NewPortListing><![CDATA[<x>]]]><![CDATA[]></x>]]></NewPortListing></u:GetListOfPortMappingsResponse>`},
		{"no namespace", "", "GetStatusInfo", nil, `<GetStatusInfoResponse></GetStatusInfoResponse>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteResponse(&b, tt.ns, tt.act, tt.out); err != nil {
				t.Fatal(err)
			}
			if got, want := b.String(), wantStart+tt.want+wantEnd; got != want {
				t.Errorf("got\n%q\nwant\n%q", got, want)
			}
			checkWellFormed(t, b.Bytes())
		})
	}
}

// TestCDATARoundTrip checks that any value survives the CDATA encoding.
func TestCDATARoundTrip(t *testing.T) {
	for _, v := range []string{"", "]]>", "]]]>>", "a]]>b]]>c", "]", "]]", "<p:x>&amp;</p:x>"} {
		var b bytes.Buffer
		WriteResponse(&b, wanIP1, "X", []Arg{{Name: "V", Value: v, CDATA: true}})
		var env struct {
			V string `xml:"Body>XResponse>V"`
		}
		if err := xml.Unmarshal(b.Bytes(), &env); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if env.V != v {
			t.Errorf("got %q, want %q", env.V, v)
		}
	}
}

func TestPortListing(t *testing.T) {
	doc := PortListing([]PortMappingEntry{
		{NewExternalPort: 2345, NewProtocol: TCP, NewInternalPort: 2345, NewInternalClient: "192.168.1.137", NewEnabled: true, NewDescription: "doom & <quake>\n", NewLeaseTime: 345},
		{NewRemoteHost: "", NewExternalPort: 53, NewProtocol: UDP, NewInternalPort: 5353, NewInternalClient: "192.168.1.2", NewLeaseTime: 0},
	})
	var list struct {
		XMLName xml.Name `xml:"urn:schemas-upnp-org:gw:WANIPConnection PortMappingList"`
		Entries []struct {
			NewExternalPort int    `xml:"NewExternalPort"`
			NewProtocol     string `xml:"NewProtocol"`
			NewEnabled      string `xml:"NewEnabled"`
			NewDescription  string `xml:"NewDescription"`
			NewLeaseTime    int    `xml:"NewLeaseTime"`
		} `xml:"PortMappingEntry"`
	}
	if err := xml.Unmarshal([]byte(doc), &list); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if len(list.Entries) != 2 || list.Entries[0].NewDescription != "doom & <quake>" || list.Entries[0].NewEnabled != "1" ||
		list.Entries[1].NewProtocol != "UDP" || list.Entries[1].NewEnabled != "0" || list.Entries[0].NewLeaseTime != 345 {
		t.Errorf("got %+v", list)
	}
	var b bytes.Buffer
	WriteResponse(&b, "urn:schemas-upnp-org:service:WANIPConnection:2", "GetListOfPortMappings", []Arg{{Name: "NewPortListing", Value: doc, CDATA: true}})
	checkWellFormed(t, b.Bytes())
	if !strings.Contains(b.String(), "<NewPortListing><![CDATA[<?xml") {
		t.Errorf("listing not in CDATA: %s", b.String())
	}
}

func TestFault(t *testing.T) {
	err := fmt.Errorf("igd: add: %w", NewFault(ConflictInMappingEntry))
	if !errors.Is(err, &Fault{Code: 718}) || errors.Is(err, NewFault(ActionFailed)) {
		t.Errorf("Is by code: wrong for %v", err)
	}
	var f *Fault
	if !errors.As(err, &f) || f.Code != 718 || f.Description != "ConflictInMappingEntry" {
		t.Errorf("As: got %+v", f)
	}
	if got := Description(999); got != "Action Failed" {
		t.Errorf("unknown code: got %q", got)
	}
}

// checkWellFormed parses b strictly, as a namespace-aware client would.
func checkWellFormed(t testing.TB, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && strings.Contains(se.Name.Local, ":") {
			t.Fatalf("unresolved prefix in %q\n%s", se.Name.Local, b)
		}
	}
}
