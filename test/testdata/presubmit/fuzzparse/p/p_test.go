package p

import "testing"

func FuzzParseA(f *testing.F) {}

func FuzzAll(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}

func check(t *testing.T, s string) {
	if err := ParseB(s); err != nil {
		t.Skip()
	}
}

// TestParseC calls ParseC but is no fuzz target.
func TestParseC(t *testing.T) { ParseC("") }
