package soap

import (
	"strings"
	"testing"
)

// COMPAT R4, P3: a raw control character in a value (a description with
// an ANSI escape) is dropped; it must not end decoding and lose the value
// and the arguments after it.
func TestReadActionControlCharacters(t *testing.T) {
	body := `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` +
		`<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">` +
		"<NewPortMappingDescription>go\x01nat\x1b[0m\x00\x7f\ttab</NewPortMappingDescription>" +
		"<NewLeaseDuration>3600</NewLeaseDuration>" +
		`</u:AddPortMapping></s:Body></s:Envelope>`
	a, err := ReadAction(strings.NewReader(body), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Args["NewPortMappingDescription"]; got != "gonat[0m\x7f\ttab" {
		t.Errorf("description %q, want %q", got, "gonat[0m\x7f\ttab")
	}
	if got := a.Args["NewLeaseDuration"]; got != "3600" {
		t.Errorf("NewLeaseDuration %q, want 3600 (an argument after the control characters)", got)
	}
}
