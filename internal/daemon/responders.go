package daemon

import (
	"context"
	"log/slog"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
)

// startPortControl serves NAT-PMP and PCP on port 5351 of every LAN
// address and announces the external address. It returns nil when both
// protocols are switched off.
func startPortControl(ctx context.Context, cfg *config.Config, det netif.Detected, svc *portmap.Service,
	clk clock.Clock, port uint16, log *slog.Logger) (*pcp.Server, error) {
	if !cfg.NATPMP.Enabled && !cfg.PCP.Enabled {
		log.Info("NAT-PMP and PCP are switched off")
		return nil, nil
	}
	var binds []pcp.Bind
	for _, ifc := range det.LAN {
		for _, p := range ifc.Prefixes {
			// Link-local IPv6 needs a zone per interface; clients use the
			// router's global or ULA address (RFC 6887 §8.1 picks the
			// default router).
			if a := p.Addr(); !a.IsLinkLocalUnicast() {
				binds = append(binds, pcp.Bind{Interface: ifc.Name, Addr: a})
			}
		}
	}
	sc := pcp.ServerConfig{
		Binds: binds, Port: port, LAN: det.LANPrefixes, Clock: clk, Logger: log, Epoch: svc.Epoch,
		NATPMPAnnouncement: func(epoch uint32) []byte {
			a := svc.ExternalAddr()
			if !a.IsValid() || !a.Is4() {
				return nil
			}
			return natpmp.Announcement(epoch, a).AppendTo(nil)
		},
	}
	if cfg.PCP.Enabled {
		sc.PCP = &pcp.Handler{Mapper: svc, Epoch: svc.Epoch, AllowThirdParty: cfg.PCP.AllowThirdParty, Logger: log}
	}
	if cfg.NATPMP.Enabled {
		sc.NATPMP = &natpmp.Handler{Mapper: svc, Epoch: svc.Epoch, Logger: log}
	}
	srv, err := pcp.NewServer(sc)
	if err != nil {
		return nil, err
	}
	srv.Serve()
	srv.Announce()
	sub := svc.Subscribe(64)
	go func() {
		// Every event, not only ExternalChanged, is a chance to notice a
		// new address: a burst of mapping events can push the change out
		// of the buffer.
		last := svc.ExternalAddr()
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
