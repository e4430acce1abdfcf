package soap

import "bytes"

// maxLeafText bounds the text of an element escapeLeafText treats as a
// leaf. Argument values are short; the bound keeps the scan linear in the
// body size even for deeply nested input.
const maxLeafText = 2048

// escapeLeafText rewrites bare '<' inside leaf elements as "&lt;" so that
// encoding/xml can read what miniupnpc sends: it copies descriptions into the
// body unescaped (COMPAT P3), so "<NewPortMappingDescription>a<b</New..." is
// common enough. A leaf is a start tag whose next "</" closes the same name;
// everything between its '>' and that "</" is text. Other bytes are copied
// unchanged; b is returned as is when nothing needs escaping.
//
// The scan is linear: leaf texts are bounded by maxLeafText, the position of the next "</" is cached, and the start
// positions only move forward.
func escapeLeafText(b []byte) []byte {
	var (
		out       []byte // nil until the first rewrite
		copied    int    // b[:copied] is already in out
		nextClose = -1   // cached index of the next "</" at or after a position
	)
	findClose := func(from int) int {
		if nextClose >= from {
			return nextClose
		}
		c := bytes.Index(b[from:], []byte("</"))
		if c < 0 {
			nextClose = len(b) // none left: cache the miss
			return -1
		}
		nextClose = from + c
		return nextClose
	}
	i := 0
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			break
		}
		j += i
		if j+1 >= len(b) || !isNameByte(b[j+1], true) {
			i = j + 1
			continue
		}
		k := j + 1
		for k < len(b) && isNameByte(b[k], false) {
			k++
		}
		name := b[j+1 : k]
		gt := bytes.IndexByte(b[k:], '>')
		if gt < 0 {
			break
		}
		gt += k
		if bytes.IndexByte(b[k:gt], '<') >= 0 || b[gt-1] == '/' {
			i = k // not a complete start tag, or self-closing
			continue
		}
		c := findClose(gt + 1)
		if c < 0 || c >= len(b) {
			break
		}
		if c-gt > maxLeafText || !closes(b[c+2:], name) || opens(b[gt+1:c], name) {
			i = gt + 1
			continue
		}
		if text := b[gt+1 : c]; bytes.IndexByte(text, '<') >= 0 {
			out = append(out, b[copied:gt+1]...)
			out = escapeText(out, text)
			copied = c
		}
		i = c + 2
	}
	if out == nil {
		return b
	}
	return append(out, b[copied:]...)
}

// escapeText appends text with each '<' that cannot start markup written as
// "&lt;". Markup here is a comment, a CDATA section (both copied whole), a
// "<?" or "<!" construct, or a self-closing tag; any other start tag has no
// end tag before the leaf's, so it is text ("<b>bold" in a description).
func escapeText(out, text []byte) []byte {
	for len(text) > 0 {
		j := bytes.IndexByte(text, '<')
		if j < 0 {
			return append(out, text...)
		}
		out = append(out, text[:j]...)
		text = text[j:]
		n := markupLen(text)
		if n == 0 {
			out = append(out, "&lt;"...)
			text = text[1:]
			continue
		}
		out = append(out, text[:n]...)
		text = text[n:]
	}
	return out
}

// markupLen returns the length of the markup at the start of t (which
// begins with '<'), or 0 when the '<' is text.
func markupLen(t []byte) int {
	for _, m := range [][2]string{{"<![CDATA[", "]]>"}, {"<!--", "-->"}} {
		if bytes.HasPrefix(t, []byte(m[0])) {
			if e := bytes.Index(t[len(m[0]):], []byte(m[1])); e >= 0 {
				return len(m[0]) + e + len(m[1])
			}
			return len(t) // unterminated: leave the rest to the decoder
		}
	}
	if len(t) > 1 && (t[1] == '!' || t[1] == '?') {
		return 1
	}
	if len(t) < 2 || !isNameByte(t[1], true) {
		return 0
	}
	for i := 2; i < len(t); i++ {
		switch t[i] {
		case '<':
			return 0
		case '>':
			if t[i-1] == '/' {
				return i + 1
			}
			return 0
		}
	}
	return 0
}

// opens reports whether text holds a start tag of name, which makes the
// "</name" after it that tag's end, not the end of the enclosing element.
func opens(text, name []byte) bool {
	for {
		i := bytes.Index(text, name)
		if i < 0 {
			return false
		}
		if i > 0 && text[i-1] == '<' && (i+len(name) == len(text) || !isNameByte(text[i+len(name)], false)) {
			return true
		}
		text = text[i+len(name):]
	}
}

// closes reports whether rest (what follows "</") is name, optional
// whitespace and '>'.
func closes(rest, name []byte) bool {
	if !bytes.HasPrefix(rest, name) {
		return false
	}
	rest = bytes.TrimLeft(rest[len(name):], " \t\r\n")
	return len(rest) > 0 && rest[0] == '>'
}

// isNameByte reports whether c may appear in an element name (ASCII names
// with prefixes; non-ASCII bytes count as name bytes, as XML allows).
func isNameByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':', c >= 0x80:
		return true
	case !first && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		return true
	}
	return false
}
