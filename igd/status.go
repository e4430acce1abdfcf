package igd

import (
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/igd/soap"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

// linkBitRate is what GetCommonLinkProperties reports for both
// directions; berth does not know the WAN's real rate (miniupnpd reports a
// configured or default value as well).
const linkBitRate = 1000000000

// externalIP is the WAN address as GetExternalIPAddress reports it: a
// dotted quad, or "" when unknown (COMPAT R5, WANIPConnection:2 §2.3.13),
// never 0.0.0.0, which tailscale, Apple and miniupnpc reject.
func (s *Server) externalIP() string {
	a := s.cfg.Mapper.ExternalAddr().Unmap()
	if !a.IsValid() || !a.Is4() || a.IsUnspecified() {
		return ""
	}
	return a.String()
}

func (s *Server) connectionStatus() string {
	if s.externalIP() == "" {
		return "Disconnected" // as miniupnpd when the WAN has no address
	}
	return "Connected"
}

func (s *Server) getExternalIPAddress(c *call) ([]soap.Arg, error) {
	return []soap.Arg{{Name: "NewExternalIPAddress", Value: s.externalIP()}}, nil
}

// getStatusInfo: COMPAT R6.
func (s *Server) getStatusInfo(c *call) ([]soap.Arg, error) {
	up := s.clk.Now().Sub(s.start)
	if s.cfg.Uptime != nil {
		up = s.cfg.Uptime()
	}
	return []soap.Arg{
		{Name: "NewConnectionStatus", Value: s.connectionStatus()},
		{Name: "NewLastConnectionError", Value: "ERROR_NONE"},
		{Name: "NewUptime", Value: soap.UI4(max(0, up/time.Second)).String()},
	}, nil
}

// getConnectionTypeInfo: COMPAT R8.
func (s *Server) getConnectionTypeInfo(c *call) ([]soap.Arg, error) {
	return []soap.Arg{
		{Name: "NewConnectionType", Value: "IP_Routed"},
		{Name: "NewPossibleConnectionTypes", Value: "IP_Routed"},
	}, nil
}

// setConnectionType accepts the one type berth has and refuses the others
// with 731 ReadOnly, miniupnpd's answer.
func (s *Server) setConnectionType(c *call) ([]soap.Arg, error) {
	if t := c.a.String("NewConnectionType"); t != "IP_Routed" {
		return nil, fault(readOnly, "connection type %q", t)
	}
	return nil, nil
}

// getNATRSIPStatus: RSIP 0, NAT 1 (COMPAT R7; go-nat checks NAT).
func (s *Server) getNATRSIPStatus(c *call) ([]soap.Arg, error) {
	return []soap.Arg{{Name: "NewRSIPAvailable", Value: "0"}, {Name: "NewNATEnabled", Value: "1"}}, nil
}

// notAuthorized answers RequestConnection and ForceTermination: berth does
// not manage the WAN link, and miniupnpd answers 606 to both.
func (s *Server) notAuthorized(c *call) ([]soap.Arg, error) {
	return nil, fault(soap.ActionNotAuthorized, "%s", c.a.Name)
}

// queryStateVariable serves the legacy UPnP 1.0 action (COMPAT R8).
func (s *Server) queryStateVariable(c *call) ([]soap.Arg, error) {
	var v string
	switch name := c.a.String("varName"); name {
	case "ConnectionStatus":
		v = s.connectionStatus()
	case "ExternalIPAddress":
		v = s.externalIP()
	case "PortMappingNumberOfEntries":
		v = soap.UI2(min(s.listing.len(s.cfg.Mapper), 65535)).String()
	default:
		return nil, fault(invalidVar, "state variable %q", name)
	}
	return []soap.Arg{{Name: "return", Value: v}}, nil
}

func (s *Server) getCommonLinkProperties(c *call) ([]soap.Arg, error) {
	status := "Up"
	if s.externalIP() == "" {
		status = "Down"
	}
	rate := soap.UI4(linkBitRate).String()
	return []soap.Arg{
		{Name: "NewWANAccessType", Value: "Ethernet"},
		{Name: "NewLayer1UpstreamMaxBitRate", Value: rate},
		{Name: "NewLayer1DownstreamMaxBitRate", Value: rate},
		{Name: "NewPhysicalLinkStatus", Value: status},
	}, nil
}

// getTotal answers the four GetTotal* actions. The counters are ui4 and
// wrap, as the specification says and clients expect (COMPAT R8).
func (s *Server) getTotal(c *call) ([]soap.Arg, error) {
	if s.cfg.Stats == nil {
		return nil, fault(soap.ActionFailed, "no interface counters")
	}
	bs, br, ps, pr, err := s.cfg.Stats()
	if err != nil {
		s.log.Debug("no WAN interface counters", "err", err)
		return nil, fault(soap.ActionFailed, "no interface counters")
	}
	what := strings.TrimPrefix(c.a.Name, "Get")
	v := map[string]uint64{
		"TotalBytesSent": bs, "TotalBytesReceived": br,
		"TotalPacketsSent": ps, "TotalPacketsReceived": pr,
	}[what]
	return []soap.Arg{{Name: "New" + what, Value: soap.UI4(uint32(v)).String()}}, nil
}

// defaultConnectionService names the one WANIPConnection, as miniupnpd does.
func (s *Server) defaultConnectionService() string {
	return s.cfg.Device.UDNs[2] + ":WANConnectionDevice:1,urn:upnp-org:serviceId:WANIPConn1"
}

func (s *Server) getDefaultConnectionService(c *call) ([]soap.Arg, error) {
	return []soap.Arg{{Name: "NewDefaultConnectionService", Value: s.defaultConnectionService()}}, nil
}

// setDefaultConnectionService accepts only the service that is already the
// default: there is no other.
func (s *Server) setDefaultConnectionService(c *call) ([]soap.Arg, error) {
	if v := c.a.String("NewDefaultConnectionService"); v != s.defaultConnectionService() {
		return nil, fault(soap.InvalidArgs, "connection service %q", v)
	}
	return nil, nil
}

// Generationer is the optional capability of a Mapper whose table carries
// a generation number (portmap.Service does): it changes whenever the set
// of mappings or their attributes other than the lease change. With it,
// GetGenericPortMappingEntry costs O(1) per index instead of a full List.
type Generationer interface {
	Generation() uint64
}

// KeyLister is the optional capability of a Mapper that lists its keys
// alone, in List's order (portmap.Service does): the listing snapshot is
// then built without a copy of every Mapping.
type KeyLister interface {
	Keys() []mapping.Key
}

// listingIdle is how long a listing snapshot outlives its last use. A
// client walking the indexes asks again within milliseconds; a snapshot
// of 100,000 mappings holds 6.4 MB that a router should not keep once the
// walk is over. Dropping it changes no index: List's order is
// deterministic, so a later walk at the same generation rebuilds the same
// snapshot.
const listingIdle = 30 * time.Second

// listingCache holds the snapshot that GetGenericPortMappingEntry
// indexes, so that indexes stay contiguous and stable while a client
// enumerates (COMPAT M5). It keeps only the keys, a third of a Mapping;
// each entry is looked up again when it is read.
type listingCache struct {
	clk       clock.Clock
	mu        sync.Mutex
	valid     bool
	gen       uint64
	keys      []mapping.Key
	used      time.Time   // the last snapshot call
	releasing bool        // a release is scheduled
	stop      func() bool // cancels the scheduled release
	closed    bool
}

// snapshot returns the keys of the current listing; the slice must not
// be modified. The Mapper must be a Generationer.
func (lc *listingCache) snapshot(m mapping.Mapper, g Generationer) []mapping.Key {
	// Read the generation before listing: a change in between leaves a
	// snapshot newer than gen, which the next call replaces.
	gen := g.Generation()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.valid || lc.gen != gen {
		lc.keys, lc.gen, lc.valid = listKeys(m), gen, true
	}
	lc.used = lc.clk.Now()
	if !lc.releasing && !lc.closed {
		lc.releasing = true
		lc.stop = lc.clk.AfterFunc(listingIdle, lc.release)
	}
	return lc.keys
}

// listKeys returns the keys of m's mappings in List's order.
func listKeys(m mapping.Mapper) []mapping.Key {
	if kl, ok := m.(KeyLister); ok {
		return kl.Keys()
	}
	list := m.List(mapping.Filter{})
	keys := make([]mapping.Key, len(list))
	for i, e := range list {
		keys[i] = e.Key
	}
	return keys
}

// release drops the snapshot once it has gone unused for listingIdle, and
// looks again later otherwise.
func (lc *listingCache) release() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if idle := lc.clk.Now().Sub(lc.used); idle < listingIdle && !lc.closed {
		lc.stop = lc.clk.AfterFunc(listingIdle-idle, lc.release)
		return
	}
	lc.keys, lc.valid, lc.releasing = nil, false, false
}

// close drops the snapshot and cancels its release, so that a closed
// Server is not kept reachable by a pending timer.
func (lc *listingCache) close() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.stop != nil {
		lc.stop()
	}
	lc.keys, lc.valid, lc.releasing, lc.closed = nil, false, false, true
}

func (lc *listingCache) len(m mapping.Mapper) int {
	if g, ok := m.(Generationer); ok {
		return len(lc.snapshot(m, g))
	}
	return len(m.List(mapping.Filter{}))
}

// entry returns the mapping at index i, as it is now: renewals do not
// change the generation, and the lease reported must be the one left
// (miniupnp#466). A mapping removed since the snapshot changed the
// generation, so another try indexes a fresh one; a table changing under
// every try gets 713 after three.
func (lc *listingCache) entry(m mapping.Mapper, i int) (mapping.Mapping, bool) {
	g, ok := m.(Generationer)
	if !ok {
		list := m.List(mapping.Filter{})
		if i < 0 || i >= len(list) {
			return mapping.Mapping{}, false
		}
		return list[i], true
	}
	for range 3 {
		keys := lc.snapshot(m, g)
		if i < 0 || i >= len(keys) {
			return mapping.Mapping{}, false
		}
		k := keys[i]
		port := k.External.Port()
		for _, e := range m.List(mapping.Filter{Proto: k.Proto, Ports: mapping.PortRange{Lo: port, Hi: port}}) {
			if e.Key == k {
				return e, true
			}
		}
	}
	return mapping.Mapping{}, false
}
