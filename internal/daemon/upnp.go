package daemon

import (
	"cmp"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/berthd/berth/igd"
	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/igd/eventing"
	"github.com/berthd/berth/igd/ssdp"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
)

// upnp is the running IGD responder.
type upnp struct {
	http  *igd.Server
	ssdp  *ssdp.Server
	pub   *eventing.Publisher
	lns   []net.Listener
	ports map[netip.Addr]uint16 // HTTP port per LAN address, for LOCATION
	stop  context.CancelFunc    // ends the eventing subscription
}

// errNoIPv4 is startUPnP's error for a LAN without an IPv4 address.
var errNoIPv4 = errors.New("upnp: no IPv4 LAN address to serve on")

// startUPnP serves UPnP IGD on every LAN IPv4 address: the descriptions
// and SOAP control over HTTP (a port per address, named in LOCATION),
// SSDP discovery and GENA eventing. Virtual gateway addresses (COMPAT S4)
// are served whether present or not, and SSDP advertises them in place of
// their interface's own addresses. An address in prefer gets the HTTP
// port named there when it is free (the port it had before a LAN change).
// It returns nil when UPnP is off.
func startUPnP(ctx context.Context, cfg *config.Config, det netif.Detected, svc *portmap.Service,
	clk clock.Clock, bootID uint32, prefer map[netip.Addr]uint16, o Options, log *slog.Logger) (*upnp, error) {
	if !cfg.UPnP.Enabled {
		log.Info("UPnP IGD is switched off")
		return nil, nil
	}
	vips, err := virtualAddrs(cfg, det)
	if err != nil {
		return nil, fmt.Errorf("upnp: %w", err)
	}
	if !hasIPv4(det, vips) || len(det.LANPrefixes) == 0 {
		return nil, errNoIPv4
	}
	udns := deviceUDNs(det.WAN.Name)
	dev := description.Device{UDNs: udns, FriendlyName: "berth gateway", Manufacturer: "berth",
		ModelName: "berth", ModelNumber: "1", Layer3Forwarding: true}
	ctx, stop := context.WithCancel(ctx)
	u := &upnp{ports: make(map[netip.Addr]uint16), stop: stop}
	u.pub = eventing.New(eventing.Config{LAN: det.LANPrefixes, Clock: clk, Logger: log})
	u.pub.Service(description.WANIPConnectionEvent, func() []eventing.Var {
		status, ext := "Connected", svc.ExternalAddr()
		extText := ""
		if ext.IsValid() {
			extText = ext.String()
		} else {
			status = "Disconnected"
		}
		return []eventing.Var{
			{Name: "SystemUpdateID", Value: strconv.FormatUint(svc.Generation()&0xffffffff, 10)},
			{Name: "ExternalIPAddress", Value: extText},
			{Name: "PortMappingNumberOfEntries", Value: strconv.Itoa(svc.Len())},
			{Name: "ConnectionStatus", Value: status},
		}
	})
	u.http = igd.New(igd.Config{Mapper: svc, Device: dev, LAN: det.LANPrefixes, Mode: cfg.UPnP.Mode,
		Clock: clk, Logger: log, Eventing: u.pub, Stats: wanCounters(det.WAN.Name), Rate: float64(cfg.UPnP.RateLimit)})
	var binds []ssdp.Bind
	ifPort := make(map[string]uint16) // the first HTTP port of each interface
	for _, ifc := range det.LAN {
		for _, p := range ifc.Prefixes {
			a := p.Addr()
			if !a.Is4() || isVirtual(vips, a) {
				continue // SSDP and LOCATION are IPv4 here; virtual ones below
			}
			port, err := u.listen(a, cmp.Or(o.UPnPHTTPPort, prefer[a]), false)
			if err != nil && o.UPnPHTTPPort == 0 && prefer[a] != 0 {
				port, err = u.listen(a, 0, false) // taken meanwhile
			}
			if err != nil {
				u.close()
				return nil, err
			}
			if ifPort[ifc.Name] == 0 {
				ifPort[ifc.Name] = port
			}
			binds = append(binds, ssdp.Bind{Interface: ifc.Name, Addr: a})
		}
	}
	for _, v := range vips {
		if !v.Addr.Is4() {
			continue // NAT-PMP/PCP serve it; UPnP is IPv4 here
		}
		// The interface's own port when free, so that the port in
		// LOCATION stays the same whichever address a client found.
		port, err := u.listen(v.Addr, cmp.Or(o.UPnPHTTPPort, prefer[v.Addr], ifPort[v.Interface]), true)
		if err != nil && o.UPnPHTTPPort == 0 {
			port, err = u.listen(v.Addr, 0, true)
		}
		if err != nil {
			u.close()
			return nil, err
		}
		binds = append(binds, ssdp.Bind{Interface: v.Interface, Addr: v.Addr, Virtual: true})
		log.Info("serving a virtual gateway address", "addr", v.Addr, "interface", v.Interface, "http_port", port)
	}
	// SSDP advertises what the descriptions describe: IGD:1 only when
	// forced to v1, IGD:2 (which answers v1 searches too) otherwise.
	version := 2
	if cfg.UPnP.Mode == "v1" {
		version = 1
	}
	sc := ssdp.Config{
		Binds: binds, LAN: det.LANPrefixes, Clock: clk, Logger: log,
		Device: ssdp.Device{Root: udns[0], WANDevice: udns[1], WANConnectionDevice: udns[2],
			IGDVersion: version, WANIPConnectionVersion: version, Layer3Forwarding: true},
		Location: func(lan netip.Addr, s ssdp.Search) string {
			path := description.RootPath
			if cfg.UPnP.Mode == "auto" && searchedV1(s.ST) {
				path = igd.RootPathV1 // COMPAT D7 option b
			}
			return "http://" + netip.AddrPortFrom(lan, u.ports[lan]).String() + path
		},
		// A new BOOTID on every start (UDA 1.1 §1.2.2, COMPAT S8).
		BootID: bootID,
		Port:   o.SSDPPort, Group: o.SSDPGroup, NotifyTo: o.SSDPGroup,
	}
	if u.ssdp, err = ssdp.NewServer(sc); err != nil {
		u.close()
		return nil, fmt.Errorf("upnp: %w", err)
	}
	u.ssdp.Serve()
	sub := svc.Subscribe(64)
	go func() {
		for range sub.C() {
			u.pub.Changed(description.WANIPConnectionEvent) // coalesced by the publisher
		}
	}()
	context.AfterFunc(ctx, sub.Cancel)
	for a, p := range u.ports {
		log.Info("serving UPnP IGD", "http", netip.AddrPortFrom(a, p), "mode", cfg.UPnP.Mode)
	}
	return u, nil
}

// hasIPv4 reports whether the LAN has an IPv4 address for UPnP: its own
// or a virtual one.
func hasIPv4(det netif.Detected, vips []vip) bool {
	for _, ifc := range det.LAN {
		for _, p := range ifc.Prefixes {
			if p.Addr().Is4() {
				return true
			}
		}
	}
	return slices.ContainsFunc(vips, func(v vip) bool { return v.Addr.Is4() })
}

// wanPorts reserves the HTTP ports the IGD serves on the external address
// or another address of the WAN interface.
func (u *upnp) wanPorts(det netif.Detected, ext netip.Addr) []policy.Reserved {
	var out []policy.Reserved
	for a, p := range u.ports {
		if onWAN(det, ext, a) {
			out = append(out, policy.Reserved{Proto: mapping.TCP, Ports: mapping.PortRange{Lo: p, Hi: p}, Why: "berth"})
		}
	}
	return out
}

// listen serves HTTP on a:port (port 0: any free port) and returns the
// port. A virtual address is bound with IP_FREEBIND (ssdp.FreeBind): it
// may be absent, on a standby router, until VRRP or CARP adds it.
func (u *upnp) listen(a netip.Addr, port uint16, virtual bool) (uint16, error) {
	var lc net.ListenConfig
	if virtual {
		lc.Control = ssdp.FreeBind
	}
	ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(a, port).String())
	if err != nil {
		return 0, fmt.Errorf("upnp: listen on %v: %w", a, err)
	}
	u.lns = append(u.lns, ln)
	p := uint16(ln.Addr().(*net.TCPAddr).Port)
	u.ports[a] = p
	go u.http.Serve(ln)
	return p, nil
}

// searchedV1 reports whether a search target names a version-1 type of
// the IGD tree: such a client gets the v1 description.
func searchedV1(st string) bool {
	for _, t := range []string{":InternetGatewayDevice:1", ":WANDevice:1", ":WANConnectionDevice:1", ":WANIPConnection:1"} {
		if strings.HasSuffix(st, t) {
			return true
		}
	}
	return false
}

// close stops SSDP (byebye), eventing and HTTP.
func (u *upnp) close() {
	u.stop()
	if u.ssdp != nil {
		u.ssdp.Close()
	}
	if u.pub != nil {
		u.pub.Close()
	}
	u.http.Close()
	for _, ln := range u.lns {
		ln.Close()
	}
}

// deviceUDNs derives the three device UUIDs from the host name and the
// WAN interface, so they stay the same across restarts: control points
// cache descriptions by UDN.
func deviceUDNs(wan string) [3]string {
	host, _ := os.Hostname()
	var out [3]string
	for i, dev := range []string{"InternetGatewayDevice", "WANDevice", "WANConnectionDevice"} {
		h := sha1.Sum([]byte("berth\x00" + host + "\x00" + wan + "\x00" + dev))
		h[6] = h[6]&0x0f | 0x50 // version 5 (name-based, SHA-1), RFC 9562 §5.5
		h[8] = h[8]&0x3f | 0x80 // variant
		out[i] = fmt.Sprintf("uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}
	return out
}

// wanCounters reads the WAN interface's counters for the GetTotal*
// actions (COMPAT R8), at each request: the kernel's, not berth's. nil
// (the actions answer 501) when there is no WAN interface.
func wanCounters(name string) func() (bytesSent, bytesRecv, pktsSent, pktsRecv uint64, err error) {
	if name == "" {
		return nil
	}
	return func() (uint64, uint64, uint64, uint64, error) {
		c, err := netif.ReadCounters(name)
		return c.BytesSent, c.BytesReceived, c.PacketsSent, c.PacketsReceived, err
	}
}
