package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml v1.6 records key positions but keeps them unexported
// (MetaData.keyInfo); only syntax errors carry a Position. So that every
// validation error can name its line, lineIndex scans the source once
// more with a small tokenizer that understands just enough TOML: table
// headers [a.b], array-of-tables headers [[a]] (counting their index),
// dotted and quoted keys, and the values it must step over without
// mistaking their contents for keys: basic, literal and multi-line
// strings, arrays (recording the line of each element) and inline tables
// (recording the line of each key). It runs only on input that
// toml.Decode has accepted, but it never panics or loops on any input.

// path is a position in the TOML document as Error.Field names it: keys
// and "[n]" array indexes, e.g. {"forward", "[2]", "internal"} for
// "forward[2].internal".
type path []string

// key returns p extended by the TOML key k (quoted when it is not a bare
// key). p itself is never modified.
func (p path) key(k string) path {
	return append(p[:len(p):len(p)], quoteKey(k))
}

// index returns p extended by the array index i.
func (p path) index(i int) path {
	return append(p[:len(p):len(p)], "["+strconv.Itoa(i)+"]")
}

// String joins the components: "forward[2].internal".
func (p path) String() string {
	var b strings.Builder
	for i, c := range p {
		if i > 0 && !strings.HasPrefix(c, "[") {
			b.WriteByte('.')
		}
		b.WriteString(c)
	}
	return b.String()
}

// quoteKey returns k as written in a Field: bare keys as they are, any
// other key as a quoted string.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBare(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// lineIndex maps a path's String to the 1-based line where it first
// appears in the source.
type lineIndex map[string]int

// line returns the line of p, or of its nearest ancestor that the index
// knows (a missing key is reported at its table's header), or 0.
func (ix lineIndex) line(p path) int {
	for n := len(p); n > 0; n-- {
		if l, ok := ix[p[:n].String()]; ok {
			return l
		}
	}
	return 0
}

// lineOf returns the line of a field as Error.Field names it, or of its
// nearest ancestor that the index knows, or 0.
func (ix lineIndex) lineOf(field string) int {
	for field != "" {
		if l, ok := ix[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

// maxDepth bounds how deep keys, tables and arrays may nest: berth's own
// settings go four levels deep. TOML sets no bound, and both the TOML
// decoder's work and this index's grow faster than the depth: 5,000
// nested brackets took minutes (found by FuzzConfig).
const maxDepth = 32

// indexLines scans src and returns the line of every key, table header
// and array element it defines, and the line where something nests
// deeper than maxDepth (0 if nothing does; the scan stops there).
func indexLines(src string) (lineIndex, int) {
	s := &scanner{src: src, line: 1, ix: lineIndex{}, aot: map[string]int{}}
	s.document()
	return s.ix, s.deep
}

type scanner struct {
	src  string
	pos  int
	line int
	ix   lineIndex
	// aot counts the [[headers]] seen for each array of tables, by the
	// path's String.
	aot map[string]int
	// deep is the line where a path grew beyond maxDepth, or 0.
	deep int
}

// tooDeep notes that a path grew beyond maxDepth here and ends the scan.
func (s *scanner) tooDeep() {
	if s.deep == 0 {
		s.deep = s.line
	}
	s.pos = len(s.src)
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) hasPrefix(p string) bool { return strings.HasPrefix(s.src[s.pos:], p) }

// advance steps over n bytes, counting newlines.
func (s *scanner) advance(n int) {
	end := min(s.pos+n, len(s.src))
	s.line += strings.Count(s.src[s.pos:end], "\n")
	s.pos = end
}

// record notes the line of p and of each of its ancestors, keeping the
// first line seen for each. Once a path is recorded so are all its
// ancestors, so the walk up stops at the first one known: an array
// element costs one name, not one per level.
func (s *scanner) record(p path) {
	if len(p) > maxDepth {
		s.tooDeep()
		return
	}
	for n := len(p); n >= 1; n-- {
		k := p[:n].String()
		if _, ok := s.ix[k]; ok {
			return
		}
		s.ix[k] = s.line
	}
}

// skipSpace skips blanks and comments; with newlines, also line breaks.
func (s *scanner) skipSpace(newlines bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.pos++
		case c == '\n' && newlines:
			s.advance(1)
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// skipLine steps to the start of the next line.
func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
	s.advance(1)
}

// document scans top-level statements: headers and key/value pairs.
func (s *scanner) document() {
	var table path
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			table = s.header()
		} else {
			keys := s.keys()
			s.skipSpace(false)
			if len(keys) > 0 && s.peek() == '=' {
				s.pos++
				p := append(table[:len(table):len(table)], quoted(keys)...)
				s.record(p)
				s.value(p)
			}
		}
		s.skipSpace(false)
		if s.pos == start || (!s.eof() && s.peek() != '\n') {
			// Not something this tokenizer understands: resynchronise at
			// the next line rather than guess.
			s.skipLine()
		}
	}
}

// header scans [a.b] or [[a.b]] and returns the table's resolved path.
func (s *scanner) header() path {
	array := s.hasPrefix("[[")
	if array {
		s.pos += 2
	} else {
		s.pos++
	}
	keys := s.keys()
	s.skipSpace(false)
	if array && s.hasPrefix("]]") {
		s.pos += 2
	} else if !array && s.peek() == ']' {
		s.pos++
	}
	// Resolve each prefix that names an array of tables to its last
	// element, as TOML does: [forward.x] after [[forward]] extends the
	// last forward.
	var p path
	for i, k := range keys {
		p = p.key(k)
		n, isArray := s.aot[p.String()]
		if i == len(keys)-1 && array {
			s.aot[p.String()] = n + 1
			s.record(p)
			p = p.index(n)
		} else if isArray {
			p = p.index(n - 1)
		}
	}
	s.record(p)
	return p
}

// quoted renders keys as path components.
func quoted(keys []string) path {
	var p path
	for _, k := range keys {
		p = p.key(k)
	}
	return p
}

// keys scans a dotted key: bare or quoted parts separated by dots.
func (s *scanner) keys() []string {
	var keys []string
	for {
		s.skipSpace(false)
		var k string
		switch c := s.peek(); {
		case c == '"':
			k = s.basicString()
		case c == '\'':
			k = s.literalString()
		case isBare(c):
			start := s.pos
			for !s.eof() && isBare(s.peek()) {
				s.pos++
			}
			k = s.src[start:s.pos]
		default:
			return keys
		}
		keys = append(keys, k)
		if len(keys) > maxDepth {
			s.tooDeep()
			return keys
		}
		s.skipSpace(false)
		if s.peek() != '.' {
			return keys
		}
		s.pos++
	}
}

// value scans one value; p is its path, used for array elements and
// inline-table keys.
func (s *scanner) value(p path) {
	s.skipSpace(false)
	switch {
	case s.hasPrefix(`"""`):
		s.multiline(`"""`, true)
	case s.hasPrefix(`'''`):
		s.multiline(`'''`, false)
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.literalString()
	case s.peek() == '[':
		s.array(p)
	case s.peek() == '{':
		s.inlineTable(p)
	default:
		// Numbers, booleans, date-times (which may hold one space).
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.peek())) {
			s.pos++
		}
	}
}

func (s *scanner) array(p path) {
	s.pos++ // [
	for i := 0; ; i++ {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.peek() == ']' {
			s.pos++
			return
		}
		start := s.pos
		e := p.index(i)
		s.record(e)
		s.value(e)
		s.skipSpace(true)
		if s.peek() == ',' {
			s.pos++
		} else if s.pos == start {
			s.pos++ // junk; make progress
		}
	}
}

func (s *scanner) inlineTable(p path) {
	s.pos++ // {
	for {
		// TOML 1.1, which BurntSushi/toml v1.6 accepts, allows newlines
		// and comments inside inline tables.
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.peek() == '}' {
			s.pos++
			return
		}
		start := s.pos
		keys := s.keys()
		s.skipSpace(false)
		if len(keys) > 0 && s.peek() == '=' {
			s.pos++
			k := append(p[:len(p):len(p)], quoted(keys)...)
			s.record(k)
			s.value(k)
		}
		s.skipSpace(true)
		if s.peek() == ',' {
			s.pos++
		} else if s.pos == start {
			s.pos++
		}
	}
}

// basicString scans "..." and returns its contents with the common
// escapes decoded (enough for keys).
func (s *scanner) basicString() string {
	s.pos++ // "
	var b strings.Builder
	for !s.eof() {
		c := s.peek()
		switch {
		case c == '"':
			s.pos++
			return b.String()
		case c == '\n':
			return b.String()
		case c == '\\' && s.pos+1 < len(s.src):
			if str, err := strconv.Unquote(`"` + escapeAt(s.src[s.pos:]) + `"`); err == nil {
				b.WriteString(str)
			}
			s.pos += len(escapeAt(s.src[s.pos:]))
		default:
			b.WriteByte(c)
			s.pos++
		}
	}
	return b.String()
}

// escapeAt returns the escape sequence at the start of t (t[0] == '\\').
func escapeAt(t string) string {
	n := 2
	switch t[1] {
	case 'u':
		n = 6
	case 'U':
		n = 10
	}
	return t[:min(n, len(t))]
}

func (s *scanner) literalString() string {
	s.pos++ // '
	start := s.pos
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.pos++
	}
	k := s.src[start:s.pos]
	if s.peek() == '\'' {
		s.pos++
	}
	return k
}

// multiline scans a multi-line string, delimited by three double or three
// single quotes, including up to two quotes that may end its content just
// before the closing delimiter.
func (s *scanner) multiline(delim string, escapes bool) {
	s.advance(3)
	for !s.eof() {
		if escapes && s.peek() == '\\' {
			s.advance(2)
			continue
		}
		if s.hasPrefix(delim) {
			s.advance(3)
			for i := 0; i < 2 && s.peek() == delim[0]; i++ {
				s.pos++
			}
			return
		}
		s.advance(1)
	}
}
