package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/portmap"
)

// addrWatch follows the system's addresses while berthd runs: a new WAN
// address (a DHCP lease, a PPPoE reconnect) moves every mapping to it and
// is announced; a LAN that grew is served afresh (lan.go); a virtual
// gateway address arriving on this router (VRRP or CARP made it the
// active one) is announced over NAT-PMP, PCP and SSDP. Only Run's
// goroutine uses it.
type addrWatch struct {
	cfg  *config.Config // as at start: interfaces and responders
	det  netif.Detected // the LAN as the policy knows it
	svc  *portmap.Service
	resp *responders
	// served is the LAN the responders last started on; ports are the
	// IGD's HTTP ports on every address it has served.
	served netif.Detected
	ports  map[netip.Addr]uint16
	addrs  func(name string) ([]netip.Prefix, error)
	vips   map[netip.Addr]bool // virtual addresses present at the last look
	log    *slog.Logger

	// detect finds the interfaces again; nil leaves the LAN as at start.
	detect func(wan string, lan []string) (netif.Detected, error)
	// restart starts the responders on a changed LAN, the IGD's HTTP
	// ports kept where free; repolicy applies the LAN to the policy.
	restart  func(ctx context.Context, det netif.Detected, ports map[netip.Addr]uint16) (*responders, error)
	repolicy func()
	// readmit, when not nil, restores the stored leases of LAN hosts that
	// waited while berthd served no LAN, or its WAN, and reports whether
	// none waits any longer.
	readmit func() bool
	// after arms the retry of a failed start: Run looks again (relan
	// with timer set) d later.
	after    func(d time.Duration)
	wanMoved bool // the default route left the WAN; said once
	// failed says the responders could not start on the LAN last found,
	// tried; backoff is how long until the next retry.
	failed  bool
	tried   map[lanKey]bool
	backoff time.Duration
}

// watchAddrs starts following the addresses; the returned channel yields
// after each burst of changes. Without a watcher (not Linux) it returns
// nil, and address changes need a restart.
func watchAddrs(ctx context.Context, w *addrWatch, watch func(context.Context, func(), *slog.Logger) error) <-chan struct{} {
	if watch == nil {
		return nil
	}
	ch := make(chan struct{}, 1)
	err := watch(ctx, func() {
		select {
		case ch <- struct{}{}:
		default: // one pending look covers any number of changes
		}
	}, w.log)
	if err != nil {
		w.log.Warn("not following address changes: a new WAN address needs a restart", "err", err)
		return nil
	}
	w.vips = w.present()
	return ch
}

// changed looks at the addresses again and acts on what moved.
func (w *addrWatch) changed(ctx context.Context) {
	moved := false
	if !w.cfg.ExternalAddr.IsValid() { // a configured address never moves
		ps, err := w.addrs(w.det.WAN.Name)
		if err != nil {
			w.log.Warn("reading the WAN addresses", "wan", w.det.WAN.Name, "err", err)
		} else if a := netif.ExternalAddr(ps); a != w.svc.ExternalAddr() {
			if !a.IsValid() {
				w.log.Warn("the WAN interface lost its address: new mappings fail until it has one again", "wan", w.det.WAN.Name)
			} else {
				warnAboutExternal(w.log, a)
			}
			// The Service moves the mappings and publishes the change; the
			// NAT-PMP/PCP server announces it from that event.
			if err := w.svc.SetExternalAddr(ctx, a); err != nil {
				w.log.Error("moving the mappings to the new external address", "addr", a, "err", err)
			}
			moved = true
		}
	}
	if !w.relan(ctx, false) && moved {
		w.repolicy() // the router's own addresses changed
	}
	now := w.present()
	for a := range now {
		if !w.vips[a] {
			w.log.Info("virtual gateway address arrived: announcing", "addr", a)
			if w.resp.pc != nil {
				w.resp.pc.Announce()
			}
			if w.resp.up != nil {
				w.resp.up.ssdp.Announce()
			}
			break // one announcement covers every address
		}
	}
	w.vips = now
}

// present returns the configured virtual addresses this router carries now.
func (w *addrWatch) present() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	if len(w.cfg.VirtualAddrs) == 0 {
		return out
	}
	for _, ifc := range w.det.LAN {
		ps, err := w.addrs(ifc.Name)
		if err != nil {
			continue
		}
		for _, p := range ps {
			if slices.Contains(w.cfg.VirtualAddrs, p.Addr()) {
				out[p.Addr()] = true
			}
		}
	}
	return out
}
