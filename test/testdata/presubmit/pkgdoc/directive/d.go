//go:build linux

package directive
