package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestHex reads a vector as the format says: provenance first, comment
// lines and blank lines skipped, the hex of the field lines joined.
func TestHex(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "v.txt")
	text := "# provenance: made up for this test\n" +
		"# a header comment\n" +
		"00 02   # version, opcode\n" +
		"\n" +
		"  1f90 # port\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := Hex(t, file), []byte{0x00, 0x02, 0x1f, 0x90}; !bytes.Equal(got, want) {
		t.Errorf("Hex = % x, want % x", got, want)
	}
	if got := Files(t, dir); len(got) != 1 || got[0] != "v.txt" {
		t.Errorf("Files = %v, want [v.txt]", got)
	}
}
