package policy

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"regexp"
	"strings"
	"unicode"

	"github.com/berthd/berth/internal/mapping"
)

// Rule is one line of miniupnpd-style permission rules:
//
//	allow|deny EXTPORTS INTERNAL_PREFIX INTPORTS [DESCRIPTION_REGEX]
//
// for example
//
//	allow 1024-65535 192.168.0.0/24 1024-65535
//	deny  0-65535    0.0.0.0/0      0-65535
//	allow 8080       192.168.1.10   80          ^web
//
// Ports are "p" or "lo-hi". The prefix is "a.b.c.d/n", an IPv6 "x::/n", a
// bare address (meaning /32 or /128) or miniupnpd's "a.b.c.d/255.255.255.0"
// mask form; it is stored masked (192.168.0.5/24 becomes 192.168.0.0/24).
// Tokens are separated by any white space. The optional regular expression
// is the rest of the line after the fourth token (Go regexp syntax, so it
// may contain spaces) and is matched against Request.Origin.Description.
type Rule struct {
	// Allow is true for "allow", false for "deny".
	Allow bool
	// External is the external ports the rule speaks for.
	External mapping.PortRange
	// Internal is matched against Request.Internal.Addr() (miniupnpd
	// semantics: the host traffic goes to, not the client asking).
	Internal netip.Prefix
	// IntPorts is matched against Request.Internal.Port().
	IntPorts mapping.PortRange
	// Desc, when not nil, must match Request.Origin.Description for the
	// rule to apply. A request without a description has the empty
	// description, so "^web" never applies to NAT-PMP or PCP requests.
	Desc *regexp.Regexp
	// Text is the rule as written, trimmed; Decision.Rule shows it.
	Text string
}

// LineError is the error ParseRules returns: which line (counting from 1)
// failed and why.
type LineError struct {
	Line int
	Err  error
}

// Error returns "policy: line N: ...".
func (e *LineError) Error() string {
	return fmt.Sprintf("policy: line %d: %v", e.Line, e.Err)
}

// Unwrap returns the reason the line was rejected.
func (e *LineError) Unwrap() error { return e.Err }

// ParseRule parses one rule. The error names the rule and the bad token,
// e.g. `policy: rule "allow 99999 ...": bad external ports "99999": ...`.
func ParseRule(s string) (Rule, error) {
	r, err := parseRule(s)
	if err != nil {
		return Rule{}, fmt.Errorf("policy: %w", err)
	}
	return r, nil
}

// ParseRules parses text holding one rule per line. Blank lines and lines
// whose first non-blank character is '#' are skipped; a '#' later in a line
// is part of the description regexp. The error is a *LineError.
//
// On success the slice is never nil, so a text with no rule gives a Config
// that denies everything rather than one that falls back to DefaultRules.
func ParseRules(text string) ([]Rule, error) {
	rules := []Rule{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		r, err := parseRule(line)
		if err != nil {
			return nil, &LineError{Line: i + 1, Err: err}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// DefaultRules returns miniupnpd's usual rule set for the given LAN:
// "allow 1024-65535 <prefix> 1024-65535" for each prefix, then a deny of
// everything else for IPv4 and for IPv6.
func DefaultRules(lan []netip.Prefix) []Rule {
	high := mapping.PortRange{Lo: 1024, Hi: 65535}
	rules := make([]Rule, 0, len(lan)+2)
	for _, p := range lan {
		p = p.Masked()
		rules = append(rules, Rule{
			Allow:    true,
			External: high,
			Internal: p,
			IntPorts: high,
			Text:     fmt.Sprintf("allow %s %s %s", high, p, high),
		})
	}
	for _, p := range []netip.Prefix{
		netip.PrefixFrom(netip.IPv4Unspecified(), 0),
		netip.PrefixFrom(netip.IPv6Unspecified(), 0),
	} {
		rules = append(rules, Rule{
			External: mapping.AllPorts,
			Internal: p,
			IntPorts: mapping.AllPorts,
			Text:     fmt.Sprintf("deny %s %s %s", mapping.AllPorts, p, mapping.AllPorts),
		})
	}
	return rules
}

// parseRule is ParseRule without the "policy: " prefix, so that
// LineError does not repeat it.
func parseRule(s string) (Rule, error) {
	text := strings.TrimSpace(s)
	if text == "" {
		return Rule{}, errors.New("empty rule")
	}
	bad := func(what, tok string, err error) (Rule, error) {
		if err != nil {
			return Rule{}, fmt.Errorf("rule %q: bad %s %q: %w", text, what, tok, err)
		}
		return Rule{}, fmt.Errorf("rule %q: bad %s %q", text, what, tok)
	}
	var tok [4]string
	rest := text
	names := [4]string{"action", "external ports", "internal prefix", "internal ports"}
	for i := range tok {
		tok[i], rest = nextToken(rest)
		if tok[i] == "" {
			return Rule{}, fmt.Errorf("rule %q: missing %s", text, names[i])
		}
	}
	var r Rule
	switch tok[0] {
	case "allow":
		r.Allow = true
	case "deny":
	default:
		return bad("action", tok[0], errors.New(`want "allow" or "deny"`))
	}
	var err error
	if r.External, err = mapping.ParsePortRange(tok[1]); err != nil {
		return bad("external ports", tok[1], err)
	}
	if r.Internal, err = parsePrefix(tok[2]); err != nil {
		return bad("internal prefix", tok[2], err)
	}
	if r.IntPorts, err = mapping.ParsePortRange(tok[3]); err != nil {
		return bad("internal ports", tok[3], err)
	}
	if rest = strings.TrimSpace(rest); rest != "" {
		if r.Desc, err = regexp.Compile(rest); err != nil {
			return bad("description regexp", rest, err)
		}
	}
	r.Text = text
	return r, nil
}

// nextToken splits off the first white-space separated token of s. It
// uses the same notion of white space as strings.TrimSpace, so a rule's
// Text re-parses to the same tokens.
func nextToken(s string) (tok, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// parsePrefix accepts "addr/bits", "a.b.c.d/m.m.m.m" (a contiguous IPv4
// netmask, as miniupnpd allows) and a bare address. The result is masked.
// IPv4-mapped IPv6 addresses and zones are refused: they would never match
// the plain addresses Decide compares them with.
func parsePrefix(s string) (netip.Prefix, error) {
	a, m, found := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Prefix{}, err
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	if addr.Is4In6() {
		return netip.Prefix{}, errors.New("ipv4-mapped address; write the ipv4 form")
	}
	nbits := addr.BitLen()
	if found {
		if nbits, err = parseBits(m, addr); err != nil {
			return netip.Prefix{}, err
		}
	}
	p, err := addr.Prefix(nbits)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// parseBits parses the part after '/': a decimal prefix length, or for
// IPv4 a dotted netmask whose one bits are contiguous.
func parseBits(m string, addr netip.Addr) (int, error) {
	if strings.Contains(m, ".") {
		mask, err := netip.ParseAddr(m)
		if err != nil || !mask.Is4() || !addr.Is4() {
			return 0, fmt.Errorf("bad netmask %q", m)
		}
		b := mask.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		ones := bits.LeadingZeros32(^v)
		if v != ^uint32(0)<<(32-ones) {
			return 0, fmt.Errorf("netmask %q is not contiguous", m)
		}
		return ones, nil
	}
	// Only plain decimal digits: no sign, no spaces, no leading zeros
	// beyond "0" itself, like netip.ParsePrefix.
	if m == "" || len(m) > 3 || (len(m) > 1 && m[0] == '0') {
		return 0, fmt.Errorf("bad prefix length %q", m)
	}
	n := 0
	for _, c := range m {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad prefix length %q", m)
		}
		n = n*10 + int(c-'0')
	}
	if n > addr.BitLen() {
		return 0, fmt.Errorf("prefix length %d too long for %s", n, addr)
	}
	return n, nil
}
