// Package daemon wires berthd together: it detects the interfaces, builds
// the policy and the backend from the configuration, starts the
// portmap.Service, installs the static forwards and runs until its context
// ends, reloading the policy and forwards on request. cmd/berthd holds only
// flags and signals; everything it decides lives here so it can be tested.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Logger *slog.Logger // required
	Clock  clock.Clock  // nil means the real clock
	// Reload, when it yields, re-reads the configuration (SIGHUP); Reread
	// produces the new one.
	Reload <-chan struct{}
	Reread func() (*config.Config, error)
	// Ready, if not nil, is called with the running Service once berthd
	// serves (tests use it).
	Ready func(*portmap.Service)
	// Detect finds the interfaces; nil means netif.Detect. Tests replace
	// it to serve loopback.
	Detect func(wan string, lan []string) (netif.Detected, error)
	// PortControlPort is the NAT-PMP/PCP port; 0 means 5351. Tests use
	// a free one.
	PortControlPort uint16
	// OpenNft creates the nft backend; nil means the real one. Tests
	// replace it so as never to touch the host's ruleset.
	OpenNft func(det netif.Detected, log *slog.Logger) (backend.Backend, error)
	// UPnPHTTPPort is the IGD's HTTP port (0: any free port, named in
	// LOCATION). SSDPPort and SSDPGroup override 1900 and
	// 239.255.255.250:1900 for tests.
	UPnPHTTPPort uint16
	SSDPPort     uint16
	SSDPGroup    netip.AddrPort
	// WatchAddrs follows address changes (netif.WatchAddrs when nil and
	// Detect is nil too); Addrs reads an interface's prefixes
	// (netif.Addrs when nil). Tests replace them.
	WatchAddrs func(ctx context.Context, changed func(), log *slog.Logger) error
	Addrs      func(name string) ([]netip.Prefix, error)
	// AddrsHandled, if not nil, is called each time berthd has acted on
	// a burst of address changes (tests use it).
	AddrsHandled func()
	// FreeMemory is called once berthd serves, when it read leases from
	// the store: restoring 100,000 leases leaves garbage of twice the
	// daemon's steady size (netlink messages for every element, the
	// decoded journal), which would otherwise stay resident until the
	// runtime's background scavenger gets to it. nil means
	// debug.FreeOSMemory.
	FreeMemory func()
	// Backend, if not nil, is called with the chosen backend's name
	// ("nft" or "relay") before the Service starts: berthd sizes its Go
	// scheduler by it (cmd/berthd).
	Backend func(name string)
}

func (o Options) freeMemory() {
	if o.FreeMemory != nil {
		o.FreeMemory()
		return
	}
	debug.FreeOSMemory()
}

func (o Options) addrs() func(string) ([]netip.Prefix, error) {
	if o.Addrs != nil {
		return o.Addrs
	}
	return netif.Addrs
}

// pcpPort is the NAT-PMP/PCP server port (RFC 6886 §3, RFC 6887 §19.1);
// ssdpPort is UPnP discovery. They are never handed out as external ports.
const (
	pcpPort  = 5351
	ssdpPort = 1900
)

// ownPort is a UDP port berth serves itself, and what on it.
type ownPort struct {
	port uint16
	use  string
}

// ownPorts are never handed out, nor taken by a static forward.
var ownPorts = []ownPort{{pcpPort, "NAT-PMP and PCP"}, {ssdpPort, "SSDP"}}

// Run serves until ctx ends, then removes every mapping it installed.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	// Whatever Run returns for, the address watch ends with it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := o.Logger
	clk := o.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	detect := o.Detect
	if detect == nil {
		detect = netif.Detect
	}
	det, err := detect(cfg.WAN, cfg.LAN)
	if err != nil {
		return detectErr(cfg, err)
	}
	for _, n := range det.Notes {
		log.Info("detected", "note", n)
	}
	det.LANPrefixes = withRouted(det.LANPrefixes, cfg.LANRouted, log)
	// A LAN without an address yet (a bridge that comes up after berthd)
	// is served once it has one: until then nothing answers, and the
	// stored leases wait.
	waiting := len(servedAddrs(det, nil)) == 0
	if waiting {
		log.Warn("the LAN has no address yet: NAT-PMP, PCP and UPnP answer once it has one; stored leases wait for it", "lan", names(det.LAN))
	}
	ext := det.ExternalAddr
	if cfg.ExternalAddr.IsValid() {
		ext = cfg.ExternalAddr
		log.Info("external address from configuration", "addr", ext)
	}
	warnAboutExternal(log, ext)
	if det.ServeWAN && slices.ContainsFunc(det.LANPrefixes, func(p netip.Prefix) bool { return netif.Routable(p.Addr()) }) {
		// Only when lan names the WAN: Detect refuses to choose it.
		log.Warn("serving the WAN interface as LAN on an address the internet reaches: any host on that network may ask for mappings; set lan to restrict",
			"wan", det.WAN.Name, "prefixes", det.LANPrefixes)
	}

	// The lease store loads on another core while the router's ports,
	// the policy and the backend are set up: with 100,000 leases each
	// side takes a fifth of a second.
	opened := make(chan openedLeases, 1)
	go func() {
		l, err := openLeases(cfg, log)
		opened <- openedLeases{l, err}
	}()
	abandon := func() {
		if o := <-opened; o.err == nil {
			o.l.close(log)
		}
	}
	// The router's own listening ports are read once, before the backend
	// binds anything: read later, they would include the relay's sockets
	// for the mappings themselves.
	own := routerPorts(det, ext, log)
	pol, err := buildPolicy(cfg, det, ext, own, log)
	if err != nil {
		abandon()
		return err
	}
	be, name, err := chooseBackend(cfg, det, ext, clk, o, log)
	if err != nil {
		abandon()
		return err
	}
	if o.Backend != nil {
		o.Backend(name)
	}
	op := <-opened
	ls, err := op.l, op.err
	if err != nil {
		be.Close()
		return err
	}
	defer ls.close(log) // after the Service: the last changes reach the disk
	svc := portmap.New(ls.config(portmap.Config{Backend: be, Policy: pol, Clock: clk, Logger: log, External: ext}))
	defer func() {
		if keepKernel(cfg) {
			kept, err := svc.Detach()
			if err != nil {
				log.Error("stopping the backend", "err", err)
			}
			if kept {
				log.Info("stopped; mappings left in the kernel, leases kept in the store")
				return
			}
			log.Warn("store.keep_kernel_state: the " + name + " backend cannot keep mappings without berthd")
		} else if err := svc.Close(); err != nil {
			log.Error("removing mappings at stop", "err", err)
		}
		if ls.st != nil {
			log.Info("stopped; mappings removed from the " + name + " backend, leases kept in the store")
		} else {
			log.Info("stopped; mappings removed")
		}
	}()
	// Stored leases first, then the static forwards, which win a conflict.
	// The leases of hosts outside every LAN prefix served now (a LAN
	// without an address yet, the WAN served meanwhile) wait in the store
	// for their LAN, until they end.
	stored, kept, err := ls.restore(ctx, svc, log)
	if err != nil {
		return err
	}
	// Without a LAN the static forwards cannot be checked against it:
	// they are installed once it has an address.
	forwardsWait := waiting
	if !waiting {
		if err := installForwards(ctx, svc, cfg, det, name); err != nil {
			return err
		}
	}
	aw := &addrWatch{cfg: cfg, det: det, svc: svc, addrs: o.addrs(), detect: detect, log: log}
	// A new SSDP BOOTID for every start of the responders (UDA 1.1
	// §1.2.2), growing even within a second when no store records it.
	var lastBoot uint32
	bootID := func() uint32 {
		lastBoot = max(ls.bootID(clk.Now(), log), lastBoot+1)
		return lastBoot
	}
	if aw.resp, err = startResponders(ctx, cfg, det, svc, clk, bootID(), nil, waiting, o, log); err != nil {
		return err
	}
	// Before the Service closes: no request meets a closed table. UPnP
	// says byebye first.
	defer func() { aw.resp.close() }()
	// policyFor builds the policy of configuration c for what is served
	// now. Serving the WAN interface, the IGD's HTTP ports are on the
	// external address, known only once UPnP serves: a mapping of one
	// would take UPnP away from every client.
	policyFor := func(c *config.Config) (*policy.Policy, error) {
		ext := svc.ExternalAddr()
		return buildPolicy(c, aw.det, ext, slices.Concat(own, aw.resp.wanPorts(aw.det, ext)), log)
	}
	if len(aw.resp.wanPorts(det, ext)) > 0 {
		if pol, err = policyFor(cfg); err != nil {
			return err
		}
		svc.SetPolicy(pol)
	}
	polCfg := cfg // the configuration the policy comes from: the last one reloaded
	aw.served, aw.ports = det, maps.Clone(aw.resp.httpPorts())
	if aw.ports == nil {
		aw.ports = make(map[netip.Addr]uint16)
	}
	aw.restart = func(ctx context.Context, det netif.Detected, ports map[netip.Addr]uint16) (*responders, error) {
		return startResponders(ctx, cfg, det, svc, clk, bootID(), ports, true, o, log)
	}
	// Each change of the LAN brings back the kept leases its policy now
	// allows (the others wait on: a second LAN still down), then the
	// static forwards that waited for a LAN.
	aw.readmit = func() bool {
		if len(kept) > 0 {
			r, still, err := svc.Readmit(ctx, kept)
			kept = still
			if err != nil {
				log.Error("restoring the leases kept for the LAN; the backend catches up later", "err", err)
			}
			log.Info("leases kept for the LAN", "restored", r.Restored, "expired", r.Expired, "refused", r.Refused, "still_kept", r.Kept)
		}
		if forwardsWait {
			if err := installForwards(ctx, svc, polCfg, aw.det, name); err != nil {
				log.Error("static forwards not installed; the next change of the LAN tries again", "err", err)
			} else {
				forwardsWait = false
			}
		}
		return len(kept) == 0 && !forwardsWait
	}
	retry := make(chan struct{}, 1)
	aw.after = func(d time.Duration) {
		clk.AfterFunc(d, func() {
			select {
			case retry <- struct{}{}:
			default: // one pending look is enough
			}
		})
	}
	// repolicy applies what is served now, and the external address, to
	// the policy of the last configuration loaded.
	var forwardsErr string // the forwards' last problem, said once for as long as it lasts
	aw.repolicy = func() {
		pol, err := policyFor(polCfg)
		if err != nil {
			log.Error("policy for the changed addresses rejected; keeping the running one", "err", err)
			return
		}
		if gone := svc.SetPolicy(pol); len(gone) > 0 {
			log.Info("mappings the policy no longer allows withdrawn", "withdrawn", len(gone))
		}
		if forwardsWait {
			return // not installed yet: readmit checks them
		}
		msg := ""
		if _, err := forwards(polCfg, aw.det, svc.ExternalAddr(), name); err != nil {
			msg = err.Error()
		}
		if msg != "" && msg != forwardsErr {
			log.Warn("static forwards no longer fit the LAN or the external address; they stay until a reload or a restart, which will refuse them", "err", msg)
		}
		forwardsErr = msg
	}
	log.Info("berthd serving",
		"wan", det.WAN.Name, "external", ext, "lan", names(det.LAN), "lan_prefixes", det.LANPrefixes,
		"serving_wan", det.ServeWAN, "backend", name, "static_forwards", len(cfg.Forwards),
		"natpmp", cfg.NATPMP.Enabled, "pcp", cfg.PCP.Enabled, "upnp", upnpState(cfg, aw.resp),
		"secure_mode", cfg.Policy.SecureMode, "config", orDefault(cfg.File))
	if stored > 0 {
		o.freeMemory()
	}
	if o.Ready != nil {
		o.Ready(svc)
	}
	// Follow address changes, on the real system only: tests that
	// replace Detect serve made-up interfaces.
	watch := o.WatchAddrs
	if watch == nil && o.Detect == nil {
		watch = netif.WatchAddrs
	}
	addrs := watchAddrs(ctx, aw, watch)
	// A backend that can tell when another tool removed its state (nft
	// flush ruleset, a firewall reload) gets it back at once.
	var lost <-chan string
	if w, ok := be.(interface{ Lost() <-chan string }); ok {
		lost = w.Lost()
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "mappings", svc.Len())
			return nil
		case <-o.Reload:
			// Forwards that wait for a LAN are checked once one is served.
			withForwards := !forwardsWait || len(servedAddrs(aw.det, nil)) > 0
			if c := reload(ctx, svc, aw.det, name, withForwards, policyFor, o, log); c != nil {
				polCfg = c
				forwardsWait = forwardsWait && !withForwards
			}
		case why := <-lost:
			reapply(ctx, svc, why, log)
		case <-addrs:
			aw.changed(ctx)
			if o.AddrsHandled != nil {
				o.AddrsHandled()
			}
		case <-retry:
			aw.relan(ctx, true)
			if o.AddrsHandled != nil {
				o.AddrsHandled()
			}
		}
	}
}

// reapply puts every mapping back into the backend after another program
// removed berth's state from under it.
func reapply(ctx context.Context, svc *portmap.Service, why string, log *slog.Logger) {
	log.Warn("firewall changed under berth; re-applying every mapping", "found", why, "mappings", svc.Len())
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := svc.Sync(ctx); err != nil {
		// The Service retries on its own schedule; the next change to the
		// table, or the next loss, tries again too.
		log.Error("re-applying mappings failed", "err", err)
		return
	}
	log.Info("mappings re-applied", "mappings", svc.Len())
}

// reload re-reads the configuration and applies the policy (built by
// policyFor) and, with withForwards, the static forwards (without, they
// wait for the LAN); it returns the configuration applied, or nil.
// Interface, address and backend settings need a restart; a bad
// configuration is reported and the running one kept.
func reload(ctx context.Context, svc *portmap.Service, det netif.Detected, backendName string, withForwards bool,
	policyFor func(*config.Config) (*policy.Policy, error), o Options, log *slog.Logger) *config.Config {
	if o.Reread == nil {
		return nil
	}
	cfg, err := o.Reread()
	if err != nil {
		log.Error("reload: configuration rejected; keeping the running one", "err", err)
		return nil
	}
	pol, err := policyFor(cfg)
	if err != nil {
		log.Error("reload: policy rejected; keeping the running one", "err", err)
		return nil
	}
	// Forwards first: if they cannot be applied, nothing changes.
	if withForwards {
		if err := installForwards(ctx, svc, cfg, det, backendName); err != nil {
			log.Error("reload: static forwards not applied; keeping the running configuration", "err", err)
			return nil
		}
	}
	gone := svc.SetPolicy(pol)
	log.Info("reloaded", "config", orDefault(cfg.File), "rules", len(pol.Rules()), "static_forwards", len(cfg.Forwards),
		"withdrawn", len(gone))
	return cfg
}

func buildPolicy(cfg *config.Config, det netif.Detected, ext netip.Addr, own []policy.Reserved, log *slog.Logger) (*policy.Policy, error) {
	var reserved []policy.Reserved
	for _, o := range ownPorts {
		reserved = append(reserved, policy.Reserved{Proto: mapping.UDP, Ports: mapping.PortRange{Lo: o.port, Hi: o.port}, Why: "berth"})
	}
	reserved = append(reserved, cfg.Policy.Reserved...)
	reserved = append(reserved, own...)
	router := []netip.Addr{}
	if ext.IsValid() {
		router = append(router, ext)
	}
	for _, ifc := range append([]netif.Interface{det.WAN}, det.LAN...) {
		for _, p := range ifc.Prefixes {
			router = append(router, p.Addr())
		}
	}
	// A virtual gateway address is the router's even while the standby
	// does not carry it.
	router = append(router, cfg.VirtualAddrs...)
	pol, err := policy.New(policy.Config{
		LAN:          det.LANPrefixes,
		Rules:        cfg.Policy.Rules,
		Insecure:     !cfg.Policy.SecureMode,
		MaxPerClient: cfg.Policy.MaxPerClient,
		MaxTotal:     cfg.Policy.MaxTotal,
		Lifetime:     cfg.Policy.Lifetime,
		Reserved:     reserved,
		Router:       router,
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	for _, r := range pol.Rules() {
		log.Debug("policy rule", "rule", r.Text)
	}
	return pol, nil
}

// routerPorts are the ports the router itself listens on where WAN traffic
// arrives: handing them out would shadow a router service.
func routerPorts(det netif.Detected, ext netip.Addr, log *slog.Logger) []policy.Reserved {
	ls, err := netif.ListeningPorts()
	if err != nil {
		log.Warn("cannot read the router's listening ports; not reserving them", "err", err)
		return nil
	}
	var out []policy.Reserved
	for _, l := range ls {
		if a := l.Addr.Addr(); a.IsUnspecified() || onWAN(det, ext, a) {
			p := l.Addr.Port()
			out = append(out, policy.Reserved{Proto: l.Proto, Ports: mapping.PortRange{Lo: p, Hi: p}, Why: "router listens"})
		}
	}
	if len(out) > 0 {
		log.Info("reserved ports the router listens on", "count", len(out))
	}
	return out
}

// onWAN reports whether a is the external address or an address of the
// WAN interface: where traffic for mappings arrives.
func onWAN(det netif.Detected, ext, a netip.Addr) bool {
	return a == ext || slices.ContainsFunc(det.WAN.Prefixes, func(p netip.Prefix) bool { return p.Addr() == a })
}

func isLocal(det netif.Detected, a netip.Addr) bool {
	for _, ifs := range append([]netif.Interface{det.WAN}, det.LAN...) {
		for _, p := range ifs.Prefixes {
			if p.Addr() == a {
				return true
			}
		}
	}
	return a.IsLoopback()
}

// keepKernel reports whether a clean stop leaves the mappings in the
// kernel: asked for, and only with a store to restore them from.
func keepKernel(cfg *config.Config) bool {
	return cfg.Store.KeepKernelState && cfg.Store.Enabled
}

// withRouted adds the configured routed subnets to the LAN prefixes
// (COMPAT S9): every responder, the GENA callback check and the default
// policy rules then serve them. Their requests must still arrive on a LAN
// interface; the responders check that separately.
func withRouted(lan, routed []netip.Prefix, log *slog.Logger) []netip.Prefix {
	out := union(lan, routed)
	for _, p := range out[len(lan):] {
		log.Info("serving a routed LAN subnet", "prefix", p)
	}
	return out
}

// warnAboutExternal says when clients will not like the external address.
func warnAboutExternal(log *slog.Logger, ext netip.Addr) {
	switch {
	case !ext.IsValid():
		log.Warn("no external address: mapping requests will fail until the WAN has one")
	case ext.IsPrivate() || netip.MustParsePrefix("100.64.0.0/10").Contains(ext) || ext.IsLoopback():
		// miniupnpc treats such an IGD as "not connected" (COMPAT.md R5).
		log.Warn("external address is not public: the router is behind another NAT and some UPnP clients will not use it", "external", ext)
	}
}

func names(ifs []netif.Interface) string {
	s := make([]string, len(ifs))
	for i, f := range ifs {
		s[i] = f.Name
	}
	return strings.Join(s, ",")
}

func orDefault(file string) string {
	if file == "" {
		return "(built-in defaults)"
	}
	return file
}

// installForwards checks c's static forwards against the LAN served (det)
// and the external address, and installs them in svc.
func installForwards(ctx context.Context, svc *portmap.Service, c *config.Config, det netif.Detected, backendName string) error {
	fs, err := forwards(c, det, svc.ExternalAddr(), backendName)
	if err != nil {
		return err
	}
	if err := svc.SetStatic(ctx, fs); err != nil {
		return fmt.Errorf("daemon: install static forwards: %w", err)
	}
	return nil
}

// upnpState is UPnP's state for the start-up summary: true, false, or
// "paused" when it is on but has no LAN IPv4 address to serve yet.
func upnpState(cfg *config.Config, r *responders) any {
	if cfg.UPnP.Enabled && (r == nil || r.up == nil) {
		return "paused"
	}
	return cfg.UPnP.Enabled
}
