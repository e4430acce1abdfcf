package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// summarize turns c into something reflect.DeepEqual can compare: rules
// (which hold compiled regexps) become their text.
type summary struct {
	Config
	RuleTexts []string
}

func summarize(c *Config) summary {
	s := summary{Config: *c}
	if c.Policy.Rules != nil {
		s.RuleTexts = []string{}
	}
	for _, r := range c.Policy.Rules {
		s.RuleTexts = append(s.RuleTexts, r.Text)
	}
	s.Policy.Rules = nil
	s.lines, s.flags = nil, nil // where the values came from: TestErrorf
	return s
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Backend != "auto" || c.LogFormat != "text" || c.LogLevel != slog.LevelInfo {
		t.Errorf("got backend %q format %q level %v, want auto text INFO", c.Backend, c.LogFormat, c.LogLevel)
	}
	p := c.Policy
	if !p.SecureMode || p.MaxPerClient != 256 || p.MaxTotal != 100000 || p.Rules != nil {
		t.Errorf("got policy %+v", p)
	}
	if c.UPnP != (UPnP{Enabled: true, Mode: "auto", RateLimit: 500}) {
		t.Errorf("got upnp %+v, want enabled, auto, 500 requests/s", c.UPnP)
	}
	want := map[mapping.Kind]policy.Lifetimes{
		mapping.KindIGD:     {Max: 7 * 24 * time.Hour},
		mapping.KindNATPMP:  {Min: 120 * time.Second, Max: 24 * time.Hour},
		mapping.KindPCP:     {Min: 120 * time.Second, Max: 24 * time.Hour},
		mapping.KindStatic:  {},
		mapping.KindTrigger: {},
	}
	if !reflect.DeepEqual(p.Lifetime, want) {
		t.Errorf("got lifetimes %v, want %v", p.Lifetime, want)
	}
	// Each call is independent.
	c.Policy.Lifetime[mapping.KindPCP] = policy.Lifetimes{}
	if Default().Policy.Lifetime[mapping.KindPCP].Max != 24*time.Hour {
		t.Error("Default shares its map between calls")
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want func(c *Config) // applied to Default() with File set
	}{
		{"empty", "", func(c *Config) {}},
		{"comments only", "# nothing\n\n", func(c *Config) {}},
		{"top level", `
wan = "eth0"
lan = ["br-lan", "wlan0"]
external_address = "203.0.113.2"
backend = "nft"
`, func(c *Config) {
			c.WAN = "eth0"
			c.LAN = []string{"br-lan", "wlan0"}
			c.ExternalAddr = netip.MustParseAddr("203.0.113.2")
			c.Backend = "nft"
		}},
		{"empty lan means detect", `lan = []`, func(c *Config) {}},
		{"virtual addresses", `virtual_addresses = ["192.168.1.1", "::ffff:10.0.0.1", "fd00:1::1"]`, func(c *Config) {
			c.VirtualAddrs = []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("10.0.0.1"),
				netip.MustParseAddr("fd00:1::1")}
		}},
		{"no virtual addresses", `virtual_addresses = []`, func(c *Config) {}},
		{"ipv6 external, mapped unmapped", `external_address = "::ffff:198.51.100.1"`, func(c *Config) {
			c.ExternalAddr = netip.MustParseAddr("198.51.100.1")
		}},
		{"log", "[log]\nformat = \"json\"\nlevel = \"debug\"\n", func(c *Config) {
			c.LogFormat = "json"
			c.LogLevel = slog.LevelDebug
		}},
		{"log warn", "log = { level = \"warn\" }", func(c *Config) { c.LogLevel = slog.LevelWarn }},
		{"policy", `
[policy]
secure_mode = false
max_per_client = 0
max_total = 5
rules = ["allow 1024-65535 192.168.1.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]
reserved_ports = ["22", "tcp:8000-8100", "udp:53"]
`, func(c *Config) {
			c.Policy.SecureMode = false
			c.Policy.MaxPerClient = 0
			c.Policy.MaxTotal = 5
			c.Policy.Rules = []policy.Rule{
				{Text: "allow 1024-65535 192.168.1.0/24 1024-65535"},
				{Text: "deny 0-65535 0.0.0.0/0 0-65535"},
			}
			c.Policy.Reserved = []policy.Reserved{
				{Ports: mapping.PortRange{Lo: 22, Hi: 22}, Why: "configured"},
				{Proto: mapping.TCP, Ports: mapping.PortRange{Lo: 8000, Hi: 8100}, Why: "configured"},
				{Proto: mapping.UDP, Ports: mapping.PortRange{Lo: 53, Hi: 53}, Why: "configured"},
			}
		}},
		{"empty rules deny all", "[policy]\nrules = []\n", func(c *Config) { c.Policy.Rules = []policy.Rule{} }},
		{"lifetimes", `
[policy.lifetime.natpmp]
min = "60s"
max = "1h"
[policy.lifetime.upnp]
max = "0s"
[policy.lifetime.pcp]
min = "0s"
`, func(c *Config) {
			c.Policy.Lifetime[mapping.KindNATPMP] = policy.Lifetimes{Min: time.Minute, Max: time.Hour}
			c.Policy.Lifetime[mapping.KindIGD] = policy.Lifetimes{}
			c.Policy.Lifetime[mapping.KindPCP] = policy.Lifetimes{Max: 24 * time.Hour}
		}},
		{"forwards", `
[[forward]]
name = "web"
proto = "tcp"
external_port = 8080
internal = "192.168.1.10:80"
[[forward]]
name = "web-office"
proto = "tcp"
external_port = 8080
internal = "192.168.1.11:80"
remote = "198.51.100.7"
[[forward]]
name = "dns"
proto = "udp"
external_port = 8080
internal = "[fd00::53]:53"
`, func(c *Config) {
			c.Forwards = []Forward{
				{Name: "web", Proto: mapping.TCP, External: 8080, Internal: netip.MustParseAddrPort("192.168.1.10:80")},
				{Name: "web-office", Proto: mapping.TCP, External: 8080, Internal: netip.MustParseAddrPort("192.168.1.11:80"),
					Remote: netip.MustParseAddr("198.51.100.7")},
				{Name: "dns", Proto: mapping.UDP, External: 8080, Internal: netip.MustParseAddrPort("[fd00::53]:53")},
			}
		}},
		{"inline forwards", `forward = [{name = "a", proto = "udp", external_port = 1, internal = "10.0.0.1:1"}]`, func(c *Config) {
			c.Forwards = []Forward{{Name: "a", Proto: mapping.UDP, External: 1, Internal: netip.MustParseAddrPort("10.0.0.1:1")}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("berth.toml", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			want.File = "berth.toml"
			tt.want(want)
			if g, w := summarize(got), summarize(want); !reflect.DeepEqual(g, w) {
				t.Errorf("got  %+v\nwant %+v", g, w)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		line  int
		field string
		msg   string // a substring of the error
	}{
		// Types.
		{"wan not string", "wan = 5", 1, "wan", "want a string, got integer 5"},
		{"lan not array", `lan = "eth1"`, 1, "lan", "want an array of strings"},
		{"lan element type", "lan = [\n\"a\",\n3]", 3, "lan[1]", "want a string, got integer 3"},
		{"log not table", `log = "json"`, 1, "log", "want a table"},
		{"secure_mode type", "[policy]\nsecure_mode = \"yes\"", 2, "policy.secure_mode", "want true or false"},
		{"quota type", "[policy]\nmax_total = 1.5", 2, "policy.max_total", "want an integer, got a float"},
		{"forward not array", "forward = 3", 1, "forward", "want an array of tables ([[forward]])"},
		{"forward element not table", `forward = [1]`, 1, "forward[0]", "want a table"},
		{"date-time", "wan = 1979-05-27T07:32:00Z", 1, "wan", "got a date-time"},
		// Interface names.
		{"wan empty", `wan = ""`, 1, "wan", "empty interface name"},
		{"wan too long", `wan = "abcdefghijklmnop"`, 1, "wan", "longer than 15 bytes"},
		{"wan slash", `wan = "a/b"`, 1, "wan", "has a '/'"},
		{"wan dot", `wan = ".."`, 1, "wan", "bad interface name"},
		{"lan bad name", "\n\nlan = [\"br0\",\n  \"br 1\"]", 4, "lan[1]", "space"},
		{"lan duplicate", `lan = ["br0", "br0"]`, 1, "lan[1]", "listed twice"},
		// External address.
		{"external bad", `external_address = "203.0.113"`, 1, "external_address", "bad ip address"},
		{"external unspecified", `external_address = "0.0.0.0"`, 1, "external_address", "unspecified"},
		{"external multicast", `external_address = "ff02::1"`, 1, "external_address", "multicast"},
		{"external broadcast", `external_address = "255.255.255.255"`, 1, "external_address", "broadcast"},
		{"external zone", `external_address = "fe80::1%eth0"`, 1, "external_address", "zones"},
		// Virtual gateway addresses (COMPAT S4).
		{"virtual not array", `virtual_addresses = "192.168.1.1"`, 1, "virtual_addresses", "want an array of strings"},
		{"virtual element type", "virtual_addresses = [\n\"192.168.1.1\",\n1]", 3, "virtual_addresses[1]", "want a string, got integer 1"},
		{"virtual bad", "\nvirtual_addresses = [\"192.168.1\"]", 2, "virtual_addresses[0]", `virtual address: bad ip address "192.168.1"`},
		{"virtual prefix", `virtual_addresses = ["192.168.1.1/24"]`, 1, "virtual_addresses[0]", "bad ip address"},
		{"virtual name", `virtual_addresses = ["gw.lan"]`, 1, "virtual_addresses[0]", "bad ip address"},
		{"virtual unspecified", `virtual_addresses = ["0.0.0.0"]`, 1, "virtual_addresses[0]", "unspecified"},
		{"virtual multicast", `virtual_addresses = ["224.0.0.18"]`, 1, "virtual_addresses[0]", "multicast"},
		{"virtual broadcast", `virtual_addresses = ["255.255.255.255"]`, 1, "virtual_addresses[0]", "broadcast"},
		{"virtual zone", `virtual_addresses = ["fe80::1%br-lan"]`, 1, "virtual_addresses[0]", "zones are not allowed"},
		{"virtual loopback", `virtual_addresses = ["127.0.0.1"]`, 1, "virtual_addresses[0]", "not loopback or link-local"},
		{"virtual link-local", `virtual_addresses = ["169.254.0.1"]`, 1, "virtual_addresses[0]", "not loopback or link-local"},
		{"virtual ipv6 link-local", `virtual_addresses = ["fe80::1"]`, 1, "virtual_addresses[0]", "not loopback or link-local"},
		{"virtual duplicate", "virtual_addresses = [\n  \"192.168.1.1\",\n  \"::ffff:192.168.1.1\",\n]", 3,
			"virtual_addresses[1]", "virtual address 192.168.1.1 listed twice"},
		// Enumerations.
		{"backend", `backend = "iptables"`, 1, "backend", `unknown backend "iptables" (want auto, relay, nft)`},
		{"log format", "[log]\nformat = \"xml\"", 2, "log.format", "unknown log format"},
		{"log level", "[log]\n\nlevel = \"INFO\"", 3, "log.level", "unknown log level"},
		// Quotas.
		{"negative quota", "[policy]\nmax_per_client = -1", 2, "policy.max_per_client", "negative limit -1"},
		{"huge quota", "[policy]\nmax_total = 9999999999", 2, "policy.max_total", "too large"},
		// Rules and reserved ports.
		{"bad rule", "[policy]\nrules = [\n  \"allow 1024-65535 192.168.1.0/24 1024-65535\",\n  \"allow 99999 192.168.1.0/24 1-2\",\n]",
			4, "policy.rules[1]", `bad external ports "99999"`},
		{"rule not string", "[policy]\nrules = [1]", 2, "policy.rules[0]", "want a string"},
		{"reserved proto", "[policy]\nreserved_ports = [\"sctp:1\"]", 2, "policy.reserved_ports[0]", `unknown protocol "sctp"`},
		{"reserved range", "[policy]\nreserved_ports = [\"9-1\"]", 2, "policy.reserved_ports[0]", "low end above high end"},
		{"reserved empty", "[policy]\nreserved_ports = [\"\"]", 2, "policy.reserved_ports[0]", "bad port"},
		// Lifetimes.
		{"bad duration", "[policy.lifetime.pcp]\nmin = \"2 minutes\"", 2, "policy.lifetime.pcp.min", "bad duration"},
		{"negative duration", "[policy.lifetime.pcp]\nmax = \"-1s\"", 2, "policy.lifetime.pcp.max", "negative duration"},
		{"duration int", "[policy.lifetime.pcp]\nmax = 60", 2, "policy.lifetime.pcp.max", "want a string"},
		{"min above max", "[policy.lifetime.upnp]\nmin = \"2h\"\nmax = \"1h\"", 3, "policy.lifetime.upnp.max", "min 2h0m0s above max 1h0m0s"},
		{"min above default max", "[policy.lifetime.natpmp]\nmin = \"48h\"", 2, "policy.lifetime.natpmp.min", "above max 24h0m0s"},
		{"max below default min", "[policy.lifetime.natpmp]\nmax = \"60s\"", 2, "policy.lifetime.natpmp.max", "min 2m0s above max 1m0s"},
		// Forwards.
		{"forward missing name", "[[forward]]\nproto = \"tcp\"\nexternal_port = 1\ninternal = \"10.0.0.1:1\"",
			1, "forward[0].name", "missing"},
		{"forward empty name", fwd(`name = " "`), 2, "forward[0].name", "empty name"},
		{"forward control name", fwd(`name = "a\u0007"`), 2, "forward[0].name", "control character"},
		{"forward missing proto", "[[forward]]\nname = \"a\"\nexternal_port = 1\ninternal = \"10.0.0.1:1\"",
			1, "forward[0].proto", `missing (want "tcp" or "udp")`},
		{"forward bad proto", fwd(`proto = "TCP"`), 3, "forward[0].proto", "unknown protocol"},
		{"forward port 0", fwd("external_port = 0"), 4, "forward[0].external_port", "out of range"},
		{"forward port big", fwd("external_port = 65536"), 4, "forward[0].external_port", "out of range"},
		{"forward port string", fwd(`external_port = "80"`), 4, "forward[0].external_port", "want an integer"},
		{"forward missing internal", "[[forward]]\nname = \"a\"\nproto = \"tcp\"\nexternal_port = 1",
			1, "forward[0].internal", "missing"},
		{"forward internal no port", fwd(`internal = "10.0.0.1"`), 5, "forward[0].internal", "bad address:port"},
		{"forward internal port 0", fwd(`internal = "10.0.0.1:0"`), 5, "forward[0].internal", "port 0"},
		{"forward internal multicast", fwd(`internal = "224.0.0.1:80"`), 5, "forward[0].internal", "multicast"},
		{"forward internal unspecified", fwd(`internal = "[::]:80"`), 5, "forward[0].internal", "unspecified"},
		{"forward remote", fwd(`remote = "example.com"`), 6, "forward[0].remote", "bad ip address"},
		{"forward duplicate name", fwd("") + "\n" + fwd(`external_port = 2`), 7, "forward[1].name", `name "a" already used by forward[0]`},
		{"forward duplicate key", fwd("") + "\n" + fwd(`name = "b"`), 9, "forward[1].external_port", "TCP port 1 already forwarded by forward[0]"},
		{"forward duplicate key with remote", fwd(`remote = "198.51.100.1"`) + "\n" + fwd(`name = "b"`, `remote = "198.51.100.1"`),
			10, "forward[1].external_port", "already forwarded"},
		// Unknown keys.
		{"unknown top", "wan = \"eth0\"\nwna = \"eth1\"", 2, "wna", "unknown key"},
		{"unknown case", `WAN = "eth0"`, 1, "WAN", "unknown key"},
		{"unknown table", "\n[fire]\nx = 1", 2, "fire", "unknown key"},
		{"unknown in log", "[log]\nformat = \"text\"\ncolour = true", 3, "log.colour", "unknown key"},
		{"unknown in policy", "[policy]\n\nsecure = true", 3, "policy.secure", "unknown key"},
		{"unknown lifetime kind", "[policy.lifetime.static]\nmax = \"1h\"", 1, "policy.lifetime.static", "unknown key"},
		{"unknown in lifetime", "[policy.lifetime.pcp]\nmax = \"1h\"\nmaximum = \"2h\"", 3, "policy.lifetime.pcp.maximum", "unknown key"},
		{"unknown in forward", fwd("") + "\n[[forward]]\nname = \"b\"\nproto = \"udp\"\nexternal_port = 1\ninternal = \"10.0.0.1:1\"\nport = 5",
			11, "forward[1].port", "unknown key"},
		{"unknown dotted", "policy.secure_mode = true\npolicy.foo.bar = 1", 2, "policy.foo", "unknown key"},
		{"unknown quoted", `"a.b" = 1`, 1, `"a.b"`, "unknown key"},
		{"unknown inline", "log = {format = \"text\",\n oops = 1}", 2, "log.oops", "unknown key"},
		{"unknown after multiline string", "x = \"\"\"\nwan = 1\n\"\"\"\n", 1, "x", "unknown key"},
		// Syntax.
		{"syntax", "wan = \"eth0\"\n\nlan = [\"a\"\n[policy]", 4, "", "toml syntax"},
		{"syntax duplicate key", "wan = \"a\"\nwan = \"b\"", 2, "", "toml syntax"},
		{"syntax bad utf-8", "wan = \"\xff\"", 1, "", "toml syntax"},
		// Fuzz crasher testdata/fuzz/FuzzConfig/41c4c1a6a1407b08: the
		// reason held a newline; errors are one line.
		{"syntax error quoting a newline", "0=0b\n", 1, "", `not a binary number: '0b\n'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("berth.toml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			if e.File != "berth.toml" || e.Line != tt.line || e.Field != tt.field {
				t.Errorf("got file %q line %d field %q, want berth.toml line %d field %q (%v)",
					e.File, e.Line, e.Field, tt.line, tt.field, err)
			}
			if !strings.Contains(e.Error(), tt.msg) {
				t.Errorf("got %q, want it to contain %q", e.Error(), tt.msg)
			}
		})
	}
}

// fwd returns a valid [[forward]] table (name, proto, external_port,
// internal on lines 2-5) with each override replacing the line of its key
// or, for a new key, added at the end.
func fwd(overrides ...string) string {
	lines := []string{"[[forward]]", `name = "a"`, `proto = "tcp"`, "external_port = 1", `internal = "10.0.0.1:1"`}
	for _, o := range overrides {
		if o == "" {
			continue
		}
		key, _, _ := strings.Cut(o, " =")
		replaced := false
		for i, l := range lines {
			if strings.HasPrefix(l, key+" =") {
				lines[i], replaced = o, true
			}
		}
		if !replaced {
			lines = append(lines, o)
		}
	}
	return strings.Join(lines, "\n")
}

func TestParseSeveralErrors(t *testing.T) {
	src := "backend = \"x\"\nwan = \"\"\n[log]\nlevel = \"loud\"\n"
	_, err := Parse("b.toml", []byte(src))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := "b.toml:1: backend: unknown backend \"x\" (want auto, relay, nft)\n" +
		"b.toml:2: wan: empty interface name\n" +
		"b.toml:4: log.level: unknown log level \"loud\" (want debug, info, warn, error)"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 1 {
		t.Errorf("errors.As found %v, want the line 1 error", e)
	}
}

func TestSyntaxErrorUnwrap(t *testing.T) {
	_, err := Parse("b.toml", []byte("a = "))
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want it to wrap toml.ParseError", err)
	}
}

func TestErrorFormat(t *testing.T) {
	reason := errors.New("bad")
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "b.toml", Line: 12, Field: "policy.rules[1]", Err: reason}, "b.toml:12: policy.rules[1]: bad"},
		{Error{File: "b.toml", Field: "wan", Err: reason}, "b.toml: wan: bad"},
		{Error{File: "b.toml", Err: reason}, "b.toml: bad"},
		{Error{Line: 3, Field: "wan", Err: reason}, "line 3: wan: bad"},
		{Error{Field: "flag -backend", Err: reason}, "flag -backend: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
		if !errors.Is(&tt.e, reason) {
			t.Errorf("%q does not unwrap to its reason", tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	c, err := Load("")
	if err != nil || !reflect.DeepEqual(summarize(c), summarize(Default())) {
		t.Errorf(`Load("") = %+v, %v; want Default()`, c, err)
	}

	missing := filepath.Join(t.TempDir(), "nope.toml")
	_, err = Load(missing)
	var e *Error
	if !errors.As(err, &e) || e.File != missing || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a *Error for the file wrapping fs.ErrNotExist", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("\nbackend = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := bad + ":2: backend: want a string, got integer 1"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestExample loads the documented example, which README.md shows.
func TestExample(t *testing.T) {
	c, err := Load("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, c)
	if c.WAN != "eth0" || len(c.LAN) != 1 || c.ExternalAddr != netip.MustParseAddr("203.0.113.2") {
		t.Errorf("got wan %q lan %q external %s", c.WAN, c.LAN, c.ExternalAddr)
	}
	if c.NFT != (NFT{Hairpin: true, PreserveSourcePort: true}) {
		t.Errorf("got nft %+v, want the example's hairpin and preservation on", c.NFT)
	}
	if want := []netip.Addr{netip.MustParseAddr("192.168.1.1")}; !reflect.DeepEqual(c.VirtualAddrs, want) {
		t.Errorf("got virtual addresses %v, want %v", c.VirtualAddrs, want)
	}
	if len(c.Policy.Rules) != 4 || len(c.Policy.Reserved) != 3 || len(c.Forwards) != 3 {
		t.Errorf("got %d rules, %d reserved, %d forwards; want 4, 3, 3",
			len(c.Policy.Rules), len(c.Policy.Reserved), len(c.Forwards))
	}
	// The example documents the defaults: apart from the interfaces,
	// address, rules, reserved ports and forwards it must equal Default().
	d := Default()
	d.File, d.WAN, d.LAN, d.ExternalAddr = c.File, c.WAN, c.LAN, c.ExternalAddr
	d.Policy.Rules, d.Policy.Reserved, d.Forwards = c.Policy.Rules, c.Policy.Reserved, c.Forwards
	d.LANRouted, d.Store.Dir, d.VirtualAddrs = c.LANRouted, c.Store.Dir, c.VirtualAddrs
	if !reflect.DeepEqual(summarize(c), summarize(d)) {
		t.Errorf("example's documented defaults differ from Default():\n got %+v\nwant %+v", summarize(c), summarize(d))
	}
}

func TestResponderTables(t *testing.T) {
	c, err := Parse("r.toml", []byte("[natpmp]\nenabled = false\n[pcp]\nallow_third_party = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATPMP.Enabled || !c.PCP.Enabled || !c.PCP.AllowThirdParty {
		t.Fatalf("got natpmp %+v pcp %+v, want natpmp off, pcp on with third party", c.NATPMP, c.PCP)
	}
	_, err = Parse("r.toml", []byte("[pcp]\nenabled = true\nthird_party = true\n"))
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 || e.Field != "pcp.third_party" {
		t.Fatalf("got %v, want r.toml:3: pcp.third_party unknown key", err)
	}
	_, err = Parse("r.toml", []byte("[natpmp]\nenabled = \"yes\"\n"))
	if !errors.As(err, &e) || e.Line != 2 || e.Field != "natpmp.enabled" {
		t.Fatalf("got %v, want r.toml:2: natpmp.enabled", err)
	}
}

func TestLANRouted(t *testing.T) {
	c, err := Parse("r.toml", []byte("lan_routed = [\"10.20.3.4/16\", \"fd00:1::/64\", \"10.20.0.0/16\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00:1::/64")}
	if !reflect.DeepEqual(c.LANRouted, want) {
		t.Errorf("got %v, want %v (masked, without repeats)", c.LANRouted, want)
	}
	for _, tt := range []struct{ value, want string }{
		{`"0.0.0.0/0"`, "r.toml:2: lan_routed[1]: routed subnet \"0.0.0.0/0\": a /0 would serve every address as LAN"},
		{`"10.1.2.3"`, "r.toml:2: lan_routed[1]: routed subnet \"10.1.2.3\": want an address/length such as 10.20.0.0/16"},
		{`"224.0.0.0/4"`, "r.toml:2: lan_routed[1]: routed subnet \"224.0.0.0/4\": not a unicast subnet"},
		{`"127.0.0.0/8"`, "r.toml:2: lan_routed[1]: routed subnet \"127.0.0.0/8\": not a unicast subnet"},
	} {
		_, err := Parse("r.toml", []byte("\nlan_routed = [\"10.9.0.0/16\", "+tt.value+"]\n"))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v, want %s", tt.value, err, tt.want)
		}
	}
}

func TestStoreTable(t *testing.T) {
	c := Default()
	if !c.Store.Enabled || c.Store.Dir != "" || c.Store.KeepKernelState {
		t.Fatalf("default store %+v, want enabled in the default directory, kernel state removed", c.Store)
	}
	c, err := Parse("s.toml", []byte("[store]\nenabled = false\ndir = \"/srv/berth\"\nkeep_kernel_state = true\nsync_every_answer = true\n"))
	if err != nil || c.Store != (Store{Dir: "/srv/berth", KeepKernelState: true, SyncEveryAnswer: true}) {
		t.Fatalf("got %+v, %v", c.Store, err)
	}
	_, err = Parse("s.toml", []byte("[store]\ndir = \"state\"\n"))
	if want := `s.toml:2: store.dir: directory "state": want an absolute path`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	c, err = FromArgs([]string{"-state-dir", "none"}, nil)
	if err != nil || c.Store.Enabled {
		t.Fatalf("-state-dir none: got %+v, %v; want disabled", c.Store, err)
	}
	c, err = FromArgs([]string{"-state-dir", "/tmp/b"}, nil)
	if err != nil || !c.Store.Enabled || c.Store.Dir != "/tmp/b" {
		t.Fatalf("-state-dir /tmp/b: got %+v, %v", c.Store, err)
	}
	if _, err = FromArgs([]string{"-state-dir", "rel"}, nil); err == nil {
		t.Fatal("-state-dir rel: want an error for a relative path")
	}
}

func TestUPnPTable(t *testing.T) {
	c, err := Parse("u.toml", []byte("[upnp]\nenabled = false\nmode = \"v1\"\n"))
	if err != nil || c.UPnP.Enabled || c.UPnP.Mode != "v1" {
		t.Fatalf("got %+v, %v; want disabled, v1", c.UPnP, err)
	}
	_, err = Parse("u.toml", []byte("[upnp]\nmode = \"v3\"\n"))
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Field != "upnp.mode" {
		t.Fatalf("got %v, want u.toml:2: upnp.mode", err)
	}
	if c, err := Parse("u.toml", []byte("[upnp]\nrate_limit = 0\n")); err != nil || c.UPnP.RateLimit != 0 {
		t.Fatalf("rate_limit = 0: got %d, %v; want no limit", c.UPnP.RateLimit, err)
	}
	_, err = Parse("u.toml", []byte("[upnp]\n\nrate_limit = -5\n"))
	if !errors.As(err, &e) || e.Line != 3 || e.Field != "upnp.rate_limit" || !strings.Contains(err.Error(), "negative limit -5") {
		t.Fatalf("got %v, want u.toml:3: upnp.rate_limit: negative limit -5", err)
	}
}

func TestNFTTable(t *testing.T) {
	if c := Default(); c.NFT != (NFT{Hairpin: true, PreserveSourcePort: true}) {
		t.Fatalf("default nft %+v, want hairpin and source-port preservation on", c.NFT)
	}
	c, err := Parse("n.toml", []byte("[nft]\nhairpin = false\n"))
	if err != nil || c.NFT != (NFT{PreserveSourcePort: true}) {
		t.Fatalf("got %+v, %v; want hairpin off, preservation on", c.NFT, err)
	}
	c, err = Parse("n.toml", []byte("[nft]\npreserve_source_port = false\n"))
	if err != nil || c.NFT != (NFT{Hairpin: true}) {
		t.Fatalf("got %+v, %v; want preservation off, hairpin on", c.NFT, err)
	}
	_, err = Parse("n.toml", []byte("[nft]\nhairpin = \"yes\"\nhairpinn = true\n"))
	for _, want := range []string{"n.toml:2: nft.hairpin: want true or false", "n.toml:3: nft.hairpinn: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}
