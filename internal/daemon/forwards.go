package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/portmap"
)

// detectErr is the error for interfaces that could not be detected. An
// interface the configuration names that the system lacks is a
// configuration error naming the line or flag.
func detectErr(cfg *config.Config, err error) error {
	var nf *netif.NotFoundError
	if errors.As(err, &nf) {
		switch i := slices.Index(cfg.LAN, nf.Name); {
		case nf.Role == "wan" && cfg.WAN == nf.Name:
			return cfg.Errorf("wan", "no interface %q on this system", nf.Name)
		case nf.Role == "lan" && i >= 0:
			return cfg.Errorf(fmt.Sprintf("lan[%d]", i), "no interface %q on this system", nf.Name)
		}
	}
	return fmt.Errorf("daemon: detect interfaces: %w", err)
}

// forwards are the configured static forwards, checked against what only
// the running system knows: a forward must lead to a host berth serves
// (a LAN prefix, lan_routed included), not onto berth's own ports, and,
// with the nft backend, to an address of the external address's family.
// A problem is a configuration error naming the forward's line.
func forwards(cfg *config.Config, det netif.Detected, ext netip.Addr, backendName string) ([]portmap.Forward, error) {
	out := make([]portmap.Forward, len(cfg.Forwards))
	var errs []error
	for i, f := range cfg.Forwards {
		at := func(key string) string { return fmt.Sprintf("forward[%d].%s", i, key) }
		in := f.Internal.Addr()
		own := slices.IndexFunc(ownPorts, func(o ownPort) bool { return f.Proto == mapping.UDP && o.port == f.External })
		switch {
		case own >= 0:
			errs = append(errs, cfg.Errorf(at("external_port"), "udp port %d is berth's own (%s)", f.External, ownPorts[own].use))
		case backendName == "nft" && ext.IsValid() && in.Is4() != ext.Is4():
			errs = append(errs, cfg.Errorf(at("internal"), "the nft backend forwards the external address %s only to addresses of its family, not %s", ext, in))
		case !slices.ContainsFunc(det.LANPrefixes, func(p netip.Prefix) bool { return p.Contains(in) }):
			errs = append(errs, cfg.Errorf(at("internal"), "%s is in no LAN prefix (%v); a host behind a LAN router needs its subnet in lan_routed", in, det.LANPrefixes))
		}
		out[i] = portmap.Forward{Name: f.Name, Proto: f.Proto, External: f.External, Internal: f.Internal, Remote: f.Remote}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
