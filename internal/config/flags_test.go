package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFromArgs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.toml")
	src := "wan = \"eth0\"\nlan = [\"br0\"]\nexternal_address = \"203.0.113.2\"\nbackend = \"nft\"\n[log]\nformat = \"json\"\nlevel = \"warn\"\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := func(c *Config) {
		c.File = file
		c.WAN, c.LAN, c.Backend = "eth0", []string{"br0"}, "nft"
		c.ExternalAddr = netip.MustParseAddr("203.0.113.2")
		c.LogFormat, c.LogLevel = "json", slog.LevelWarn
	}
	tests := []struct {
		name string
		args []string
		want func(c *Config) // applied to Default()
	}{
		{"no args", nil, func(c *Config) {}},
		{"flags alone", []string{"-wan", "wan0", "-lan", "a, b", "-external", "2001:db8::1", "-backend", "relay",
			"-log-format", "json", "-log-level", "debug"}, func(c *Config) {
			c.WAN, c.LAN, c.Backend = "wan0", []string{"a", "b"}, "relay"
			c.ExternalAddr = netip.MustParseAddr("2001:db8::1")
			c.LogFormat, c.LogLevel = "json", slog.LevelDebug
		}},
		{"file alone", []string{"-config", file}, fromFile},
		{"flag defaults do not override the file", []string{"-config=" + file}, fromFile},
		{"flags override the file", []string{"-config", file, "-wan", "ppp0", "-backend", "auto", "-log-level", "info"}, func(c *Config) {
			fromFile(c)
			c.WAN, c.Backend, c.LogLevel = "ppp0", "auto", slog.LevelInfo
		}},
		{"empty flags reset to detection", []string{"-config", file, "-wan=", "-lan=", "-external="}, func(c *Config) {
			fromFile(c)
			c.WAN, c.LAN, c.ExternalAddr = "", nil, netip.Addr{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromArgs(tt.args, nil)
			if err != nil {
				t.Fatalf("FromArgs: %v", err)
			}
			want := Default()
			tt.want(want)
			if g, w := summarize(got), summarize(want); !reflect.DeepEqual(g, w) {
				t.Errorf("got  %+v\nwant %+v", g, w)
			}
		})
	}
}

func TestFromArgsErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("backend = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		field string // of the *Error; "" when the error is not one
		msg   string
	}{
		{"wan", []string{"-wan", "a:b"}, "flag -wan", "flag -wan: interface name"},
		{"lan", []string{"-lan", "br0,,br1"}, "flag -lan", "flag -lan: empty interface name"},
		{"lan twice", []string{"-lan", "br0,br0"}, "flag -lan", "listed twice"},
		{"external", []string{"-external", "224.0.0.1"}, "flag -external", "flag -external: address 224.0.0.1 is multicast"},
		{"backend", []string{"-backend", "pf"}, "flag -backend", `flag -backend: unknown backend "pf"`},
		{"log format", []string{"-log-format", "xml"}, "flag -log-format", "unknown log format"},
		{"log level", []string{"-log-level", "trace"}, "flag -log-level", "unknown log level"},
		{"flag checked before file", []string{"-config", "/nonexistent", "-backend", "pf"}, "flag -backend", "unknown backend"},
		{"missing file", []string{"-config", "/nonexistent/berth.toml"}, "", "/nonexistent/berth.toml: read: no such file"},
		{"bad file", []string{"-config", bad}, "backend", bad + ":1: backend: unknown backend"},
		{"unknown flag", []string{"-verbose"}, "", "flag provided but not defined: -verbose"},
		{"argument", []string{"extra"}, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c, err := FromArgs(tt.args, &stderr)
			if err == nil {
				t.Fatalf("FromArgs succeeded: %+v", c)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want it to contain %q", err, tt.msg)
			}
			var e *Error
			if errors.As(err, &e) && e.Field != tt.field {
				t.Errorf("got field %q, want %q", e.Field, tt.field)
			}
		})
	}
}

func TestFromArgsHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var stderr bytes.Buffer
		_, err := FromArgs([]string{arg}, &stderr)
		if err != flag.ErrHelp {
			t.Errorf("%s: got %v, want flag.ErrHelp", arg, err)
		}
		for _, f := range []string{"-config", "-wan", "-lan", "-external", "-backend", "-log-format", "-log-level"} {
			if !strings.Contains(stderr.String(), f+" ") {
				t.Errorf("%s: usage does not document %s:\n%s", arg, f, stderr.String())
			}
		}
	}
}

// TestErrorf: a problem found after parsing (an interface that does not
// exist, a forward the running system cannot serve) names the line that
// set the field, or the flag that overrode it.
func TestErrorf(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.toml")
	src := "wan = \"eth0\"\nlan = [\n  \"br0\",\n  \"nosuch0\",\n]\n\n[[forward]]\nname = \"web\"\nproto = \"tcp\"\nexternal_port = 8080\ninternal = \"10.9.9.9:80\"\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		field string
		want  string
	}{
		{[]string{"-config", file}, "lan[1]", file + ":4: lan[1]: no interface"},
		{[]string{"-config", file}, "forward[0].internal", file + ":11: forward[0].internal: no interface"},
		// A field the file does not set is reported at its nearest
		// ancestor: the [[forward]] header.
		{[]string{"-config", file}, "forward[0].remote", file + ":7: forward[0].remote: no interface"},
		{[]string{"-config", file}, "wan", file + ":1: wan: no interface"},
		{[]string{"-config", file, "-lan", "a,b"}, "lan[1]", "flag -lan: no interface"},
		{[]string{"-lan", "a"}, "lan[0]", "flag -lan: no interface"},
		// Built-in defaults: no file, no line.
		{nil, "wan", "wan: no interface"},
	} {
		c, err := FromArgs(tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Errorf(tc.field, "no interface")
		var ce *Error
		if !errors.As(err, &ce) || err.Error() != tc.want {
			t.Errorf("%v: Errorf(%q) = %v, want *Error %q", tc.args, tc.field, err, tc.want)
		}
	}
}
