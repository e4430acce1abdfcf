// Package doc is a presubmit fixture: documented in a.go only.
package doc
