//go:build !linux

package listener

import (
	"errors"
	"syscall"
)

// freeBind fails outside Linux: binding an address the host does not
// carry needs IP_FREEBIND; see freebind_linux.go.
func freeBind(network, address string, c syscall.RawConn) error {
	return errors.New("freebind: binding an absent address is only supported on Linux")
}

// forceReadBuffer is Linux's SO_RCVBUFFORCE; elsewhere it does nothing.
func forceReadBuffer(c syscall.RawConn, n int) bool { return false }
