package soap

import (
	"strings"
	"testing"
)

// BenchmarkEscapeLeafTextHostile measures the pre-pass on hostile nesting,
// which must stay linear in the body size (a few hundred µs at most).
func BenchmarkEscapeLeafTextHostile(b *testing.B) {
	for _, body := range []string{
		strings.Repeat("<a>", MaxBodySize/3-10),
		strings.Repeat("<a>x<", MaxBodySize/5-10) + "</a>",
		strings.Repeat("<a><", MaxBodySize/4-10) + "</a>",
	} {
		b.Run("", func(b *testing.B) {
			for b.Loop() {
				escapeLeafText([]byte(body))
			}
		})
	}
}

// BenchmarkDecodeBody decodes a miniupnpc AddPortMapping (with its
// unescaped description) by the fast path and, for comparison, by
// encoding/xml alone.
func BenchmarkDecodeBody(b *testing.B) {
	c := readCorpus(b, "testdata/requests/miniupnpc-addportmapping.txt")
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, found, err := decodeBody(c.body); !found || err != nil {
				b.Fatal(found, err)
			}
		}
	})
	b.Run("xml", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, found, err := decodeTokens(slowTokens(prepare(c.body))); !found || err != nil {
				b.Fatal(found, err)
			}
		}
	})
}
