package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// FuzzConfig checks that Parse never panics, that every error it returns
// is a positioned *Error, and that every config it accepts is valid.
func FuzzConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.toml")
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "wan = \"eth0\"", fwd(""), fwd("") + "\n" + fwd(`name = "b"`, "external_port = 2"),
		"[policy]\nrules = [\"allow 1-2 10.0.0.0/8 1-2 ^a\"]\nreserved_ports = [\"tcp:1-2\"]",
		"[policy.lifetime.natpmp]\nmin = \"1s\"\nmax = \"0s\"",
		"log = {level = \"debug\"}", "x = '''\n[y]\n'''\n[z]", `"a\"b".'c' = 1`,
		"a = " + strings.Repeat("[", 40) + strings.Repeat("]", 40), strings.Repeat("k.", 40) + "z = 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("got config %+v with error %v", c, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.toml") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			if e.Line < 0 || e.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("error line %d outside the input: %v", e.Line, err)
			}
			return
		}
		checkValid(t, c)
	})
}

// checkValid checks every invariant an accepted Config promises,
// independently of the code that established it.
func checkValid(t *testing.T, c *Config) {
	t.Helper()
	ifname := func(s string) bool {
		return s != "" && len(s) <= 15 && !strings.ContainsAny(s, "/: \t\n")
	}
	if c.WAN != "" && !ifname(c.WAN) {
		t.Errorf("bad WAN %q", c.WAN)
	}
	seen := map[string]bool{}
	for _, n := range c.LAN {
		if !ifname(n) || seen[n] {
			t.Errorf("bad or repeated LAN %q", n)
		}
		seen[n] = true
	}
	if a := c.ExternalAddr; a.IsValid() && (a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" || a.Is4In6()) {
		t.Errorf("bad external address %s", a)
	}
	switch c.Backend {
	case "auto", "relay", "nft":
	default:
		t.Errorf("bad backend %q", c.Backend)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		t.Errorf("bad log format %q", c.LogFormat)
	}
	switch c.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		t.Errorf("bad log level %v", c.LogLevel)
	}
	p := c.Policy
	if p.MaxPerClient < 0 || p.MaxTotal < 0 {
		t.Errorf("negative quota %d %d", p.MaxPerClient, p.MaxTotal)
	}
	for _, r := range p.Reserved {
		if r.Ports.Empty() || (r.Proto != 0 && !r.Proto.Valid()) || r.Why != "configured" {
			t.Errorf("bad reserved %+v", r)
		}
	}
	for k := mapping.KindIGD; k <= mapping.KindTrigger; k++ {
		lt, ok := p.Lifetime[k]
		if !ok || lt.Min < 0 || lt.Max < 0 || (lt.Max != 0 && lt.Min > lt.Max) {
			t.Errorf("bad lifetime %s %+v (present %t)", k, lt, ok)
		}
	}
	// policy.New is the consumer: it must accept what config accepted.
	if _, err := policy.New(policy.Config{
		LAN: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}, Rules: p.Rules, Insecure: !p.SecureMode,
		MaxPerClient: p.MaxPerClient, MaxTotal: p.MaxTotal, Lifetime: p.Lifetime, Reserved: p.Reserved,
	}); err != nil {
		t.Errorf("policy.New refused an accepted policy: %v", err)
	}
	names := map[string]bool{}
	type key struct {
		proto  mapping.Protocol
		port   uint16
		remote string
	}
	keys := map[key]bool{}
	for _, f := range c.Forwards {
		k := key{f.Proto, f.External, f.Remote.String()}
		switch {
		case strings.TrimSpace(f.Name) == "" || names[f.Name]:
			t.Errorf("empty or repeated forward name %q", f.Name)
		case !f.Proto.Valid() || f.External == 0:
			t.Errorf("bad forward %+v", f)
		case !f.Internal.IsValid() || f.Internal.Port() == 0 || f.Internal.Addr().IsUnspecified() || f.Internal.Addr().IsMulticast():
			t.Errorf("bad forward internal %+v", f)
		case f.Remote.IsValid() && (f.Remote.IsUnspecified() || f.Remote.IsMulticast()):
			t.Errorf("bad forward remote %+v", f)
		case keys[k]:
			t.Errorf("repeated forward key %+v", f)
		}
		names[f.Name], keys[k] = true, true
	}
}
