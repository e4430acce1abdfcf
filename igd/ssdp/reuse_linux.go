package ssdp

import (
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseAddr sets SO_REUSEADDR on the group socket, so berth shares
// 239.255.255.250:1900 with other SSDP speakers on the router (minidlna,
// minissdpd bind 0.0.0.0:1900 with SO_REUSEADDR); Linux then delivers
// each multicast datagram to every such socket.
func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// FreeBind is a net.ListenConfig Control that sets IP_FREEBIND, or
// IPV6_FREEBIND on an IPv6 socket (Linux 4.15): the socket binds an
// address the host does not carry (yet) and receives from the moment the
// address is added, with no rebind. This is how a standby router of a
// VRRP or CARP pair serves the virtual gateway address (COMPAT S4). Until
// the address is there nothing can be sent from the socket: Linux refuses
// a source address that is not local (ENETUNREACH), so a standby stays
// silent. The IGD's HTTP listeners on a virtual address use it too.
// Outside Linux it fails.
func FreeBind(network, address string, c syscall.RawConn) error {
	level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
	if strings.HasSuffix(network, "6") {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, 1)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("freebind: %w", serr)
	}
	return nil
}
