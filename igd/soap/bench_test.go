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
