//go:build !linux

package ssdp

import (
	"errors"
	"syscall"
)

// reuseAddr does nothing outside Linux; see reuse_linux.go.
func reuseAddr(network, address string, c syscall.RawConn) error { return nil }

// FreeBind fails outside Linux: binding an address the host does not
// carry needs IP_FREEBIND; see reuse_linux.go.
func FreeBind(network, address string, c syscall.RawConn) error {
	return errors.New("freebind: binding an absent address is only supported on Linux")
}
