package q_test

import (
	"testing"

	"example.com/fixture/q"
)

func FuzzQ(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) { _ = q.ParseQ(s) })
}

func ParseR(s string) error { return nil }
