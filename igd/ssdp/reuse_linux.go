package ssdp

import "syscall"

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
