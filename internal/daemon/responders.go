package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
	"github.com/berthd/berth/pcp/listener"
)

// vip is a configured virtual gateway address (VRRP, CARP; COMPAT S4) and
// the LAN interface it belongs to.
type vip struct {
	Addr      netip.Addr
	Interface string
}

// virtualAddrs finds, for each configured virtual address, the LAN
// interface with a prefix that holds it. The address's own entry, there
// while this router is the active one, does not count: active and standby
// must agree, and the standby does not have it. No such interface is an
// error naming the address.
func virtualAddrs(cfg *config.Config, det netif.Detected) ([]vip, error) {
	var out []vip
	for _, a := range cfg.VirtualAddrs {
		v, err := vipOf(a, det)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// vipOf is virtual address a on the LAN interface with a prefix that
// holds it, or an error when none has.
func vipOf(a netip.Addr, det netif.Detected) (vip, error) {
	for _, ifc := range det.LAN {
		for _, p := range ifc.Prefixes {
			if p.Addr() != a && p.Contains(a) {
				return vip{Addr: a, Interface: ifc.Name}, nil
			}
		}
	}
	return vip{}, fmt.Errorf("virtual address %s: no LAN interface (%s) has a prefix that holds it", a, names(det.LAN))
}

// isVirtual reports whether a is one of the virtual addresses.
func isVirtual(vips []vip, a netip.Addr) bool {
	return slices.ContainsFunc(vips, func(v vip) bool { return v.Addr == a })
}

// responders are the running NAT-PMP/PCP and UPnP servers; either is nil
// when switched off.
type responders struct {
	pc     *listener.Server
	pcStop context.CancelFunc
	up     *upnp
}

// close stops UPnP (byebye first), then NAT-PMP and PCP.
func (r *responders) close() {
	if r == nil {
		return
	}
	if r.up != nil {
		r.up.close()
	}
	if r.pc != nil {
		r.pc.Close()
		r.pcStop()
	}
}

// wanPorts are the HTTP ports the IGD serves on the WAN (upnp.wanPorts).
func (r *responders) wanPorts(det netif.Detected, ext netip.Addr) []policy.Reserved {
	if r == nil || r.up == nil {
		return nil
	}
	return r.up.wanPorts(det, ext)
}

// httpPorts are the IGD's HTTP ports by address, for the next start to
// keep: control points remember the URLs of the description.
func (r *responders) httpPorts() map[netip.Addr]uint16 {
	if r == nil || r.up == nil {
		return nil
	}
	return r.up.ports
}

// startResponders serves NAT-PMP and PCP on port 5351 of every LAN
// address and of every virtual gateway address (bound whether present or
// not), announcing the external address, and UPnP IGD (startUPnP; prefer
// and bootID are its). Either is left out when switched off. A LAN without
// IPv4 leaves UPnP out until the LAN changes again (an IPv6 prefix may
// come before the IPv4 address, and a supervisor gives up on a daemon that
// fails at every start). After a LAN change, or while the LAN has no
// address (again), virtual addresses that no LAN prefix holds are left out
// too; at a start with a LAN they are an error. On error nothing serves.
func startResponders(ctx context.Context, cfg *config.Config, det netif.Detected, svc *portmap.Service,
	clk clock.Clock, bootID uint32, prefer map[netip.Addr]uint16, again bool, o Options, log *slog.Logger) (*responders, error) {
	if again {
		c := *cfg
		c.VirtualAddrs = slices.DeleteFunc(slices.Clone(cfg.VirtualAddrs), func(a netip.Addr) bool {
			_, err := vipOf(a, det)
			if err != nil {
				log.Warn("virtual gateway address not served until a LAN prefix holds it", "err", err)
			}
			return err != nil
		})
		cfg = &c
	}
	r := &responders{}
	if !cfg.NATPMP.Enabled && !cfg.PCP.Enabled {
		log.Info("NAT-PMP and PCP are switched off")
	} else {
		sc, err := portControlConfig(cfg, det, svc, clk, o.PortControlPort, log)
		if err != nil {
			return nil, fmt.Errorf("daemon: NAT-PMP/PCP: %w", err)
		}
		pctx, stop := context.WithCancel(ctx)
		if r.pc, err = servePortControl(pctx, sc, svc); err != nil {
			stop()
			return nil, fmt.Errorf("daemon: NAT-PMP/PCP: %w", err)
		}
		r.pcStop = stop
	}
	up, err := startUPnP(ctx, cfg, det, svc, clk, bootID, prefer, o, log)
	if errors.Is(err, errNoIPv4) {
		log.Warn("UPnP IGD paused: no IPv4 LAN address; it serves again when one appears")
		err = nil
	}
	if err != nil {
		r.close()
		return nil, fmt.Errorf("daemon: UPnP: %w", err)
	}
	r.up = up
	return r, nil
}

// portControlConfig is the configuration of the NAT-PMP/PCP server: its
// binds, and a handler and announcements for each protocol switched on.
func portControlConfig(cfg *config.Config, det netif.Detected, svc *portmap.Service,
	clk clock.Clock, port uint16, log *slog.Logger) (listener.Config, error) {
	vips, err := virtualAddrs(cfg, det)
	if err != nil {
		return listener.Config{}, err
	}
	var binds []listener.Bind
	for _, ifc := range det.LAN {
		for _, p := range ifc.Prefixes {
			// Link-local IPv6 needs a zone per interface; clients use the
			// router's global or ULA address (RFC 6887 §8.1 picks the
			// default router). A virtual address that is present gets its
			// own bind below.
			if a := p.Addr(); !a.IsLinkLocalUnicast() && !isVirtual(vips, a) {
				binds = append(binds, listener.Bind{Interface: ifc.Name, Addr: a})
			}
		}
	}
	for _, v := range vips {
		binds = append(binds, listener.Bind{Interface: v.Interface, Addr: v.Addr, Virtual: true})
	}
	// One epoch, the Service's, for both protocols and their
	// announcements (COMPAT N8).
	sc := listener.Config{Binds: binds, Port: port, LAN: det.LANPrefixes, Clock: clk, Logger: log, Epoch: svc.Epoch}
	if cfg.PCP.Enabled {
		sc.PCP = &pcp.Handler{Mapper: svc, Epoch: svc.Epoch, AllowThirdParty: cfg.PCP.AllowThirdParty, Logger: log}
	}
	if cfg.NATPMP.Enabled {
		sc.NATPMP = &natpmp.Handler{Mapper: svc, Epoch: svc.Epoch, Logger: log}
		// A host told by an announcement that a NAT-PMP gateway is here
		// would ask it, and get UNSUPP_VERSION from PCP: only announce
		// what is served.
		sc.NATPMPAnnouncement = func(epoch uint32) []byte {
			a := svc.ExternalAddr()
			if !a.IsValid() || !a.Is4() {
				return nil
			}
			return natpmp.Announcement(epoch, a).AppendTo(nil)
		}
	}
	return sc, nil
}

// servePortControl starts the server, announces, and announces again
// whenever the external address changes, until ctx ends.
func servePortControl(ctx context.Context, sc listener.Config, svc *portmap.Service) (*listener.Server, error) {
	srv, err := listener.New(sc)
	if err != nil {
		return nil, err
	}
	srv.Serve()
	// Subscribed and the address read before the first announcement, so
	// that a change from here on is announced again.
	sub := svc.Subscribe(64)
	last := svc.ExternalAddr()
	srv.Announce()
	go func() {
		// Every event, not only ExternalChanged, is a chance to notice a
		// new address: a burst of mapping events can push the change out
		// of the buffer.
		for range sub.C() {
			if a := svc.ExternalAddr(); a != last {
				last = a
				srv.Announce()
			}
		}
	}()
	context.AfterFunc(ctx, sub.Cancel)
	return srv, nil
}
