package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

var (
	lan4 = netip.MustParsePrefix("192.168.0.0/24")
	lan6 = netip.MustParsePrefix("fd00::/64")
)

// mustRules parses rules, one per line, failing the test on error.
func mustRules(t testing.TB, text string) []Rule {
	t.Helper()
	rules, err := ParseRules(text)
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	return rules
}

// req builds a TCP request from client to internal ("addr:port"), asking
// for external port suggest (0 = any).
func req(client, internal string, suggest uint16, exact bool) mapping.Request {
	return mapping.Request{
		Client:   netip.MustParseAddr(client),
		Proto:    mapping.TCP,
		Internal: netip.MustParseAddrPort(internal),
		Suggest:  netip.AddrPortFrom(netip.Addr{}, suggest),
		Exact:    exact,
		Lifetime: time.Hour,
		Origin:   mapping.Origin{Kind: mapping.KindNATPMP},
	}
}

// with returns r changed by f, to keep table rows short.
func with(r mapping.Request, f func(*mapping.Request)) mapping.Request {
	f(&r)
	return r
}

func TestDecide(t *testing.T) {
	base := Config{LAN: []netip.Prefix{lan4, lan6}, Insecure: true}
	custom := func(rules string) func(*Config) {
		return func(c *Config) { c.Rules = mustRules(t, rules) }
	}
	ordered := custom(`
		deny 8000-8999 192.168.0.0/24 0-65535
		allow 8080 192.168.0.0/24 0-65535
		allow 1024-65535 192.168.0.0/24 0-65535`)
	allowFirst := custom(`
		allow 8080 192.168.0.0/24 0-65535
		deny 8000-8999 192.168.0.0/24 0-65535
		allow 1024-65535 192.168.0.0/24 0-65535`)
	descRules := custom(`
		allow 80 192.168.0.0/24 80 ^web
		allow 2000-2999 192.168.0.0/24 0-65535
		deny 0-65535 0.0.0.0/0 0-65535`)
	reserved := func(c *Config) {
		c.Reserved = []Reserved{
			{Proto: mapping.UDP, Ports: ports(5351, 5351), Why: "berth"},
			{Ports: ports(8000, 8000), Why: "router listens"},
			{Proto: mapping.TCP, Ports: ports(9000, 9010)},
		}
	}
	lifetimes := func(c *Config) {
		c.Lifetime = map[mapping.Kind]Lifetimes{
			mapping.KindNATPMP: {Min: 2 * time.Minute, Max: time.Hour},
			mapping.KindIGD:    {Min: time.Minute},
		}
	}
	quota := func(c *Config) { c.MaxPerClient, c.MaxTotal = 2, 10 }
	secure := func(c *Config) { c.Insecure = false }

	ok := req("192.168.0.5", "192.168.0.5:5000", 0, false)
	pmp := func(d time.Duration) mapping.Request {
		return with(ok, func(r *mapping.Request) { r.Lifetime = d })
	}
	igd := func(d time.Duration) mapping.Request {
		return with(ok, func(r *mapping.Request) { r.Lifetime, r.Origin.Kind = d, mapping.KindIGD })
	}
	desc := func(s string) mapping.Request {
		return with(req("192.168.0.5", "192.168.0.5:80", 80, true), func(r *mapping.Request) {
			r.Origin = mapping.Origin{Kind: mapping.KindIGD, Description: s}
		})
	}
	udp := func(r mapping.Request) mapping.Request {
		return with(r, func(r *mapping.Request) { r.Proto = mapping.UDP })
	}
	defAllow := "allow 1024-65535 192.168.0.0/24 1024-65535"
	defAllow6 := "allow 1024-65535 fd00::/64 1024-65535"
	defDeny := "deny 0-65535 0.0.0.0/0 0-65535"

	tests := []struct {
		name    string
		conf    []func(*Config)
		r       mapping.Request
		u       Usage
		wantErr error // nil = allowed
		rule    string
		life    time.Duration
		ports   []mapping.PortRange
	}{
		// 1. LAN.
		{name: "client outside lan", r: req("10.0.0.5", "192.168.0.5:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "client outside LAN"},
		{name: "zero client", r: with(ok, func(r *mapping.Request) { r.Client = netip.Addr{} }), wantErr: mapping.ErrNotAuthorized, rule: "client outside LAN"},
		{name: "internal outside lan", r: req("192.168.0.5", "10.0.0.5:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "internal address outside LAN"},
		{name: "client checked before internal", r: req("10.0.0.5", "10.0.0.6:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "client outside LAN"},
		{name: "lan checked before secure mode", conf: []func(*Config){secure}, r: req("10.0.0.5", "192.168.0.6:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "client outside LAN"},
		{name: "ipv4-mapped client is ipv4", r: with(ok, func(r *mapping.Request) { r.Client = netip.MustParseAddr("::ffff:192.168.0.5") }), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},

		// 2. Secure mode.
		{name: "secure mode other host", conf: []func(*Config){secure}, r: req("192.168.0.5", "192.168.0.6:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "secure mode"},
		{name: "secure mode self", conf: []func(*Config){secure}, r: ok, rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "no secure mode other host", r: req("192.168.0.5", "192.168.0.6:5000", 0, false), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "secure mode before rules", conf: []func(*Config){secure}, r: req("192.168.0.5", "192.168.0.6:80", 80, true), wantErr: mapping.ErrNotAuthorized, rule: "secure mode"},

		// 3. Rules, default rules.
		{name: "default allow", r: ok, rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "default low internal port", r: req("192.168.0.5", "192.168.0.5:80", 0, false), wantErr: mapping.ErrNotAuthorized, rule: defDeny},
		{name: "default low suggest exact", r: req("192.168.0.5", "192.168.0.5:5000", 80, true), wantErr: mapping.ErrNotAuthorized, rule: defDeny},
		{name: "default low suggest hint", r: req("192.168.0.5", "192.168.0.5:5000", 80, false), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "default suggest allowed", r: req("192.168.0.5", "192.168.0.5:5000", 5000, true), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "ipv6 client", r: req("fd00::5", "[fd00::5]:5000", 0, false), rule: defAllow6, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "ipv6 client outside lan", r: req("fd00:1::5", "[fd00:1::5]:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "client outside LAN"},
		{name: "ipv6 client with zone", conf: []func(*Config){func(c *Config) { c.LAN = []netip.Prefix{netip.MustParsePrefix("fe80::/64")} }},
			r: req("fe80::5%eth0", "[fe80::5%eth0]:5000", 0, false), rule: "allow 1024-65535 fe80::/64 1024-65535", life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "ipv6 internal denied by ipv6 catch-all", conf: []func(*Config){custom("allow 1024-65535 192.168.0.0/24 1024-65535\ndeny 0-65535 ::/0 0-65535")},
			r: req("fd00::5", "[fd00::5]:5000", 0, false), wantErr: mapping.ErrNotAuthorized, rule: "deny 0-65535 ::/0 0-65535"},
		{name: "no rule matched", conf: []func(*Config){custom("allow 1024-65535 192.168.0.128/25 1024-65535")}, r: ok, wantErr: mapping.ErrNotAuthorized, rule: "no rule matched (default deny)"},
		{name: "empty rules deny all", conf: []func(*Config){func(c *Config) { c.Rules = []Rule{} }}, r: ok, wantErr: mapping.ErrNotAuthorized, rule: "no rule matched (default deny)"},
		{name: "exact suggest no rule matched", conf: []func(*Config){custom("allow 2000-2999 192.168.0.0/24 0-65535")}, r: req("192.168.0.5", "192.168.0.5:5000", 5000, true), wantErr: mapping.ErrNotAuthorized, rule: "no rule matched (default deny)"},
		{name: "hint suggest no rule matched", conf: []func(*Config){custom("allow 2000-2999 192.168.0.0/24 0-65535")}, r: req("192.168.0.5", "192.168.0.5:5000", 5000, false), rule: "allow 2000-2999 192.168.0.0/24 0-65535", life: time.Hour, ports: []mapping.PortRange{ports(2000, 2999)}},
		{name: "internal port outside rule", conf: []func(*Config){custom("allow 1024-65535 192.168.0.0/24 22")}, r: ok, wantErr: mapping.ErrNotAuthorized, rule: "no rule matched (default deny)"},

		// 3. Rule order: first match wins, per port.
		{name: "earlier deny beats later allow", conf: []func(*Config){ordered}, r: req("192.168.0.5", "192.168.0.5:5000", 8080, true), wantErr: mapping.ErrNotAuthorized, rule: "deny 8000-8999 192.168.0.0/24 0-65535"},
		{name: "earlier deny carves ports", conf: []func(*Config){ordered}, r: ok, rule: "allow 1024-65535 192.168.0.0/24 0-65535", life: time.Hour, ports: []mapping.PortRange{ports(1024, 7999), ports(9000, 65535)}},
		{name: "earlier allow beats later deny", conf: []func(*Config){allowFirst}, r: req("192.168.0.5", "192.168.0.5:5000", 8080, true), rule: "allow 8080 192.168.0.0/24 0-65535", life: time.Hour, ports: []mapping.PortRange{ports(1024, 7999), ports(8080, 8080), ports(9000, 65535)}},
		{name: "earlier allow, suggest denied, hint", conf: []func(*Config){allowFirst}, r: req("192.168.0.5", "192.168.0.5:5000", 8081, false), rule: "allow 8080 192.168.0.0/24 0-65535", life: time.Hour, ports: []mapping.PortRange{ports(1024, 7999), ports(8080, 8080), ports(9000, 65535)}},
		{name: "suggest names the later allow", conf: []func(*Config){allowFirst}, r: req("192.168.0.5", "192.168.0.5:5000", 9001, true), rule: "allow 1024-65535 192.168.0.0/24 0-65535", life: time.Hour, ports: []mapping.PortRange{ports(1024, 7999), ports(8080, 8080), ports(9000, 65535)}},
		{name: "deny for everything names the deny", conf: []func(*Config){custom("deny 0-65535 192.168.0.5 0-65535\nallow 0-65535 192.168.0.0/24 0-65535")}, r: ok, wantErr: mapping.ErrNotAuthorized, rule: "deny 0-65535 192.168.0.5 0-65535"},
		{name: "deny for another host is skipped", conf: []func(*Config){custom("deny 0-65535 192.168.0.6 0-65535\nallow 0-65535 192.168.0.0/24 0-65535")}, r: ok, rule: "allow 0-65535 192.168.0.0/24 0-65535", life: time.Hour, ports: []mapping.PortRange{mapping.AllPorts}},

		// 3. Description regexp.
		{name: "description matches", conf: []func(*Config){descRules}, r: desc("web server"), rule: "allow 80 192.168.0.0/24 80 ^web", life: time.Hour, ports: []mapping.PortRange{ports(80, 80), ports(2000, 2999)}},
		{name: "description does not match", conf: []func(*Config){descRules}, r: desc("game"), wantErr: mapping.ErrNotAuthorized, rule: "deny 0-65535 0.0.0.0/0 0-65535"},
		{name: "no description never matches a regexp", conf: []func(*Config){descRules}, r: desc(""), wantErr: mapping.ErrNotAuthorized, rule: "deny 0-65535 0.0.0.0/0 0-65535"},

		// 3. Reserved ports, by protocol.
		{name: "reserved udp port exact", conf: []func(*Config){reserved}, r: udp(req("192.168.0.5", "192.168.0.5:5351", 5351, true)), wantErr: mapping.ErrNotAuthorized, rule: "reserved port 5351/udp (berth)"},
		{name: "udp reservation leaves tcp", conf: []func(*Config){reserved}, r: req("192.168.0.5", "192.168.0.5:5351", 5351, true), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{ports(1024, 7999), ports(8001, 8999), ports(9011, 65535)}},
		{name: "reserved udp port hint", conf: []func(*Config){reserved}, r: udp(req("192.168.0.5", "192.168.0.5:5351", 5351, false)), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{ports(1024, 5350), ports(5352, 7999), ports(8001, 65535)}},
		{name: "reserved both protocols", conf: []func(*Config){reserved}, r: req("192.168.0.5", "192.168.0.5:5000", 8000, true), wantErr: mapping.ErrNotAuthorized, rule: "reserved port 8000/tcp (router listens)"},
		{name: "reserved without why", conf: []func(*Config){reserved}, r: req("192.168.0.5", "192.168.0.5:5000", 9005, true), wantErr: mapping.ErrNotAuthorized, rule: "reserved port 9005/tcp"},
		{name: "deny rule named before reservation", conf: []func(*Config){reserved}, r: udp(req("192.168.0.5", "192.168.0.5:5000", 80, true)), wantErr: mapping.ErrNotAuthorized, rule: defDeny},
		{name: "reservation takes every allowed port", conf: []func(*Config){custom("allow 9000-9010 192.168.0.0/24 0-65535\ndeny 0-65535 0.0.0.0/0 0-65535"), reserved},
			r: ok, wantErr: mapping.ErrNotAuthorized, rule: "reserved ports 9000-9010/tcp"},

		// 5. Quotas.
		{name: "below client quota", conf: []func(*Config){quota}, r: ok, u: Usage{Client: 1, Total: 9}, rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "client quota reached", conf: []func(*Config){quota}, r: ok, u: Usage{Client: 2, Total: 2}, wantErr: mapping.ErrQuota, rule: "quota per client (2)"},
		{name: "total quota reached", conf: []func(*Config){quota}, r: ok, u: Usage{Client: 0, Total: 10}, wantErr: mapping.ErrQuota, rule: "quota total (10)"},
		{name: "client quota before total", conf: []func(*Config){quota}, r: ok, u: Usage{Client: 5, Total: 50}, wantErr: mapping.ErrQuota, rule: "quota per client (2)"},
		{name: "rules before quota", conf: []func(*Config){quota}, r: req("192.168.0.5", "192.168.0.5:80", 0, false), u: Usage{Client: 5, Total: 50}, wantErr: mapping.ErrNotAuthorized, rule: defDeny},
		{name: "no quota", r: ok, u: Usage{Client: 1 << 20, Total: 1 << 30}, rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},

		// 6. Lifetime.
		{name: "lifetime within bounds", conf: []func(*Config){lifetimes}, r: pmp(30 * time.Minute), rule: defAllow, life: 30 * time.Minute, ports: []mapping.PortRange{high}},
		{name: "lifetime below min", conf: []func(*Config){lifetimes}, r: pmp(time.Second), rule: defAllow, life: 2 * time.Minute, ports: []mapping.PortRange{high}},
		{name: "lifetime above max", conf: []func(*Config){lifetimes}, r: pmp(48 * time.Hour), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "lifetime zero with max", conf: []func(*Config){lifetimes}, r: pmp(0), rule: defAllow, life: time.Hour, ports: []mapping.PortRange{high}},
		{name: "lifetime zero without max is permanent", conf: []func(*Config){lifetimes}, r: igd(0), rule: defAllow, life: 0, ports: []mapping.PortRange{high}},
		{name: "lifetime without max", conf: []func(*Config){lifetimes}, r: igd(1000 * time.Hour), rule: defAllow, life: 1000 * time.Hour, ports: []mapping.PortRange{high}},
		{name: "lifetime without max below min", conf: []func(*Config){lifetimes}, r: igd(time.Second), rule: defAllow, life: time.Minute, ports: []mapping.PortRange{high}},
		{name: "kind without bounds", conf: []func(*Config){lifetimes}, r: with(pmp(0), func(r *mapping.Request) { r.Origin.Kind = mapping.KindPCP }), rule: defAllow, life: 0, ports: []mapping.PortRange{high}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			for _, f := range tt.conf {
				f(&c)
			}
			p, err := New(c)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			d := p.Decide(tt.r, tt.u)
			checkDecision(t, d, tt.wantErr, tt.rule, tt.life, tt.ports)
		})
	}
}

func checkDecision(t *testing.T, d Decision, wantErr error, rule string, life time.Duration, want []mapping.PortRange) {
	t.Helper()
	if wantErr == nil {
		if !d.Allow || d.Err != nil {
			t.Fatalf("Decide: got Allow=%v Err=%v (rule %q), want allowed", d.Allow, d.Err, d.Rule)
		}
	} else {
		if d.Allow {
			t.Fatalf("Decide: got allowed by %q, want %v", d.Rule, wantErr)
		}
		if !errors.Is(d.Err, wantErr) {
			t.Errorf("Decide: got Err %v, want it to wrap %v", d.Err, wantErr)
		}
		if !strings.HasPrefix(d.Err.Error(), "policy: ") || !strings.Contains(d.Err.Error(), d.Rule) {
			t.Errorf("Decide: got Err %q, want \"policy: \" and the rule %q in it", d.Err, d.Rule)
		}
	}
	if d.Rule != rule {
		t.Errorf("Decide: got Rule %q, want %q", d.Rule, rule)
	}
	if d.Lifetime != life {
		t.Errorf("Decide: got Lifetime %v, want %v", d.Lifetime, life)
	}
	if !slices.Equal(d.Ports, want) {
		t.Errorf("Decide: got Ports %v, want %v", d.Ports, want)
	}
}

func TestDecidePortsAreCallers(t *testing.T) {
	p, err := New(Config{LAN: []netip.Prefix{lan4}})
	if err != nil {
		t.Fatal(err)
	}
	r := req("192.168.0.5", "192.168.0.5:5000", 0, false)
	d := p.Decide(r, Usage{})
	d.Ports[0] = ports(1, 1)
	if got := p.Decide(r, Usage{}).Ports; !slices.Equal(got, []mapping.PortRange{high}) {
		t.Errorf("Decide after caller changed Ports: got %v, want [%v]", got, high)
	}
}

func TestNew(t *testing.T) {
	good := func() Config { return Config{LAN: []netip.Prefix{lan4}} }
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string // "" = valid
	}{
		{name: "minimal", change: func(*Config) {}},
		{name: "no lan: valid, serves no client", change: func(c *Config) { c.LAN = nil }},
		{name: "invalid lan", change: func(c *Config) { c.LAN = []netip.Prefix{{}} }, wantErr: "invalid prefix"},
		{name: "ipv4-mapped lan", change: func(c *Config) { c.LAN = []netip.Prefix{netip.MustParsePrefix("::ffff:192.168.0.0/120")} }, wantErr: "ipv4-mapped"},
		{name: "negative per-client quota", change: func(c *Config) { c.MaxPerClient = -1 }, wantErr: "negative quota"},
		{name: "negative total quota", change: func(c *Config) { c.MaxTotal = -1 }, wantErr: "negative quota"},
		{name: "min above max", change: func(c *Config) {
			c.Lifetime = map[mapping.Kind]Lifetimes{mapping.KindPCP: {Min: time.Hour, Max: time.Minute}}
		}, wantErr: "lifetime for pcp"},
		{name: "min with unbounded max", change: func(c *Config) {
			c.Lifetime = map[mapping.Kind]Lifetimes{mapping.KindPCP: {Min: time.Hour}}
		}},
		{name: "negative min", change: func(c *Config) {
			c.Lifetime = map[mapping.Kind]Lifetimes{mapping.KindIGD: {Min: -time.Second}}
		}, wantErr: "lifetime for upnp"},
		{name: "rule without prefix", change: func(c *Config) { c.Rules = []Rule{{Allow: true, External: high, IntPorts: high}} }, wantErr: "rule 1"},
		{name: "rule with empty ports", change: func(c *Config) {
			c.Rules = []Rule{{Allow: true, External: ports(10, 5), Internal: lan4, IntPorts: high}}
		}, wantErr: "empty port range"},
		{name: "reserved bad protocol", change: func(c *Config) { c.Reserved = []Reserved{{Proto: 1, Ports: ports(1, 1)}} }, wantErr: "bad protocol"},
		{name: "reserved empty", change: func(c *Config) { c.Reserved = []Reserved{{Ports: ports(2, 1)}} }, wantErr: "empty port range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			_, err := New(c)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: got error %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("New: got nil error, want %q", tt.wantErr)
			case err != nil && (!strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "policy: ")):
				t.Errorf("New: got error %q, want \"policy: ...%s...\"", err, tt.wantErr)
			}
		})
	}
}

func TestNewCopiesAndFills(t *testing.T) {
	rules := []Rule{{
		Allow:    true,
		External: high,
		Internal: netip.MustParsePrefix("192.168.0.9/24"),
		IntPorts: high,
		Desc:     regexp.MustCompile("^x"),
	}}
	lan := []netip.Prefix{lan4}
	p, err := New(Config{LAN: lan, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	rules[0].Allow = false
	lan[0] = netip.MustParsePrefix("10.0.0.0/8")

	got := p.Rules()
	if len(got) != 1 {
		t.Fatalf("Rules: got %d rules, want 1", len(got))
	}
	if want := "allow 1024-65535 192.168.0.0/24 1024-65535 ^x"; got[0].Text != want {
		t.Errorf("Rules()[0].Text: got %q, want %q", got[0].Text, want)
	}
	if !got[0].Allow || got[0].Internal != lan4 {
		t.Errorf("Rules()[0]: got Allow=%v Internal=%v, want true %v (a masked copy)", got[0].Allow, got[0].Internal, lan4)
	}
	got[0].Allow = false
	if !p.Rules()[0].Allow {
		t.Errorf("Rules: changing the returned slice changed the policy")
	}
	if !p.SecureMode() {
		t.Errorf("SecureMode: got false, want true")
	}
	d := p.Decide(with(req("192.168.0.5", "192.168.0.5:5000", 0, false), func(r *mapping.Request) { r.Origin.Description = "xbox" }), Usage{})
	if !d.Allow {
		t.Errorf("Decide after caller changed Config: got denied by %q, want allowed", d.Rule)
	}
}

// BenchmarkDecide runs a typical request against ten rules, a description
// regexp and a few reserved ports.
func BenchmarkDecide(b *testing.B) {
	rules := mustRules(b, `
		deny 0-1023 0.0.0.0/0 0-65535
		allow 3074 192.168.0.20 3074 ^Xbox
		deny 6881-6999 192.168.0.0/24 0-65535
		allow 8080 192.168.0.10 80
		deny 0-65535 192.168.0.66 0-65535
		allow 20000-29999 192.168.0.128/25 1024-65535
		deny 30000-30100 192.168.0.0/24 1024-65535
		allow 1024-65535 192.168.0.0/24 1024-65535
		allow 1024-65535 fd00::/64 1024-65535
		deny 0-65535 0.0.0.0/0 0-65535`)
	p, err := New(Config{
		LAN:          []netip.Prefix{lan4, lan6},
		Rules:        rules,
		MaxPerClient: 128,
		MaxTotal:     100000,
		Lifetime:     map[mapping.Kind]Lifetimes{mapping.KindNATPMP: {Min: time.Minute, Max: 24 * time.Hour}},
		Reserved: []Reserved{
			{Proto: mapping.UDP, Ports: ports(5351, 5351), Why: "berth"},
			{Ports: ports(8000, 8000), Why: "router listens"},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		r    mapping.Request
	}{
		{"allow", req("192.168.0.150", "192.168.0.150:25000", 25000, false)},
		{"deny", req("192.168.0.66", "192.168.0.66:5000", 5000, true)},
		{"regexp", with(req("192.168.0.20", "192.168.0.20:3074", 3074, true), func(r *mapping.Request) { r.Origin.Description = "Xbox SystemLink" })},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := p.Decide(bc.r, Usage{Client: 3, Total: 500}); d.Allow != (bc.name != "deny") {
					b.Fatal(fmt.Sprint("unexpected decision ", d.Rule))
				}
			}
		})
	}
}

func TestInternalMustBeAHost(t *testing.T) {
	router := netip.MustParseAddr("192.168.77.1")
	p, err := New(Config{LAN: []netip.Prefix{netip.MustParsePrefix("192.168.77.0/24")}, Router: []netip.Addr{router}})
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("192.168.77.10")
	for _, tc := range []struct {
		internal string
		allow    bool
	}{
		{"192.168.77.10", true},
		{"192.168.77.0", false},
		{"192.168.77.255", false},
		{"192.168.77.1", false},
	} {
		r := mapping.Request{Client: client, Proto: mapping.TCP, Internal: netip.AddrPortFrom(netip.MustParseAddr(tc.internal), 8000),
			Suggest: netip.AddrPortFrom(netip.Addr{}, 8000), Origin: mapping.Origin{Kind: mapping.KindIGD}}
		if d := p.Decide(r, Usage{}); d.Allow != tc.allow {
			t.Errorf("internal %s: got allow=%v (%s), want %v", tc.internal, d.Allow, d.Rule, tc.allow)
		}
	}
}

// TestSecureByDefault: a Config that says nothing about secure mode gives
// a policy under which a client maps ports only to itself.
func TestSecureByDefault(t *testing.T) {
	p, err := New(Config{LAN: []netip.Prefix{lan4}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.SecureMode() {
		t.Error("SecureMode: got false for the zero Config, want true")
	}
	if d := p.Decide(req("192.168.0.5", "192.168.0.6:5000", 0, false), Usage{}); d.Allow || d.Rule != whySecureMode {
		t.Errorf("mapping for another host: got allow=%v by %q, want denied by %q", d.Allow, d.Rule, whySecureMode)
	}
	if d := p.Decide(req("192.168.0.5", "192.168.0.5:5000", 0, false), Usage{}); !d.Allow {
		t.Errorf("mapping for itself: denied by %q", d.Rule)
	}
}

// A policy without LAN prefixes (berthd waiting for its LAN's address)
// refuses every client, as outside the LAN.
func TestNoLANServesNoClient(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(req("192.168.0.5", "192.168.0.5:5000", 0, false), Usage{})
	if d.Allow || !errors.Is(d.Err, mapping.ErrNotAuthorized) || d.Rule != "client outside LAN" {
		t.Fatalf("got %+v, want a refusal: client outside LAN", d)
	}
}
