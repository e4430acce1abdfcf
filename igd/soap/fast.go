package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// fastTokens reads the plain XML that nearly every control request is:
// ASCII, quoted attributes, the five predefined entities, matching end
// tags, an XML declaration at most. It yields the tokens encoding/xml's
// Decoder would, configured as decodeBody configures it, with element
// names translated the same way, in under half the time and allocations
// (BenchmarkDecodeBody). Anything else in the part of the body
// it has to read (a comment, CDATA, an unknown entity, a mismatched end
// tag, a byte above 0x7f, an HTML element the Decoder would close by
// itself) makes it give up with errFallback, and decodeBody starts
// over with the Decoder. FuzzReadAction checks that both give the same.
type fastTokens struct {
	b   []byte
	i   int
	txt []byte // CharData buffer, reused

	// open are the open elements; each holds the namespace bindings it
	// made, undone when it ends.
	open  []openElem
	ns    map[string]string
	close bool // the last start tag was empty (<a/>): its end is next
}

// openElem is an open element: its qualified name as written, its name
// split, and the bindings it made.
type openElem struct {
	qname, prefix []byte
	local         string
	scope         []nsBinding
}

// nsBinding is a prefix's binding before an element rebound it.
type nsBinding struct {
	prefix, old string
	had         bool
}

// errFallback says the body needs encoding/xml.
var errFallback = errors.New("soap: body needs the full XML decoder")

func newFastTokens(b []byte) *fastTokens {
	return &fastTokens{b: b, ns: map[string]string{}}
}

// next returns the next token, io.EOF at the end of a complete document,
// or errFallback.
func (f *fastTokens) next() (token, error) {
	if f.close {
		f.close = false
		return f.end(len(f.open) - 1), nil
	}
	if f.i >= len(f.b) {
		if len(f.open) > 0 {
			return token{}, errFallback // the Decoder's unexpected EOF
		}
		return token{}, io.EOF
	}
	if f.b[f.i] != '<' {
		return f.text()
	}
	if f.i+1 >= len(f.b) {
		return token{}, errFallback
	}
	switch c := f.b[f.i+1]; {
	case c == '/':
		return f.endTag()
	case c == '?':
		return f.declaration()
	case asciiNameStart(c):
		return f.startTag()
	}
	return token{}, errFallback // comments, CDATA, DOCTYPE, malformed markup
}

// text reads character data up to the next '<'.
func (f *fastTokens) text() (token, error) {
	end := bytes.IndexByte(f.b[f.i:], '<')
	if end < 0 {
		end = len(f.b)
	} else {
		end += f.i
	}
	raw := f.b[f.i:end]
	f.txt = f.txt[:0]
	for j := 0; j < len(raw); j++ {
		c := raw[j]
		switch {
		case c >= 0x80:
			return token{}, errFallback
		case c == '\r':
			f.txt = append(f.txt, '\n') // as the Decoder rewrites CR and CRLF
		case c == '\n' && j > 0 && raw[j-1] == '\r':
			// the LF of a CRLF, written as one '\n' already
		case c == '>' && j >= 2 && raw[j-1] == ']' && raw[j-2] == ']':
			return token{}, errFallback // the Decoder refuses "]]>" in text
		case c == '&':
			if r, n := entity(raw[j:]); n > 0 {
				f.txt = append(f.txt, r)
				j += n - 1
				continue
			}
			// Not strict, the Decoder keeps an '&' that starts no
			// entity, and the name bytes after it, as they are
			// (miniupnpc's unescaped descriptions, COMPAT P3).
			k := j + 1
			for k < len(raw) && asciiNameByte(raw[k]) {
				k++
			}
			switch {
			case k == len(raw) && end == len(f.b):
				return token{}, errFallback // the Decoder's unexpected EOF
			case k < len(raw) && (raw[k] == ';' || raw[k] == '#' || raw[k] >= 0x80):
				return token{}, errFallback // another entity, or a longer name
			}
			f.txt = append(f.txt, raw[j:k]...)
			j = k - 1
		default:
			f.txt = append(f.txt, c)
		}
	}
	f.i = end
	return token{kind: tokText, text: f.txt}, nil
}

// entity decodes one of the five predefined entities at the start of b
// and returns it and its length, or 0 for anything else.
func entity(b []byte) (byte, int) {
	for _, e := range [...]struct {
		s string
		c byte
	}{{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}} {
		if bytes.HasPrefix(b, []byte(e.s)) {
			return e.c, len(e.s)
		}
	}
	return 0, 0
}

// declaration reads an XML declaration at the very start, whose version,
// if given, is 1.0. Any other processing instruction falls back.
func (f *fastTokens) declaration() (token, error) {
	if f.i != 0 || !bytes.HasPrefix(f.b, []byte("<?xml ")) {
		return token{}, errFallback
	}
	end := bytes.Index(f.b, []byte("?>"))
	if end < 0 {
		return token{}, errFallback
	}
	attrs, ok := parseAttrs(f.b[len("<?xml "):end])
	if !ok {
		return token{}, errFallback
	}
	// The Decoder finds the version as the first "version=" followed
	// by a quote anywhere in the declaration.
	for _, a := range attrs {
		name, value := string(a.name), string(a.value)
		if name == "version" && value != "1.0" || name != "version" && strings.Contains(name, "version") ||
			strings.ContainsAny(value, "='\"") {
			return token{}, errFallback
		}
	}
	f.i = end + 2
	return token{}, nil
}

// startTag reads <name attr="v" ...> or <name .../>.
func (f *fastTokens) startTag() (token, error) {
	j := f.i + 1
	for j < len(f.b) && asciiNameByte(f.b[j]) {
		j++
	}
	qname := f.b[f.i+1 : j]
	gt := bytes.IndexByte(f.b[j:], '>')
	if gt < 0 {
		return token{}, errFallback
	}
	gt += j
	inner := f.b[j:gt]
	empty := len(inner) > 0 && inner[len(inner)-1] == '/'
	if empty {
		inner = inner[:len(inner)-1]
	}
	if len(inner) > 0 && !isSpace(inner[0]) {
		return token{}, errFallback
	}
	attrs, ok := parseAttrs(inner)
	if !ok {
		return token{}, errFallback
	}
	prefix, lb, ok := splitName(qname)
	if !ok || autoCloses(lb) {
		return token{}, errFallback
	}
	local := string(lb)
	var scope []nsBinding
	for _, a := range attrs {
		if !bytes.HasPrefix(a.name, []byte("xmlns")) {
			if bytes.Count(a.name, []byte(":")) > 1 {
				return token{}, errFallback // the Decoder refuses it
			}
			continue
		}
		ap, al, ok := splitName(a.name)
		if !ok {
			return token{}, errFallback
		}
		switch {
		case string(ap) == "xmlns":
			scope = f.bind(scope, string(al), string(a.value))
		case len(ap) == 0 && string(al) == "xmlns":
			scope = f.bind(scope, "", string(a.value))
		}
	}
	f.open = append(f.open, openElem{qname: qname, prefix: prefix, local: local, scope: scope})
	f.i = gt + 1
	f.close = empty
	return token{kind: tokStart, name: xml.Name{Space: f.translate(prefix, local), Local: local}}, nil
}

func (f *fastTokens) bind(scope []nsBinding, prefix, uri string) []nsBinding {
	old, had := f.ns[prefix]
	f.ns[prefix] = uri
	return append(scope, nsBinding{prefix, old, had})
}

// translate resolves an element's prefix as encoding/xml does.
func (f *fastTokens) translate(prefix []byte, local string) string {
	switch {
	case string(prefix) == "xmlns":
		return "xmlns"
	case string(prefix) == "xml":
		return "http://www.w3.org/XML/1998/namespace"
	case len(prefix) == 0 && local == "xmlns":
		return ""
	}
	if v, ok := f.ns[string(prefix)]; ok {
		return v
	}
	return string(prefix)
}

// endTag reads </name> for the innermost open element.
func (f *fastTokens) endTag() (token, error) {
	j := f.i + 2
	for j < len(f.b) && asciiNameByte(f.b[j]) {
		j++
	}
	qname := f.b[f.i+2 : j]
	for j < len(f.b) && isSpace(f.b[j]) {
		j++
	}
	k := len(f.open) - 1
	if j >= len(f.b) || f.b[j] != '>' || k < 0 || !bytes.Equal(qname, f.open[k].qname) {
		return token{}, errFallback
	}
	f.i = j + 1
	return f.end(k), nil
}

// end closes open element k, the innermost.
func (f *fastTokens) end(k int) token {
	e := f.open[k]
	t := token{kind: tokEnd, name: xml.Name{Space: f.translate(e.prefix, e.local), Local: e.local}}
	scope := e.scope
	for i := len(scope) - 1; i >= 0; i-- {
		if b := scope[i]; b.had {
			f.ns[b.prefix] = b.old
		} else {
			delete(f.ns, b.prefix)
		}
	}
	f.open = f.open[:k]
	return t
}

type fastAttr struct{ name, value []byte }

// parseAttrs reads name="value" pairs (single or double quotes, blanks
// around '=') separated by blanks; values hold no '<', '&' or CR.
func parseAttrs(b []byte) ([]fastAttr, bool) {
	var out []fastAttr
	i := 0
	for {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i == len(b) {
			return out, true
		}
		j := i
		for j < len(b) && asciiNameByte(b[j]) {
			j++
		}
		if j == i || !asciiNameStart(b[i]) {
			return nil, false
		}
		name := b[i:j]
		for j < len(b) && isSpace(b[j]) {
			j++
		}
		if j == len(b) || b[j] != '=' {
			return nil, false
		}
		j++
		for j < len(b) && isSpace(b[j]) {
			j++
		}
		if j == len(b) || b[j] != '"' && b[j] != '\'' {
			return nil, false
		}
		q := b[j]
		end := bytes.IndexByte(b[j+1:], q)
		if end < 0 {
			return nil, false
		}
		v := b[j+1 : j+1+end]
		if bytes.ContainsAny(v, "<&\r") || !ascii(v) {
			return nil, false
		}
		out = append(out, fastAttr{name, v})
		i = j + 1 + end + 1
		if i < len(b) && !isSpace(b[i]) {
			return nil, false
		}
	}
}

// splitName splits a qualified name as encoding/xml does; ok is false
// for names it refuses (more than one colon) or keeps whole (a colon at
// either end), which the fast path leaves to it.
func splitName(q []byte) (prefix, local []byte, ok bool) {
	switch n := bytes.Count(q, []byte(":")); {
	case n == 0:
		return nil, q, len(q) > 0
	case n > 1:
		return nil, nil, false
	}
	p, l, _ := bytes.Cut(q, []byte(":"))
	if len(p) == 0 || len(l) == 0 {
		return nil, nil, false
	}
	return p, l, true
}

// autoCloses reports whether the Decoder, with AutoClose set to
// xml.HTMLAutoClose, may invent an end for an element named local.
func autoCloses(local []byte) bool {
	for _, s := range xml.HTMLAutoClose {
		if bytes.EqualFold([]byte(s), local) {
			return true
		}
	}
	return false
}

func asciiNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
}

func asciiNameByte(c byte) bool {
	return asciiNameStart(c) || c >= '0' && c <= '9' || c == '.' || c == '-'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
