// Package p is a presubmit fixture: Parse functions and their fuzz targets.
package p

// ParseA is covered by FuzzParseA.
func ParseA(s string) error { return nil }

// ParseB is covered by FuzzAll through a helper.
func ParseB(s string) error { return nil }

// ParseC has no fuzz target.
func ParseC(s string) error { return nil }

// Parse has no fuzz target either.
func Parse(s string) error { return nil }

func parseD(s string) error { return nil }

// T is a type with a Parse method, which is not checked.
type T struct{}

// ParseE is a method.
func (T) ParseE(s string) error { return nil }
