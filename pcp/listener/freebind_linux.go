package listener

import (
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// freeBind is a net.ListenConfig Control that sets IP_FREEBIND, or
// IPV6_FREEBIND on an IPv6 socket (Linux 4.15): the socket binds an
// address the host does not carry (yet), a standby router's virtual
// gateway address, and receives from the moment the address is added.
// Until then Linux refuses to send from it (ENETUNREACH).
func freeBind(network, address string, c syscall.RawConn) error {
	level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
	if strings.HasSuffix(network, "6") {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("freebind: %w", serr)
	}
	return nil
}

// forceReadBuffer raises conn's receive buffer to n bytes past the
// system's rmem_max with SO_RCVBUFFORCE, which needs CAP_NET_ADMIN (berthd
// runs as root on a router). It reports whether that worked.
func forceReadBuffer(c syscall.RawConn, n int) bool {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) }); err != nil {
		return false
	}
	return serr == nil
}
