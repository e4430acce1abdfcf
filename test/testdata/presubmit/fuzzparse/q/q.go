// Package q is a presubmit fixture: an external test package covers ParseQ.
package q

// ParseQ is covered by q_test.FuzzQ.
func ParseQ(s string) error { return nil }

// ParseR is not covered.
func ParseR(s string) error { return nil }
