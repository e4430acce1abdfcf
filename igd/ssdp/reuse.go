//go:build !linux

package ssdp

import "syscall"

// reuseAddr does nothing outside Linux; see reuse_linux.go.
func reuseAddr(network, address string, c syscall.RawConn) error { return nil }
