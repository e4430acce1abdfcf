package soap

import (
	"io"
	"strings"
	"unicode/utf8"
)

// The envelope miniupnpd sends, byte for byte (upnpsoap.c
// BuildSendAndCloseSoapResp, SoapError). Apple's client scans bytes, so the
// shape matters as much as the content (COMPAT R1, R2).
const (
	envelopeStart = "<?xml version=\"1.0\"?>\r\n" +
		"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" " +
		"s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>"
	envelopeEnd = "</s:Body></s:Envelope>\r\n"
)

// Arg is one output argument of a response.
type Arg struct {
	Name  string // must be an XML name; UPnP argument names are ASCII
	Value string // escaped on output; control characters are dropped (R4)
	// CDATA writes Value as a CDATA section, as miniupnpd does for
	// NewPortListing (COMPAT R9). Value is still cleaned of characters XML
	// cannot carry, and a "]]>" inside it is split across two sections.
	CDATA bool
}

// WriteResponse writes the success envelope of action (COMPAT R1):
//
//	<s:Envelope ...><s:Body><u:ActionResponse xmlns:u="ns"><Out>v</Out>...</u:ActionResponse></s:Body></s:Envelope>
//
// ns is the request's namespace (COMPAT P7); when it is empty the response
// element has no prefix and no namespace. out is written in order (the
// SCPD's order is the caller's), unprefixed; a void action passes nil and
// still gets its empty response element. The HTTP status (200) and headers
// are the caller's. It performs one Write.
func WriteResponse(w io.Writer, ns, action string, out []Arg) error {
	var b strings.Builder
	b.WriteString(envelopeStart)
	el := action + "Response"
	if ns != "" {
		el = "u:" + el
	}
	b.WriteString("<" + el)
	if ns != "" {
		b.WriteString(` xmlns:u="`)
		escape(&b, ns)
		b.WriteString(`"`)
	}
	b.WriteString(">")
	for _, a := range out {
		b.WriteString("<" + a.Name + ">")
		if a.CDATA {
			writeCDATA(&b, a.Value)
		} else {
			escape(&b, a.Value)
		}
		b.WriteString("</" + a.Name + ">")
	}
	b.WriteString("</" + el + ">")
	b.WriteString(envelopeEnd)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteFault writes the SOAP fault carrying UPnP error code (COMPAT R2):
// faultcode s:Client, faultstring UPnPError, and a detail/UPnPError in the
// control-1-0 namespace with an unprefixed errorCode holding the bare number
// (libtorrent and Apple scan for ">718</errorCode"). desc "" uses
// Description(code). The HTTP status (500) and headers are the caller's. It
// performs one Write.
func WriteFault(w io.Writer, code int, desc string) error {
	if desc == "" {
		desc = Description(code)
	}
	var b strings.Builder
	b.WriteString(envelopeStart)
	b.WriteString("<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>" +
		"<detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>")
	b.WriteString(UI4(max(code, 0)).String())
	b.WriteString("</errorCode><errorDescription>")
	escape(&b, desc)
	b.WriteString("</errorDescription></UPnPError></detail></s:Fault>")
	b.WriteString(envelopeEnd)
	_, err := io.WriteString(w, b.String())
	return err
}

// escape writes s XML-escaped, without the characters XML 1.0 cannot carry
// or that are controls (COMPAT R4: Go clients reject them, and a newline in
// a description has been used for lease-file injection — miniupnpd 2.3.11
// "filter out non printable characters"). Invalid UTF-8 becomes U+FFFD.
func escape(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&apos;")
		case printable(r):
			b.WriteRune(r)
		}
	}
}

// writeCDATA writes s as CDATA sections, dropping what escape drops and
// splitting "]]>" so that no section ends early.
func writeCDATA(b *strings.Builder, s string) {
	b.WriteString("<![CDATA[")
	for i, r := range s {
		if r != '\n' && r != '\t' && !printable(r) {
			continue
		}
		b.WriteRune(r)
		if r == ']' && strings.HasPrefix(s[i+1:], "]>") {
			// "]]>" becomes "]]" + "]]><![CDATA[" + ">".
			b.WriteString("]]><![CDATA[")
		}
	}
	b.WriteString("]]>")
}

// printable reports whether r may be echoed: no C0/C1 controls, no DEL, and
// only characters in XML 1.0's Char production. utf8.RuneError stands for
// invalid input and is written as U+FFFD.
func printable(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r < 0xa0:
		return false
	case r == utf8.RuneError:
		return true
	case r >= 0xd800 && r < 0xe000, r == 0xfffe, r == 0xffff, r > 0x10ffff:
		return false
	}
	return true
}
