package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

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
//     the mappings of hosts on it are withdrawn, as a restart would. Any
//     private interface ends it (docker0 too), until a restart.
//
// Addresses that went away change nothing: their sockets stay bound and
// work again when the address returns (an interface restarted removes
// and re-adds it within a second), until the responders next start
// afresh, and their prefixes stay LAN prefixes for as long as berthd
// runs, so that a flap withdraws no mapping. berthd never starts serving
// the WAN while running, and a new default route through another
// interface needs a restart.
//
// Starting afresh costs what a restart of the responders costs: a new
// SSDP BOOTID with byebye and alive, which tells control points that
// their GENA subscriptions are gone, and a new round of NAT-PMP and PCP
// announcements. The IGD keeps its HTTP port on each address it served.

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
// it; "" keeps cur. retry asks for a start on what was found even when
// nothing grew: the last one failed.
func nextLAN(cur, found netif.Detected, virtual []netip.Addr, retry bool) (netif.Detected, string) {
	if found.WAN.Name != cur.WAN.Name || (found.ServeWAN && !cur.ServeWAN) {
		return cur, ""
	}
	next := found
	next.Notes = nil
	if cur.ServeWAN && !found.ServeWAN {
		return next, fmt.Sprintf("a LAN interface (%s) has an address: no longer serving wan %s until a restart", names(found.LAN), cur.WAN.Name)
	}
	served := servedAddrs(cur, virtual)
	var added []string
	for k := range servedAddrs(found, virtual) {
		if !served[k] {
			added = append(added, k.addr.String())
		}
	}
	why := "serving the LAN again after a failed start"
	switch {
	case len(added) > 0:
		slices.Sort(added)
		why = fmt.Sprintf("new LAN address(es) %v", added)
	case !retry:
		return cur, ""
	}
	// Prefixes only grow: a prefix whose address went away may come back.
	next.LANPrefixes = union(next.LANPrefixes, cur.LANPrefixes)
	return next, why
}

// union is a with the prefixes of b it lacks appended.
func union(a, b []netip.Prefix) []netip.Prefix {
	out := slices.Clone(a)
	for _, p := range b {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// stillThere is d with only the addresses found still has on the same
// interface: what can be bound of what was served.
func stillThere(d, found netif.Detected) netif.Detected {
	there := make(map[lanKey]bool)
	for _, ifc := range found.LAN {
		for _, p := range ifc.Prefixes {
			there[lanKey{ifc.Index, p.Addr()}] = true
		}
	}
	out := d
	out.LAN = nil
	for _, ifc := range d.LAN {
		kept := ifc
		kept.Prefixes = nil
		for _, p := range ifc.Prefixes {
			if there[lanKey{ifc.Index, p.Addr()}] {
				kept.Prefixes = append(kept.Prefixes, p)
			}
		}
		out.LAN = append(out.LAN, kept)
	}
	return out
}

// Retrying a failed start: first after retryFirst, then at twice the
// interval each time, at most retryMax apart.
const (
	retryFirst = 30 * time.Second
	retryMax   = 10 * time.Minute
)

// relan detects the interfaces again and, if the LAN grew, applies it to
// the policy and starts the responders afresh on it; it reports whether
// it rebuilt the policy. timer says the retry timer called it.
//
// When the responders cannot start on the new LAN (an address went
// between Detect and the bind; another program holds a port on a new
// address) they start on what is left of the LAN they last served, and
// failing that nothing serves; berthd keeps its mappings either way. The
// next try comes with the retry timer (retryFirst, doubling to retryMax),
// or sooner when the addresses change: a lifetime refresh of the same
// addresses (IPv6 router advertisements) is no reason to fail again.
func (w *addrWatch) relan(ctx context.Context, timer bool) bool {
	if w.detect == nil {
		return false
	}
	found, err := w.detect(w.cfg.WAN, w.cfg.LAN)
	if err != nil {
		// The LAN is gone for now (WANOnlyError); its sockets stay.
		w.log.Warn("detecting the LAN after an address change; serving it as before", "err", err)
		return false
	}
	if found.WAN.Name != w.det.WAN.Name {
		if !w.wanMoved {
			w.log.Warn("the default route left the WAN interface; restart berthd to follow it",
				"wan", w.det.WAN.Name, "now", found.WAN.Name)
		}
		w.wanMoved = true
		return false
	}
	w.wanMoved = false
	found.LANPrefixes = withRouted(found.LANPrefixes, w.cfg.LANRouted, discard)
	addrs := servedAddrs(found, w.cfg.VirtualAddrs)
	if w.failed && !timer && maps.Equal(addrs, w.tried) {
		return false // nothing new to try before the timer
	}
	next, why := nextLAN(w.det, found, w.cfg.VirtualAddrs, w.failed)
	if why == "" {
		w.det.WAN = found.WAN // its addresses are the router's
		return false
	}
	w.log.Info("LAN changed: serving it afresh", "why", why, "lan", names(next.LAN), "lan_prefixes", next.LANPrefixes)
	hadWAN := len(w.resp.wanPorts(w.det, w.svc.ExternalAddr())) > 0
	// The policy first: a host of the new LAN is served from the first
	// answer, and a host of a WAN no longer served is refused at once.
	w.det = next
	w.repolicy()
	if w.readmit != nil && w.readmit() {
		w.readmit = nil
	}
	w.resp.close()
	w.resp = &responders{}
	resp, err := w.restart(ctx, next, w.ports)
	if err == nil {
		w.served, w.failed, w.backoff = next, false, 0
	} else {
		w.log.Error("cannot serve the changed LAN; serving what is left of the LAN served before", "err", err)
		keep := stillThere(w.served, found)
		keep.LANPrefixes = next.LANPrefixes
		if resp, err = w.restart(ctx, keep, w.ports); err != nil {
			w.log.Error("cannot serve the LAN: NAT-PMP, PCP and UPnP stop until the next try; mappings keep working", "err", err)
		} else {
			w.served = keep
		}
		w.failed, w.tried = true, addrs
		w.backoff = min(max(2*w.backoff, retryFirst), retryMax)
		w.after(w.backoff)
	}
	if resp != nil {
		w.resp = resp
		maps.Copy(w.ports, resp.httpPorts())
	}
	if hadWAN || len(w.resp.wanPorts(w.det, w.svc.ExternalAddr())) > 0 {
		w.repolicy() // the IGD's HTTP ports on the WAN, reserved, changed
	}
	return true
}

// discard is a logger for what is logged once already.
var discard = slog.New(slog.DiscardHandler)
