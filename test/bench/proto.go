package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
)

// Mapping slots. Slot s is one mapping the benchmark may create: protocol
// UDP for even s and TCP for odd s, external (and internal) port
// portBase+s/2, owned by pool address s/2. Every slot has its own port per
// protocol, so a request never has to look for a free port, and N
// mappings are slots [0, N).
const (
	portBase = 1100
	maxSlots = 2 * (65535 - portBase + 1 - len(reservedPorts))
	// fwdPort is the mapping that forwarding traffic crosses, outside the
	// slots; echoPort is the ceiling echo server's port on the router.
	fwdPort  = 1050
	echoPort = 15351
	// lifetime asked for every mapping: long enough that nothing
	// expires during a run, and within both daemons' maximum.
	lifetime = 86400
)

// reservedPorts, ascending, are left out of the slots: ports a daemon
// keeps for itself (SSDP, NAT-PMP/PCP and its announcements, miniupnpd's
// HTTP port), which a request could not get as asked.
var reservedPorts = [...]uint16{1900, 2869, 5350, 5351}

type slot struct {
	udp    bool
	port   uint16
	client netip.Addr
}

func slotOf(s int) slot {
	port := portBase + s/2
	for _, r := range reservedPorts {
		if port >= int(r) {
			port++
		}
	}
	return slot{udp: s%2 == 0, port: uint16(port), client: poolAddr(s / 2)}
}

func (s slot) protoNumber() uint8 {
	if s.udp {
		return 17
	}
	return 6
}

func (s slot) protoName() string {
	if s.udp {
		return "UDP"
	}
	return "TCP"
}

// pcpNonce is slot s's mapping nonce: the same for create, renew and
// delete, as RFC 6887 §11.1 requires of one client's mapping.
func pcpNonce(s int) [12]byte {
	var n [12]byte
	copy(n[:], "berthbench")
	binary.BigEndian.PutUint16(n[10:], uint16(s))
	n[9] ^= byte(s >> 16)
	return n
}

// pcpServer is where NAT-PMP and PCP requests go.
var pcpServer = netip.AddrPortFrom(routerLAN, natpmp.Port)

// natpmpOp maps slot s for life seconds (0 deletes it).
func natpmpOp(s int, life uint32) udpOp {
	sl := slotOf(s)
	op := natpmp.OpMapTCP
	if sl.udp {
		op = natpmp.OpMapUDP
	}
	req := natpmp.Request{Op: op, InternalPort: sl.port, SuggestedPort: sl.port, Lifetime: life}.AppendTo(nil)
	return udpOp{src: sl.client, dst: pcpServer, req: req, match: func(b []byte) (bool, error) {
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != op || r.InternalPort != sl.port {
			return false, nil
		}
		if r.Result != natpmp.Success {
			return true, fmt.Errorf("natpmp %s %d: result %v", sl.protoName(), sl.port, r.Result)
		}
		if life > 0 && r.ExternalPort == 0 {
			return true, fmt.Errorf("natpmp %s %d: success without an external port", sl.protoName(), sl.port)
		}
		return true, nil
	}}
}

// pcpOp maps slot s for life seconds (0 deletes it).
func pcpOp(s int, life uint32) udpOp {
	sl := slotOf(s)
	return pcpMap(sl.client, sl.protoNumber(), sl.port, sl.port, pcpNonce(s), life, nil)
}

// pcpMap is a PCP MAP request from client; got, if not nil, receives the
// assigned external port.
func pcpMap(client netip.Addr, proto uint8, internal, suggest uint16, nonce [12]byte, life uint32, got *uint16) udpOp {
	req := pcp.Request{Op: pcp.OpMap, Lifetime: life, Client: client, Nonce: nonce,
		Protocol: proto, InternalPort: internal, SuggestedPort: suggest}.AppendTo(nil)
	return udpOp{src: client, dst: pcpServer, req: req, match: func(b []byte) (bool, error) {
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpMap || r.Nonce != nonce || r.InternalPort != internal || r.Protocol != proto {
			return false, nil
		}
		if r.Result != pcp.Success {
			return true, fmt.Errorf("pcp map %d/%d: result %v", internal, proto, r.Result)
		}
		if life > 0 && r.ExternalPort == 0 {
			return true, fmt.Errorf("pcp map %d/%d: success without an external port", internal, proto)
		}
		if got != nil {
			*got = r.ExternalPort
		}
		return true, nil
	}}
}

// pcpAnnounce asks for nothing; any answer shows that the server is up.
func pcpAnnounce(client netip.Addr) udpOp {
	req := pcp.Request{Op: pcp.OpAnnounce, Client: client}.AppendTo(nil)
	return udpOp{src: client, dst: pcpServer, req: req, match: func(b []byte) (bool, error) {
		_, err := pcp.ParseResponse(b)
		return err == nil, nil
	}}
}

// natpmpAddress is a NAT-PMP external address request; miniupnpd answers
// it as soon as it serves.
func natpmpAddress() udpOp {
	req := natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil)
	return udpOp{src: lanHost, dst: pcpServer, req: req, match: func(b []byte) (bool, error) {
		r, err := natpmp.ParseResponse(b)
		return err == nil && r.Op == natpmp.OpAddress, nil
	}}
}

// slotPhase maps (or with life 0 deletes) slots from, from+1, ... with
// the protocol proto ("natpmp" or "pcp").
func slotPhase(ctx context.Context, cs []*udpClient, l limits, r retry, proto string, from int, life uint32) phaseResult {
	gen := func(i int) udpOp { return pcpOp(from+i, life) }
	if proto == "natpmp" {
		gen = func(i int) udpOp { return natpmpOp(from+i, life) }
	}
	return udpPhase(ctx, cs, l, r, gen)
}
