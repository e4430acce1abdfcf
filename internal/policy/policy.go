// Package policy decides whether a mapping request may proceed: which LAN
// hosts may ask, for which internal and external ports, with which lease
// and within which quotas. Rules follow miniupnpd's permission lines
// (miniupnpd.conf(5) "allow|deny ..."): ordered, first match wins, and
// anything no rule allows is denied.
//
// Everything here is pure: no I/O and no clock. A *Policy is immutable
// after New and safe for concurrent use.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
)

// Lifetimes bounds the lease of one kind of mapping. Max 0 means
// unbounded.
type Lifetimes struct{ Min, Max time.Duration }

// Reserved is a block of external ports no request may map, whatever the
// rules say: berth's own NAT-PMP/PCP port, ports the router listens on, or
// ports the configuration sets aside.
type Reserved struct {
	// Proto is the protocol reserved; 0 means both TCP and UDP.
	Proto mapping.Protocol
	Ports mapping.PortRange
	// Why is shown in Decision.Rule: "berth", "router listens",
	// "configured".
	Why string
}

// Config is what New needs. New copies it; the caller may reuse it.
type Config struct {
	// LAN is the served prefixes: a request's client and its internal
	// address must each be inside one of them. At least one is required.
	LAN []netip.Prefix
	// Rules are tried in order, first match wins. nil means
	// DefaultRules(LAN); an empty non-nil slice denies everything.
	Rules []Rule
	// Insecure turns secure mode off: a client may map ports to other
	// hosts of the LAN, not only to itself (Request.Internal.Addr() ==
	// Request.Client). The zero Config is secure.
	Insecure bool
	// MaxPerClient is the most mappings one client may hold; 0 = no limit.
	MaxPerClient int
	// MaxTotal is the most mappings the table may hold; 0 = no limit.
	MaxTotal int
	// Lifetime bounds the lease per origin kind; a kind that is missing is
	// unbounded.
	Lifetime map[mapping.Kind]Lifetimes
	// Reserved ports are removed from every allowed set.
	Reserved []Reserved
	// Router are the router's own addresses (LAN and WAN): no mapping may
	// send traffic to them (COMPAT P6).
	Router []netip.Addr
}

// Usage is what the table holds now, not counting the mapping the request
// would replace or renew.
type Usage struct{ Client, Total int }

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	// Err is nil when Allow; otherwise it wraps mapping.ErrNotAuthorized or
	// mapping.ErrQuota.
	Err error
	// Rule says what decided: a rule's Text, or "secure mode", "client
	// outside LAN", "internal address outside LAN", "reserved port
	// 5351/udp (berth)", "quota per client (128)", "quota total (100000)",
	// "no rule matched (default deny)".
	Rule string
	// Lifetime is the lease to grant: Request.Lifetime clamped to the
	// kind's bounds, or the kind's Max when Request.Lifetime is 0. 0 means
	// permanent. It is 0 when denied.
	Lifetime time.Duration
	// Ports is the external ports the request may use: sorted, disjoint,
	// reserved ports removed, non-empty when Allow and nil when denied. The
	// caller owns the slice.
	Ports []mapping.PortRange
}

// OutsideLAN reports whether d refused a request only because its client
// or internal address is in no LAN prefix: a host of a LAN not served
// now, which may be served later.
func (d Decision) OutsideLAN() bool {
	return !d.Allow && (d.Rule == whyClientOutside || d.Rule == whyInternalOutside)
}

// What Decision.Rule says when no rule text decided.
const (
	whyClientOutside   = "client outside LAN"
	whyInternalOutside = "internal address outside LAN"
	whySecureMode      = "secure mode"
	whyNotAHost        = "internal address is the router, or a network or broadcast address"
	whyDefaultDeny     = "no rule matched (default deny)"
)

var (
	errClientOutside   = denyError(whyClientOutside)
	errInternalOutside = denyError(whyInternalOutside)
	errSecureMode      = denyError(whySecureMode)
	errNotAHost        = denyError(whyNotAHost)
	errDefaultDeny     = denyError(whyDefaultDeny)
)

func denyError(why string) error {
	return fmt.Errorf("policy: %s: %w", why, mapping.ErrNotAuthorized)
}

// Policy is a validated Config, ready to Decide.
type Policy struct {
	lan      []netip.Prefix
	rules    []Rule
	ruleErrs []error // ruleErrs[i] is the denial error naming rules[i]
	secure   bool
	reserved []Reserved
	router   map[netip.Addr]bool

	maxClient, maxTotal int
	quotaClient         string
	quotaTotal          string
	errQuotaClient      error
	errQuotaTotal       error

	// lifetime is indexed by Kind, which is a uint8, so Decide needs no
	// map lookup.
	lifetime [256]struct {
		Lifetimes
		set bool
	}
}

// New validates c and builds a Policy from a copy of it. It rejects an
// invalid LAN, invalid rules (a bad prefix, an empty port range),
// IPv4-mapped IPv6 prefixes, negative quotas and lifetimes, Min > Max when
// Max > 0, and reserved blocks with an empty range or an unknown protocol.
// An empty LAN serves no client (berthd waiting for its LAN's address).
func New(c Config) (*Policy, error) {
	p := &Policy{
		lan:       make([]netip.Prefix, 0, len(c.LAN)),
		secure:    !c.Insecure,
		maxClient: c.MaxPerClient,
		maxTotal:  c.MaxTotal,
		router:    make(map[netip.Addr]bool, len(c.Router)),
	}
	for _, a := range c.Router {
		p.router[a.Unmap().WithZone("")] = true
	}
	for _, l := range c.LAN {
		if err := checkPrefix(l); err != nil {
			return nil, fmt.Errorf("policy: lan prefix %s: %w", l, err)
		}
		p.lan = append(p.lan, l.Masked())
	}

	rules := c.Rules
	if rules == nil {
		rules = DefaultRules(p.lan)
	}
	p.rules = make([]Rule, len(rules))
	p.ruleErrs = make([]error, len(rules))
	for i, r := range rules {
		if err := checkRule(r); err != nil {
			return nil, fmt.Errorf("policy: rule %d %q: %w", i+1, r.Text, err)
		}
		r.Internal = r.Internal.Masked()
		if r.Text == "" {
			r.Text = formatRule(r)
		}
		p.rules[i] = r
		p.ruleErrs[i] = fmt.Errorf("policy: rule %q: %w", r.Text, mapping.ErrNotAuthorized)
	}

	if c.MaxPerClient < 0 || c.MaxTotal < 0 {
		return nil, fmt.Errorf("policy: negative quota (per client %d, total %d)", c.MaxPerClient, c.MaxTotal)
	}
	p.quotaClient = fmt.Sprintf("quota per client (%d)", c.MaxPerClient)
	p.quotaTotal = fmt.Sprintf("quota total (%d)", c.MaxTotal)
	p.errQuotaClient = fmt.Errorf("policy: %s: %w", p.quotaClient, mapping.ErrQuota)
	p.errQuotaTotal = fmt.Errorf("policy: %s: %w", p.quotaTotal, mapping.ErrQuota)

	for k, l := range c.Lifetime {
		if l.Min < 0 || l.Max < 0 || (l.Max > 0 && l.Min > l.Max) {
			return nil, fmt.Errorf("policy: lifetime for %s: bad bounds min %v max %v", k, l.Min, l.Max)
		}
		p.lifetime[k].Lifetimes = l
		p.lifetime[k].set = true
	}

	p.reserved = make([]Reserved, 0, len(c.Reserved))
	for _, rs := range c.Reserved {
		if rs.Proto != 0 && !rs.Proto.Valid() {
			return nil, fmt.Errorf("policy: reserved %s: bad protocol %s", rs.Ports, rs.Proto)
		}
		if rs.Ports.Empty() {
			return nil, fmt.Errorf("policy: reserved %d-%d: empty port range", rs.Ports.Lo, rs.Ports.Hi)
		}
		p.reserved = append(p.reserved, rs)
	}
	return p, nil
}

// checkPrefix refuses what can never match a request address.
func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("invalid prefix")
	}
	if p.Addr().Is4In6() {
		return errors.New("ipv4-mapped prefix; use the ipv4 form")
	}
	return nil
}

func checkRule(r Rule) error {
	if err := checkPrefix(r.Internal); err != nil {
		return err
	}
	if r.External.Empty() || r.IntPorts.Empty() {
		return errors.New("empty port range")
	}
	return nil
}

// formatRule writes a rule built in Go, which has no Text, the way a
// person would have written it.
func formatRule(r Rule) string {
	action := "deny"
	if r.Allow {
		action = "allow"
	}
	s := fmt.Sprintf("%s %s %s %s", action, r.External, r.Internal, r.IntPorts)
	if r.Desc != nil {
		s += " " + r.Desc.String()
	}
	return s
}

// SecureMode reports whether clients may map only to themselves.
func (p *Policy) SecureMode() bool { return p.secure }

// Rules returns a copy of the rules in force, for logging. Rules given
// without Text have one filled in.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	copy(out, p.rules)
	return out
}

// Decide judges r given the current usage u. The checks run in this order
// and the first that fails decides:
//
//  1. r.Client, then r.Internal.Addr(), must be inside a LAN prefix;
//  2. in secure mode r.Internal.Addr() must equal r.Client;
//  3. the rules and reserved ports give the external ports r may use; a
//     suggested port outside them fails an Exact request, and no port at
//     all fails any request;
//  4. the per-client quota, then the total quota;
//
// and then the lifetime is clamped. Addresses are compared without zone,
// and IPv4-mapped IPv6 addresses as IPv4.
//
// Decide is pure and safe for concurrent use; an allowed decision costs one
// allocation (Ports).
func (p *Policy) Decide(r mapping.Request, u Usage) Decision {
	client := r.Client.Unmap().WithZone("")
	internal := r.Internal.Addr().Unmap().WithZone("")
	if !p.inLAN(client) {
		return deny(whyClientOutside, errClientOutside)
	}
	if !p.inLAN(internal) {
		return deny(whyInternalOutside, errInternalOutside)
	}
	if !p.isHost(internal) {
		return deny(whyNotAHost, errNotAHost)
	}
	if p.secure && internal != client {
		return deny(whySecureMode, errSecureMode)
	}

	var abuf, cbuf [16]mapping.PortRange
	allowed, covered := abuf[:0], cbuf[:0]
	sport := r.Suggest.Port()
	suggestRule, firstAllow, firstDeny := -1, -1, -1
	for i := range p.rules {
		ru := &p.rules[i]
		if !ru.Internal.Contains(internal) || !ru.IntPorts.Contains(r.Internal.Port()) {
			continue
		}
		if ru.Desc != nil && !ru.Desc.MatchString(r.Origin.Description) {
			continue
		}
		if sport != 0 && suggestRule < 0 && ru.External.Contains(sport) {
			suggestRule = i
		}
		if covers(covered, ru.External) {
			continue // every port already decided by an earlier rule
		}
		if ru.Allow {
			allowed = addUncovered(allowed, covered, ru.External)
			if firstAllow < 0 {
				firstAllow = i
			}
		} else if firstDeny < 0 {
			firstDeny = i
		}
		covered = union(covered, ru.External)
		if len(covered) == 1 && covered[0] == mapping.AllPorts {
			break // later rules cannot decide anything
		}
	}
	firstReserved := -1 // the first reserved block that took allowed ports
	for i, rs := range p.reserved {
		if (rs.Proto == 0 || rs.Proto == r.Proto) && overlaps(allowed, rs.Ports) {
			allowed = subtract(allowed, rs.Ports)
			if firstReserved < 0 {
				firstReserved = i
			}
		}
	}

	suggestOK := sport == 0 || holds(allowed, sport)
	if len(allowed) == 0 || (!suggestOK && r.Exact) {
		switch {
		case sport != 0 && suggestRule >= 0 && p.rules[suggestRule].Allow:
			// A rule allowed the port, so a reserved block took it.
			return p.denyReserved(p.reservedHolding(r.Proto, sport), r.Proto, mapping.PortRange{Lo: sport, Hi: sport})
		case sport != 0 && suggestRule >= 0:
			return deny(p.rules[suggestRule].Text, p.ruleErrs[suggestRule])
		case sport != 0:
			return deny(whyDefaultDeny, errDefaultDeny)
		case firstAllow >= 0:
			// Rules allowed ports, but reserved blocks took them all.
			return p.denyReserved(firstReserved, r.Proto, p.reserved[firstReserved].Ports)
		case firstDeny >= 0:
			return deny(p.rules[firstDeny].Text, p.ruleErrs[firstDeny])
		default:
			return deny(whyDefaultDeny, errDefaultDeny)
		}
	}
	rule := p.rules[firstAllow].Text
	if sport != 0 && suggestOK {
		rule = p.rules[suggestRule].Text
	}

	if p.maxClient > 0 && u.Client >= p.maxClient {
		return deny(p.quotaClient, p.errQuotaClient)
	}
	if p.maxTotal > 0 && u.Total >= p.maxTotal {
		return deny(p.quotaTotal, p.errQuotaTotal)
	}

	return Decision{
		Allow:    true,
		Rule:     rule,
		Lifetime: p.clampLifetime(r.Origin.Kind, r.Lifetime),
		Ports:    slices.Clone(allowed),
	}
}

func deny(rule string, err error) Decision {
	return Decision{Rule: rule, Err: err}
}

// denyReserved denies naming reserved block i, which took ports.
func (p *Policy) denyReserved(i int, proto mapping.Protocol, ports mapping.PortRange) Decision {
	if i < 0 {
		return deny(whyDefaultDeny, errDefaultDeny) // unreachable: fail closed
	}
	what := "reserved port"
	if ports.Lo != ports.Hi {
		what = "reserved ports"
	}
	why := fmt.Sprintf("%s %s/%s", what, ports, strings.ToLower(proto.String()))
	if rs := p.reserved[i]; rs.Why != "" {
		why += " (" + rs.Why + ")"
	}
	return deny(why, denyError(why))
}

// reservedHolding returns the index of the first reserved block that
// applies to proto and holds port, or -1.
func (p *Policy) reservedHolding(proto mapping.Protocol, port uint16) int {
	for i, rs := range p.reserved {
		if (rs.Proto == 0 || rs.Proto == proto) && rs.Ports.Contains(port) {
			return i
		}
	}
	return -1
}

// isHost reports whether a can be a LAN host: not the router itself and,
// for IPv4, not the network or broadcast address of its LAN prefix
// (miniupnpd resolves NewInternalClient without such a check).
func (p *Policy) isHost(a netip.Addr) bool {
	if p.router[a] {
		return false
	}
	if !a.Is4() {
		return true
	}
	for _, l := range p.lan {
		if netif.IsNetworkOrBroadcast(l, a) {
			return false
		}
	}
	return true
}

func (p *Policy) inLAN(a netip.Addr) bool {
	for _, l := range p.lan {
		if l.Contains(a) {
			return true
		}
	}
	return false
}

// clampLifetime applies the bounds of kind k to the lease d asked for. A
// request for 0 (permanent) gets Max, which is itself 0 (permanent) when
// unbounded. A negative d, which responders never send, is raised to Min.
func (p *Policy) clampLifetime(k mapping.Kind, d time.Duration) time.Duration {
	b := p.lifetime[k]
	if !b.set {
		return d
	}
	if d == 0 {
		return b.Max
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	if d < b.Min {
		d = b.Min
	}
	return d
}
