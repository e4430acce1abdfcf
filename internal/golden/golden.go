// Package golden reads the golden vectors of berth's wire and file
// formats (testdata/*.txt in natpmp, pcp and internal/store): a first line
// "# provenance: ..." saying where the bytes come from, then lines of hex,
// each with a '#' comment naming its field. Blank lines and lines holding
// only a comment are skipped; the hex of all lines is joined. It is for
// tests.
package golden

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hex returns the bytes of the vector in file. A missing provenance line,
// a hex line without a field comment or bad hex fails t.
func Hex(t testing.TB, file string) []byte {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var h strings.Builder
	n := 0
	for line := range strings.Lines(string(text)) {
		n++
		line = strings.TrimSpace(line)
		if n == 1 {
			if !strings.HasPrefix(line, "# provenance: ") {
				t.Fatalf("%s:1: got %q, want a \"# provenance: \" line", file, line)
			}
			continue
		}
		data, comment, found := strings.Cut(line, "#")
		data = strings.TrimSpace(data)
		switch {
		case data == "":
			continue
		case !found || strings.TrimSpace(comment) == "":
			t.Fatalf("%s:%d: %q has no field comment", file, n, line)
		}
		h.WriteString(strings.Join(strings.Fields(data), ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return b
}

// Files returns the base names of the vectors dir/*.txt, failing t when
// there are none.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no golden vectors in %s: %v", dir, err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}
