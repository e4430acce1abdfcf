// Package a is a presubmit fixture: bad-name.go has a hyphen.
package a
