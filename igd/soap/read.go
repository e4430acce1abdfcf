// Package soap decodes UPnP control requests and encodes their responses and
// faults: the SOAP 1.1 subset of UPnP Device Architecture 1.0 §3.2 used by the
// Internet Gateway Device (WANIPConnection:1 and :2, WANCommonInterfaceConfig:1,
// Layer3Forwarding:1).
//
// Decoding is tolerant because real clients are sloppy (COMPAT.md P1–P4): the
// SOAPAction header may be quoted in any way or missing, any namespace prefix
// may be used, and miniupnpc sends unescaped '&' and '<' in descriptions.
// Encoding is strict and byte-for-byte what miniupnpd sends (COMPAT.md R1, R2),
// because some clients scan bytes instead of parsing XML.
package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxBodySize is the largest request body ReadAction accepts. A real request is
// under 2 KiB (1.3 KiB for an AddPortMapping whose 256-character
// description is all escapes); the cap bounds memory per connection
// (COMPAT P3: about 16 KiB).
const MaxBodySize = 16 << 10

// maxDepth bounds element nesting; a request needs 4 (Envelope, Body, action,
// argument). Deeper documents are rejected before they cost anything.
const maxDepth = 16

// maxArgs bounds the number of distinct arguments kept from one action; the
// largest IGD action (AddPortMapping) has 8.
const maxArgs = 64

// ErrTooLarge is returned by ReadAction for a body over MaxBodySize. The HTTP
// layer answers it with 413, not with a SOAP fault.
var ErrTooLarge = errors.New("soap: request body too large")

// errTooDeep rejects a body nested beyond maxDepth, whatever else it holds.
var errTooDeep = errors.New("elements nested too deeply")

// Action is a decoded control request.
type Action struct {
	// Namespace is the service type URN including its version, as the client
	// sent it (e.g. "urn:schemas-upnp-org:service:WANIPConnection:1"); the
	// response echoes it (COMPAT P7). It is empty when neither the SOAPAction
	// header nor the body names one; the caller then uses the service type
	// of the control URL.
	Namespace string
	// Name is the action's local name, e.g. "AddPortMapping"; never empty.
	Name string
	// Args maps argument local names to their whitespace-trimmed values
	// (COMPAT P4). When a name repeats, the first value wins.
	Args map[string]string
	// ArgOrder lists the argument names in the order received, without
	// repeats.
	ArgOrder []string
}

// ReadAction decodes a control request body read from r. soapAction is the
// SOAPAction header's value ("" when absent).
//
// Errors: ErrTooLarge, or an error wrapping a *Fault with code InvalidAction
// when no action can be found in the body or the header.
func ReadAction(r io.Reader, soapAction string) (Action, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxBodySize+1))
	if err != nil {
		return Action{}, fmt.Errorf("soap: read body: %w", err)
	}
	if len(body) > MaxBodySize {
		return Action{}, ErrTooLarge
	}
	hns, hname, hok := parseSOAPAction(soapAction)
	a, found, derr := decodeBody(body)
	switch {
	case found && hok && hname == a.Name:
		// The header carries the URN the client meant; Apple sends ":1" in
		// both, miniupnpd echoes the header's (COMPAT P7).
		a.Namespace = hns
	case found && a.Namespace == "" && hok:
		a.Namespace = hns
	case !found && hok && derr == nil:
		// A void action with a body that names nothing: trust the header.
		a = Action{Namespace: hns, Name: hname, Args: map[string]string{}}
	case !found:
		if derr == nil {
			derr = errors.New("no action element")
		}
		return Action{}, fmt.Errorf("soap: %w: %w", derr, NewFault(InvalidAction))
	}
	if !validNamespace(a.Namespace) {
		a.Namespace = ""
	}
	return a, nil
}

// parseSOAPAction splits a SOAPAction header into service type and action
// name. It accepts double, single or no quotes and surrounding whitespace
// (COMPAT P1); any version suffix on the service type is kept as sent.
func parseSOAPAction(h string) (ns, name string, ok bool) {
	h = strings.TrimSpace(h)
	for len(h) >= 1 && (h[0] == '"' || h[0] == '\'') {
		h = strings.TrimSpace(h[1:])
	}
	for len(h) >= 1 && (h[len(h)-1] == '"' || h[len(h)-1] == '\'') {
		h = strings.TrimSpace(h[:len(h)-1])
	}
	i := strings.LastIndexByte(h, '#')
	if i < 0 {
		return "", "", false
	}
	ns, name = strings.TrimSpace(h[:i]), strings.TrimSpace(h[i+1:])
	if !validName(name) || !validNamespace(ns) {
		return "", "", false
	}
	return ns, name, true
}

// decodeBody finds the first child element of a Body element (any prefix)
// and collects its children as arguments. found reports whether an action
// element was seen; err says why decoding stopped early, if it did.
func decodeBody(body []byte) (a Action, found bool, err error) {
	body = prepare(body)
	a, found, err = decodeTokens(newFastTokens(body).next)
	if err != errFallback {
		return a, found, err
	}
	return decodeTokens(slowTokens(body))
}

// prepare is what both tokenizers read of a body: without a UTF-8 BOM and
// the control characters XML forbids, bare '<' in leaf text escaped.
func prepare(body []byte) []byte {
	return escapeLeafText(dropControls(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))))
}

// slowTokens returns the tokens of encoding/xml's Decoder, as lenient as
// it can be: miniupnpc does not escape values (COMPAT P3), and
// escapeLeafText has fixed the bare '<' among them.
func slowTokens(body []byte) func() (token, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	return func() (token, error) {
		t, err := d.Token()
		switch t := t.(type) {
		case xml.StartElement:
			return token{kind: tokStart, name: t.Name}, err
		case xml.EndElement:
			return token{kind: tokEnd, name: t.Name}, err
		case xml.CharData:
			return token{kind: tokText, text: t}, err
		}
		return token{}, err
	}
}

// token is what decodeTokens needs of an XML token, in a form that costs
// no allocation to pass.
type token struct {
	kind tokKind
	name xml.Name // of a start or end element, namespace translated
	text []byte   // character data, entities decoded
}

type tokKind uint8

const (
	tokOther tokKind = iota // anything decodeTokens ignores, or none
	tokStart
	tokEnd
	tokText
)

// decodeTokens is decodeBody on the tokens next returns. It stops at the
// end of the action element, and returns errFallback as soon as next
// does.
func decodeTokens(next func() (token, error)) (a Action, found bool, err error) {
	var (
		depth      int
		bodyDepth  = -1 // depth of the Body element's children
		argName    string
		argText    strings.Builder
		argDepth   int
		actionDone bool
	)
	for {
		tok, terr := next()
		if terr == errFallback {
			return Action{}, false, errFallback
		}
		if terr != nil {
			if terr != io.EOF && !found {
				err = terr
			}
			break
		}
		switch t := tok; t.kind {
		case tokStart:
			depth++
			if depth > maxDepth {
				return a, false, errTooDeep
			}
			local := t.name.Local
			switch {
			case bodyDepth < 0 && local == "Body":
				bodyDepth = depth + 1
			case depth == bodyDepth && !found && !actionDone:
				if !validName(local) {
					return a, false, fmt.Errorf("invalid action name %q", local)
				}
				found = true
				a = Action{Name: local, Namespace: elementNamespace(t.name), Args: map[string]string{}}
			case found && !actionDone && depth == bodyDepth+1:
				argName, argDepth = local, depth
				argText.Reset()
			}
		case tokEnd:
			if found && !actionDone {
				if argName != "" && depth == argDepth {
					addArg(&a, argName, argText.String())
					argName = ""
				}
				if depth == bodyDepth {
					actionDone = true
				}
			}
			depth--
		case tokText:
			if argName != "" && depth == argDepth && argText.Len() < MaxBodySize {
				argText.Write(t.text)
			}
		}
		if actionDone {
			break
		}
	}
	if found && argName != "" {
		// Truncated body (AutoClose may not reach the end): keep what came.
		addArg(&a, argName, argText.String())
	}
	return a, found, err
}

// dropControls removes the C0 control characters XML 1.0 forbids (all but
// tab, LF and CR). encoding/xml stops at the first one even when not
// strict, so a description with an escape sequence lost its text and every
// later argument (NewLeaseDuration then read as 0). Descriptions are
// stripped of control characters anyway (COMPAT R4). A byte below 0x20
// never occurs inside a UTF-8 sequence, so this works on bytes.
func dropControls(b []byte) []byte {
	i := 0
	for i < len(b) && !isBadControl(b[i]) {
		i++
	}
	if i == len(b) {
		return b
	}
	out := append(make([]byte, 0, len(b)), b[:i]...)
	for _, c := range b[i:] {
		if !isBadControl(c) {
			out = append(out, c)
		}
	}
	return out
}

func isBadControl(c byte) bool { return c < 0x20 && c != '\t' && c != '\n' && c != '\r' }

// addArg stores one argument if its name is usable and new.
func addArg(a *Action, name, value string) {
	if !validName(name) || len(a.ArgOrder) >= maxArgs {
		return
	}
	if _, dup := a.Args[name]; dup {
		return
	}
	a.Args[name] = strings.TrimSpace(value)
	a.ArgOrder = append(a.ArgOrder, name)
}

// elementNamespace returns the action element's namespace as resolved by
// the decoder. An undeclared prefix comes back as the bare prefix ("u"),
// which is no service type; only a URI-looking value (with a colon) counts.
func elementNamespace(n xml.Name) string {
	if strings.Contains(n.Space, ":") {
		return n.Space
	}
	return ""
}

// validName reports whether s is an ASCII XML name without a colon, the
// only shape UPnP action and argument names take. It keeps every name that
// reaches WriteResponse safe to emit.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// validNamespace reports whether s can be echoed in an xmlns:u attribute: a
// printable ASCII URI of modest length with nothing that needs escaping.
func validNamespace(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
