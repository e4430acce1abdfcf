package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/berthd/berth/internal/netif"
)

// LAN changes while berthd runs. Interfaces are detected at start; after
// that the address watch asks Detect again after every burst of address
// changes, and berthd starts its responders afresh on what it finds when
// that is more than it serves:
//   - an address it does not serve yet: a LAN bridge that got its address
//     after berthd started, a new delegated IPv6 prefix, a new private
//     interface when lan is unset;
//   - a LAN interface created again under the same name (netifd, a bridge
//     rebuilt): its index changed, and the responders check the interface
//     a request arrived on by index;
//   - the end of serving the WAN as LAN: with lan unset and no private
//     interface at start, berthd served a private WAN (Detect's fallback);
//     once a LAN interface has an address, the WAN is no longer served and
//     the mappings of hosts on it are withdrawn.
//
// Addresses that went away change nothing. Their sockets stay bound and
// work again when the address returns (an interface restarted removes
// and re-adds it within a second), and their prefixes stay LAN prefixes,
// so that a flap withdraws no mapping. berthd never starts serving the
// WAN while running, and a new default route through another interface
// needs a restart.

// lanKey is one address berth serves and the interface index it is on.
type lanKey struct {
	index int
	addr  netip.Addr
}

// servedAddrs are the LAN addresses of d that responders bind, with their
// interface's index: link-local addresses are not bound, and virtual ones
// (VRRP, CARP) are bound whether present or not, so their coming and
// going is no change.
func servedAddrs(d netif.Detected, virtual []netip.Addr) map[lanKey]bool {
	out := make(map[lanKey]bool)
	for _, ifc := range d.LAN {
		for _, p := range ifc.Prefixes {
			if a := p.Addr(); !a.IsLinkLocalUnicast() && !slices.Contains(virtual, a) {
				out[lanKey{ifc.Index, a}] = true
			}
		}
	}
	return out
}

// nextLAN decides what to serve after an address change: cur is what is
// served, found what Detect finds now (routed prefixes added). It returns
// what to serve and a reason when the responders are to start afresh on
// it; "" keeps cur.
func nextLAN(cur, found netif.Detected, virtual []netip.Addr) (netif.Detected, string) {
	if found.WAN.Name != cur.WAN.Name || (found.ServeWAN && !cur.ServeWAN) {
		return cur, ""
	}
	next := found
	next.Notes = nil
	if cur.ServeWAN && !found.ServeWAN {
		return next, fmt.Sprintf("a LAN interface (%s) has an address: no longer serving wan %s", names(found.LAN), cur.WAN.Name)
	}
	served := servedAddrs(cur, virtual)
	var added []string
	for k := range servedAddrs(found, virtual) {
		if !served[k] {
			added = append(added, k.addr.String())
		}
	}
	if len(added) == 0 {
		return cur, ""
	}
	slices.Sort(added)
	// Prefixes only grow: a prefix whose address went away may come back.
	for _, p := range cur.LANPrefixes {
		if !slices.Contains(next.LANPrefixes, p) {
			next.LANPrefixes = append(next.LANPrefixes, p)
		}
	}
	return next, fmt.Sprintf("new LAN address(es) %v", added)
}

// relan detects the interfaces again and, if the LAN grew, starts the
// responders afresh on it and rebuilds the policy. An error means nothing
// serves any more.
func (w *addrWatch) relan(ctx context.Context) error {
	if w.detect == nil {
		return nil
	}
	found, err := w.detect(w.cfg.WAN, w.cfg.LAN)
	if err != nil {
		// The LAN is gone for now (WANOnlyError); its sockets stay.
		w.log.Warn("detecting the LAN after an address change; serving it as before", "err", err)
		return nil
	}
	if found.WAN.Name != w.det.WAN.Name {
		if !w.wanMoved {
			w.log.Warn("the default route left the WAN interface; restart berthd to follow it",
				"wan", w.det.WAN.Name, "now", found.WAN.Name)
		}
		w.wanMoved = true
		return nil
	}
	w.wanMoved = false
	found.LANPrefixes = withRouted(found.LANPrefixes, w.cfg.LANRouted, discard)
	next, why := nextLAN(w.det, found, w.cfg.VirtualAddrs)
	if why == "" {
		w.det.WAN = found.WAN // its addresses are the router's
		return nil
	}
	w.log.Info("LAN changed: serving it afresh", "why", why, "lan", names(next.LAN), "lan_prefixes", next.LANPrefixes)
	ports := w.resp.httpPorts()
	w.resp.close()
	w.resp = nil
	resp, err := w.restart(ctx, next, ports)
	if err != nil {
		// An address that went between Detect and the bind: serve what
		// was served, and look again at the next change.
		w.log.Error("cannot serve the changed LAN; serving the LAN as before", "err", err)
		if resp, err = w.restart(ctx, w.det, ports); err != nil {
			return fmt.Errorf("daemon: serving the LAN again after a change: %w", err)
		}
		w.resp = resp
		return nil
	}
	w.resp, w.det = resp, next
	w.repolicy()
	return nil
}

// discard is a logger for what is logged once already.
var discard = slog.New(slog.DiscardHandler)
