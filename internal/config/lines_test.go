package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestIndexLines(t *testing.T) {
	src := `# comment [not] = "a header"
a = 1
b.c = "x" # trailing [x]
"quoted.key" = 2
'lit' = 3
ml = """
d = 4
[e]
"""
ml2 = '''
f = 5'''
arr = [
  "one",   # comment, with comma
  [2, 3],
  { g = 6 },
]
dt = 1979-05-27 07:32:00
[tbl]
h = 7
[ tbl . sub ]
i = {
  j = 8,
  k = [9,
    10],
}
[[aot]]
l = 11
[aot.inner]
m = 12
[[aot]]
l = 13
[[aot.nested]]
n = 14
[[aot.nested]]
n = 15
esc = "a\"b\\"
o = 16
`
	want := map[string]int{
		"a":                    2,
		"b":                    3,
		"b.c":                  3,
		`"quoted.key"`:         4,
		"lit":                  5,
		"ml":                   6,
		"ml2":                  10,
		"arr":                  12,
		"arr[0]":               13,
		"arr[1]":               14,
		"arr[1][0]":            14,
		"arr[1][1]":            14,
		"arr[2]":               15,
		"arr[2].g":             15,
		"dt":                   17,
		"tbl":                  18,
		"tbl.h":                19,
		"tbl.sub":              20,
		"tbl.sub.i":            21,
		"tbl.sub.i.j":          22,
		"tbl.sub.i.k":          23,
		"tbl.sub.i.k[0]":       23,
		"tbl.sub.i.k[1]":       24,
		"aot":                  26,
		"aot[0]":               26,
		"aot[0].l":             27,
		"aot[0].inner":         28,
		"aot[0].inner.m":       29,
		"aot[1]":               30,
		"aot[1].l":             31,
		"aot[1].nested":        32,
		"aot[1].nested[0]":     32,
		"aot[1].nested[0].n":   33,
		"aot[1].nested[1]":     34,
		"aot[1].nested[1].n":   35,
		"aot[1].nested[1].esc": 36,
		"aot[1].nested[1].o":   37,
	}
	var v map[string]any
	if _, err := toml.Decode(src, &v); err != nil {
		t.Fatalf("test input is not TOML: %v", err)
	}
	ix, deep := indexLines(src)
	if deep != 0 {
		t.Errorf("nesting too deep at line %d", deep)
	}
	for k, l := range want {
		if ix[k] != l {
			t.Errorf("%s: got line %d, want %d", k, ix[k], l)
		}
	}
	for _, k := range []string{"d", "e", "f", "tbl.j", "not"} {
		if l, ok := ix[k]; ok {
			t.Errorf("%s: indexed at line %d, but it is inside a string or comment", k, l)
		}
	}
	if len(ix) != len(want) {
		t.Errorf("got %d entries, want %d: %v", len(ix), len(want), ix)
	}
}

func TestLineFallsBackToAncestor(t *testing.T) {
	ix, _ := indexLines("\n[[forward]]\nname = \"a\"\n")
	tests := []struct {
		p    path
		want int
	}{
		{path{}.key("forward").index(0).key("name"), 3},
		{path{}.key("forward").index(0).key("proto"), 2},
		{path{}.key("forward").index(5), 2},
		{path{}.key("other"), 0},
	}
	for _, tt := range tests {
		if got := ix.line(tt.p); got != tt.want {
			t.Errorf("%s: got line %d, want %d", tt.p, got, tt.want)
		}
	}
}

func TestPathString(t *testing.T) {
	tests := []struct {
		p    path
		want string
	}{
		{path{}.key("policy").key("rules").index(1), "policy.rules[1]"},
		{path{}.key("forward").index(2).key("internal"), "forward[2].internal"},
		{path{}.key("a.b").key("").key("c d"), `"a.b"."".` + `"c d"`},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestIndexLinesJunk: the tokenizer never hangs or panics, even on text
// TOML would refuse.
func TestIndexLinesJunk(t *testing.T) {
	for _, s := range []string{
		"[", "[[", "[[a]", "a = [", "a = {", `a = "`, "a = '''", `a = """\`, "=", "= = =", "a.", "\"\\", "[a.\n",
		"a = [1,,]", "a = {b}", "]]]", "a = \"\\u12", "x = [[[[[[",
	} {
		indexLines(s)
	}
}

// Deep nesting is refused before the TOML decoder sees it, at the line
// where it passes maxDepth; up to maxDepth is left to the decoder. 5,000
// nested brackets took Parse minutes before (FuzzConfig found it): the
// index named every ancestor of every element, and the decoder's work
// grows faster than the depth too.
func TestDeepNestingRefused(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		line      int // 0: not refused for depth; -1: refused as a syntax error
	}{
		{"nested arrays", "wan = \"eth0\"\na = " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000), 2},
		{"nested inline tables", "a = " + strings.Repeat("{b=", 3000) + "1" + strings.Repeat("}", 3000), 1},
		{"arrays over lines", "a = [\n" + strings.Repeat("[\n", 40) + strings.Repeat("]", 41), 33},
		{"a long dotted key", strings.Repeat("k.", 3000) + "z = 1", 1},
		{"a long table header", "\n[" + strings.Repeat("k.", 3000) + "z]", 2},
		{"just deep enough", "a = " + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1), 0},
		// The TOML decoder skips a byte-order mark; the index must too.
		{"behind a UTF-8 BOM", "\xef\xbb\xbfx = " + strings.Repeat("{a=", 3000) + "1" + strings.Repeat("}", 3000), 1},
		{"behind a UTF-16 BOM", "\xff\xfex = " + strings.Repeat("[", 3000) + strings.Repeat("]", 3000), 1},
		// Two marks: the decoder skips one and refuses the other at once.
		{"behind two BOMs", "\xef\xbb\xbf\xef\xbb\xbfx = " + strings.Repeat("{a=", 6000) + "1" + strings.Repeat("}", 6000), -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.src))
			var e *Error
			deep := err != nil && strings.Contains(err.Error(), "nested deeper than 32 levels")
			if tt.line == -1 {
				if err == nil || !strings.Contains(err.Error(), "toml syntax") {
					t.Fatalf("got %v, want a syntax error", err)
				}
				return
			}
			if tt.line == 0 {
				if deep {
					t.Fatalf("refused for depth: %v", err)
				}
				return
			}
			if !deep || !errors.As(err, &e) || e.Line != tt.line {
				t.Fatalf("got %v, want a depth error at line %d", err, tt.line)
			}
		})
	}
}
