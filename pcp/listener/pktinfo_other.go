//go:build !linux

package listener

import (
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// arrivalIndex returns the index of the interface a packet arrived on,
// from the control message prepare asked for; 0 when there is none. See
// pktinfo_linux.go for Linux's.
func arrivalIndex(oob []byte, v4 bool) int {
	if v4 {
		var cm ipv4.ControlMessage
		if cm.Parse(oob) == nil {
			return cm.IfIndex
		}
		return 0
	}
	var cm ipv6.ControlMessage
	if cm.Parse(oob) == nil {
		return cm.IfIndex
	}
	return 0
}
