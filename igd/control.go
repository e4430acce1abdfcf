package igd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/igd/soap"
	"github.com/berthd/berth/internal/mapping"
)

// Lease bounds of WANIPConnection:2 §2.3.10 (quoted in miniupnpd
// upnpsoap.c): a v2 lease of 0 or above a week is a week.
const maxLeaseV2 = 604800

// maxDescription caps the stored description: it ends up in logs, lease
// files and every listing (COMPAT Security: lease-file injection).
const maxDescription = 256

// Codes WANIPConnection:2 defines that package soap does not name.
const (
	invalidVar          = 404 // QueryStateVariable, UPnP DA 1.0 §3.2.2
	readOnly            = 731 // SetConnectionType, as miniupnpd
	portMappingNotFound = 730 // DeletePortMappingRange, GetListOfPortMappings
)

// call is one decoded control request.
type call struct {
	ctx    context.Context
	client netip.Addr // the TCP peer; never taken from the payload
	a      soap.Action
	ns     string // echoed in the response (COMPAT P7)
	v2     bool   // the WANIPConnection:2 namespace: v2 leases and codes
}

type actionFunc func(s *Server, c *call) ([]soap.Arg, error)

// actions lists every action of each service. The WANIPConnection control
// URL takes all v1 and v2 actions in either namespace (COMPAT D7).
var actions = map[string]map[string]actionFunc{
	description.WANIPConnection: {
		"AddPortMapping":              (*Server).addPortMapping,
		"AddAnyPortMapping":           (*Server).addAnyPortMapping,
		"DeletePortMapping":           (*Server).deletePortMapping,
		"DeletePortMappingRange":      (*Server).deletePortMappingRange,
		"GetSpecificPortMappingEntry": (*Server).getSpecificPortMappingEntry,
		"GetGenericPortMappingEntry":  (*Server).getGenericPortMappingEntry,
		"GetListOfPortMappings":       (*Server).getListOfPortMappings,
		"GetExternalIPAddress":        (*Server).getExternalIPAddress,
		"GetStatusInfo":               (*Server).getStatusInfo,
		"GetConnectionTypeInfo":       (*Server).getConnectionTypeInfo,
		"SetConnectionType":           (*Server).setConnectionType,
		"GetNATRSIPStatus":            (*Server).getNATRSIPStatus,
		"RequestConnection":           (*Server).notAuthorized,
		"ForceTermination":            (*Server).notAuthorized,
		"QueryStateVariable":          (*Server).queryStateVariable,
	},
	description.WANCommonInterfaceConfig: {
		"GetCommonLinkProperties": (*Server).getCommonLinkProperties,
		"GetTotalBytesSent":       (*Server).getTotal,
		"GetTotalBytesReceived":   (*Server).getTotal,
		"GetTotalPacketsSent":     (*Server).getTotal,
		"GetTotalPacketsReceived": (*Server).getTotal,
	},
	description.Layer3Forwarding: {
		"GetDefaultConnectionService": (*Server).getDefaultConnectionService,
		"SetDefaultConnectionService": (*Server).setDefaultConnectionService,
	},
}

func (s *Server) dispatch(c *call, service string) ([]soap.Arg, error) {
	f := actions[service][c.a.Name]
	if f == nil {
		// e.g. GetPortMappingNumberOfEntries (COMPAT R3).
		return nil, fmt.Errorf("igd: action %q of %s: %w", c.a.Name, service, soap.NewFault(soap.InvalidAction))
	}
	return f(s, c)
}

// faultCode maps an action's error to its UPnP error code, the only place
// that does (STYLE: one resultCode per protocol). v2 is the namespace of
// the request: 606 and 728 exist only in WANIPConnection:2, so a v1 caller
// gets 718 for a policy denial, which makes it try another port (COMPAT M4,
// miniupnp PR#677), and 501 for exhaustion, which libtorrent treats the same
// way. 725 and 727 are never sent (COMPAT R3), nor 402 for a lease (the
// lease parser cannot fail).
func faultCode(err error, v2 bool) int {
	var f *soap.Fault
	switch {
	case errors.As(err, &f):
		return f.Code
	case errors.Is(err, mapping.ErrConflict):
		return soap.ConflictInMappingEntry
	case errors.Is(err, mapping.ErrNotAuthorized):
		if v2 {
			return soap.ActionNotAuthorized
		}
		return soap.ConflictInMappingEntry
	case errors.Is(err, mapping.ErrNoResources), errors.Is(err, mapping.ErrQuota):
		if v2 {
			return soap.NoPortMapsAvailable
		}
		return soap.ActionFailed
	case errors.Is(err, mapping.ErrNotFound):
		return soap.NoSuchEntryInArray
	case errors.Is(err, mapping.ErrInvalid):
		return soap.InvalidArgs
	}
	// ErrNetworkFailure, ErrUnsupported, backend trouble.
	return soap.ActionFailed
}

func fault(code int, format string, args ...any) error {
	return fmt.Errorf("igd: "+format+": %w", append(args, soap.NewFault(code))...)
}

func protoOf(p soap.Protocol) mapping.Protocol {
	if p == soap.UDP {
		return mapping.UDP
	}
	return mapping.TCP
}

func soapProto(p mapping.Protocol) soap.Protocol {
	if p == mapping.UDP {
		return soap.UDP
	}
	return soap.TCP
}

// remoteHost parses NewRemoteHost: "" is the wildcard; anything else must
// be an IP literal (names are never resolved).
func remoteHost(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fault(soap.InvalidArgs, "NewRemoteHost %q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// cleanDescription drops control characters and caps the length (COMPAT
// R4; miniupnpd 2.3.11 "filter out non printable characters").
func cleanDescription(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\uFFFD' {
			return -1
		}
		return r
	}, s)
	if len(s) > maxDescription {
		s = strings.ToValidUTF8(s[:maxDescription], "")
	}
	return s
}

// mapRequest builds the Mapper request of AddPortMapping and
// AddAnyPortMapping. v2Lease applies the WANIPConnection:2 lease rules.
func (c *call) mapRequest(p soap.PortMapping, v2Lease bool) (mapping.Request, error) {
	if p.NewInternalPort == 0 {
		if c.v2 {
			return mapping.Request{}, fault(soap.WildCardNotPermittedInIntPort, "NewInternalPort 0")
		}
		return mapping.Request{}, fault(soap.InvalidArgs, "NewInternalPort 0")
	}
	internal := c.client
	if p.NewInternalClient != "" {
		// COMPAT P6: an IPv4 literal, never a name to resolve (miniupnpd
		// calls gethostbyname); policy checks it is a LAN host and not the
		// router.
		a, err := netip.ParseAddr(p.NewInternalClient)
		if err != nil || !a.Unmap().Is4() {
			return mapping.Request{}, fault(soap.InvalidArgs, "NewInternalClient %q is not an IPv4 address", p.NewInternalClient)
		}
		internal = a.Unmap()
	}
	remote, err := remoteHost(p.NewRemoteHost)
	if err != nil {
		return mapping.Request{}, err
	}
	lease := time.Duration(p.NewLeaseDuration) * time.Second
	if v2Lease && (p.NewLeaseDuration == 0 || p.NewLeaseDuration > maxLeaseV2) {
		lease = maxLeaseV2 * time.Second
	}
	// v1: 0 stays 0, a "permanent" lease that policy caps (COMPAT M2).
	return mapping.Request{
		Client:   c.client,
		Proto:    protoOf(p.NewProtocol),
		Internal: netip.AddrPortFrom(internal, uint16(p.NewInternalPort)),
		Suggest:  netip.AddrPortFrom(netip.Addr{}, uint16(p.NewExternalPort)),
		Remote:   remote,
		Lifetime: lease,
		Origin:   mapping.Origin{Kind: mapping.KindIGD, Description: cleanDescription(p.NewPortMappingDescription)},
	}, nil
}

// addPortMapping: WANIPConnection:1 §2.4.16 / :2 §2.5.16. Renewing the
// same mapping is idempotent and another client's port is 718 (COMPAT M1).
//
// NewEnabled=0 removes the caller's mapping of that port, if any, and
// succeeds: a disabled mapping forwards nothing, and Windows NATUPnP's
// IStaticPortMapping.Enable(false) sends exactly this. berth keeps no
// disabled entries, so a later listing does not show it.
func (s *Server) addPortMapping(c *call) ([]soap.Arg, error) {
	p, err := c.a.PortMapping()
	if err != nil {
		return nil, err
	}
	if p.NewExternalPort == 0 {
		return nil, fault(soap.WildCardNotPermittedInExtPort, "NewExternalPort 0")
	}
	req, err := c.mapRequest(p, c.v2)
	if err != nil {
		return nil, err
	}
	if !p.NewEnabled {
		err := s.cfg.Mapper.Unmap(c.ctx, req)
		if err != nil && !errors.Is(err, mapping.ErrNotFound) {
			return nil, err
		}
		return nil, nil
	}
	req.Exact = true
	if _, err := s.cfg.Mapper.Map(c.ctx, req); err != nil {
		return nil, err
	}
	return nil, nil
}

// addAnyPortMapping: WANIPConnection:2 §2.5.17. The requested port is a
// hint: the Mapper tries it, then any port policy allows (COMPAT M3).
func (s *Server) addAnyPortMapping(c *call) ([]soap.Arg, error) {
	p, err := c.a.PortMapping()
	if err != nil {
		return nil, err
	}
	if !p.NewEnabled {
		return nil, fault(soap.InvalidArgs, "NewEnabled 0 on AddAnyPortMapping")
	}
	req, err := c.mapRequest(p, true)
	if err != nil {
		return nil, err
	}
	m, err := s.cfg.Mapper.Map(c.ctx, req)
	if err != nil {
		return nil, err
	}
	return []soap.Arg{{Name: "NewReservedPort", Value: soap.UI2(m.External.Port()).String()}}, nil
}

// deletePortMapping: 714 when nothing is mapped there; another host's
// mapping in secure mode is 606 (v2) or 718 (v1) (COMPAT M4).
func (s *Server) deletePortMapping(c *call) ([]soap.Arg, error) {
	k, err := c.a.PortMappingKey()
	if err != nil {
		return nil, err
	}
	remote, err := remoteHost(k.NewRemoteHost)
	if err != nil {
		return nil, err
	}
	err = s.cfg.Mapper.Unmap(c.ctx, mapping.Request{
		Client:  c.client,
		Proto:   protoOf(k.NewProtocol),
		Suggest: netip.AddrPortFrom(netip.Addr{}, uint16(k.NewExternalPort)),
		Remote:  remote,
		Origin:  mapping.Origin{Kind: mapping.KindIGD},
	})
	return nil, err
}

// deletePortMappingRange: WANIPConnection:2 §2.5.19. Only the caller's own
// mappings are deleted, whatever NewManage says: the Security section of
// COMPAT forbids letting one host delete everyone's mappings, and berth
// has no per-host "manage" permission.
func (s *Server) deletePortMappingRange(c *call) ([]soap.Arg, error) {
	r, err := c.a.PortRange()
	if err != nil {
		return nil, err
	}
	if r.NewStartPort > r.NewEndPort {
		return nil, fault(soap.InconsistentParameters, "start %d > end %d", r.NewStartPort, r.NewEndPort)
	}
	ms := s.cfg.Mapper.List(mapping.Filter{
		Proto:  protoOf(r.NewProtocol),
		Client: c.client,
		Ports:  mapping.PortRange{Lo: uint16(r.NewStartPort), Hi: uint16(r.NewEndPort)},
	})
	deleted := 0
	for _, m := range ms {
		if m.Origin.Kind == mapping.KindStatic {
			continue
		}
		err := s.cfg.Mapper.Unmap(c.ctx, mapping.Request{
			Client:  c.client,
			Proto:   m.Proto,
			Suggest: netip.AddrPortFrom(netip.Addr{}, m.External.Port()),
			Remote:  m.Remote,
			Origin:  mapping.Origin{Kind: mapping.KindIGD},
		})
		switch {
		case err == nil:
			deleted++
		case !errors.Is(err, mapping.ErrNotFound): // expired meanwhile: fine
			return nil, err
		}
	}
	if deleted == 0 {
		return nil, fault(portMappingNotFound, "no mapping of %v in %d-%d", c.client, r.NewStartPort, r.NewEndPort)
	}
	return nil, nil
}

// leaseSeconds is the remaining lease (miniupnp#466): 0 for permanent, at
// least 1 for a lease that is about to end, so it never reads as permanent.
func (s *Server) leaseSeconds(m mapping.Mapping) soap.UI4 {
	if m.Permanent() {
		return 0
	}
	d := m.Remaining(s.clk.Now()) / time.Second
	return soap.UI4(max(1, min(d, 1<<32-1)))
}

// descriptionOf is what listings show: the UPnP description, or the
// origin for NAT-PMP and PCP mappings as miniupnpd writes "NAT-PMP 5000 tcp".
func descriptionOf(m mapping.Mapping) string {
	if m.Origin.Description != "" || m.Origin.Kind == mapping.KindIGD {
		return m.Origin.Description
	}
	name := map[mapping.Kind]string{mapping.KindNATPMP: "NAT-PMP", mapping.KindPCP: "PCP"}[m.Origin.Kind]
	if name == "" {
		name = m.Origin.Kind.String()
	}
	return fmt.Sprintf("%s %d %s", name, m.External.Port(), strings.ToLower(m.Proto.String()))
}

func remoteString(m mapping.Mapping) string {
	if !m.Remote.IsValid() {
		return ""
	}
	return m.Remote.String()
}

// getSpecificPortMappingEntry: any host's mapping may be read (as in
// miniupnpd); 714 when none.
func (s *Server) getSpecificPortMappingEntry(c *call) ([]soap.Arg, error) {
	k, err := c.a.PortMappingKey()
	if err != nil {
		return nil, err
	}
	remote, err := remoteHost(k.NewRemoteHost)
	if err != nil {
		return nil, err
	}
	port := uint16(k.NewExternalPort)
	for _, m := range s.cfg.Mapper.List(mapping.Filter{Proto: protoOf(k.NewProtocol), Ports: mapping.PortRange{Lo: port, Hi: port}}) {
		if m.Remote == remote {
			return []soap.Arg{
				{Name: "NewInternalPort", Value: soap.UI2(m.Internal.Port()).String()},
				{Name: "NewInternalClient", Value: m.Internal.Addr().String()},
				{Name: "NewEnabled", Value: "1"},
				{Name: "NewPortMappingDescription", Value: descriptionOf(m)},
				{Name: "NewLeaseDuration", Value: s.leaseSeconds(m).String()},
			}, nil
		}
	}
	return nil, fault(soap.NoSuchEntryInArray, "no mapping of %s %d", k.NewProtocol, port)
}

// getGenericPortMappingEntry enumerates every mapping, whichever protocol
// made it (COMPAT M5), by a stable index into the cached listing; 713 past
// the end ends the client's loop.
func (s *Server) getGenericPortMappingEntry(c *call) ([]soap.Arg, error) {
	g, err := c.a.GetGenericPortMappingEntry()
	if err != nil {
		return nil, err
	}
	m, ok := s.listing.entry(s.cfg.Mapper, int(g.NewPortMappingIndex))
	if !ok {
		return nil, fault(soap.SpecifiedArrayIndexInvalid, "index %d", g.NewPortMappingIndex)
	}
	return []soap.Arg{
		{Name: "NewRemoteHost", Value: remoteString(m)},
		{Name: "NewExternalPort", Value: soap.UI2(m.External.Port()).String()},
		{Name: "NewProtocol", Value: string(soapProto(m.Proto))},
		{Name: "NewInternalPort", Value: soap.UI2(m.Internal.Port()).String()},
		{Name: "NewInternalClient", Value: m.Internal.Addr().String()},
		{Name: "NewEnabled", Value: "1"},
		{Name: "NewPortMappingDescription", Value: descriptionOf(m)},
		{Name: "NewLeaseDuration", Value: s.leaseSeconds(m).String()},
	}, nil
}

// getListOfPortMappings: WANIPConnection:2 §2.5.21 (COMPAT R9). NewManage
// 0 lists the caller's mappings; 1 lists everyone's, which
// GetGenericPortMappingEntry shows anyway.
func (s *Server) getListOfPortMappings(c *call) ([]soap.Arg, error) {
	r, err := c.a.PortRange()
	if err != nil {
		return nil, err
	}
	if r.NewStartPort > r.NewEndPort {
		return nil, fault(soap.InconsistentParameters, "start %d > end %d", r.NewStartPort, r.NewEndPort)
	}
	f := mapping.Filter{
		Proto: protoOf(r.NewProtocol),
		Ports: mapping.PortRange{Lo: uint16(r.NewStartPort), Hi: uint16(r.NewEndPort)},
	}
	if !r.NewManage {
		f.Client = c.client
	}
	ms := s.cfg.Mapper.List(f)
	if len(ms) == 0 {
		return nil, fault(portMappingNotFound, "no mapping in %d-%d", r.NewStartPort, r.NewEndPort)
	}
	n := int(r.NewNumberOfPorts)
	if n == 0 {
		n = soap.DefaultListingSize
	}
	entries := make([]soap.PortMappingEntry, 0, min(n, len(ms)))
	for _, m := range ms[:min(n, len(ms))] {
		entries = append(entries, soap.PortMappingEntry{
			NewRemoteHost:     remoteString(m),
			NewExternalPort:   soap.UI2(m.External.Port()),
			NewProtocol:       soapProto(m.Proto),
			NewInternalPort:   soap.UI2(m.Internal.Port()),
			NewInternalClient: m.Internal.Addr().String(),
			NewEnabled:        true,
			NewDescription:    descriptionOf(m),
			NewLeaseTime:      s.leaseSeconds(m),
		})
	}
	return []soap.Arg{{Name: "NewPortListing", Value: soap.PortListing(entries), CDATA: true}}, nil
}
