package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/netif"
)

// TestForwardsChecked: a static forward the running system cannot serve
// is a configuration error naming the forward's line; a good one passes.
func TestForwardsChecked(t *testing.T) {
	det := netif.Detected{LANPrefixes: []netip.Prefix{
		netip.MustParsePrefix("192.168.1.1/24"), netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00:1::1/64")}}
	ext := netip.MustParseAddr("203.0.113.2")
	for _, tc := range []struct {
		name, proto, port, internal, backend string
		want                                 string // "" means accepted
	}{
		{"lan host", "tcp", "8080", "192.168.1.10:80", "nft", ""},
		{"routed subnet", "tcp", "8080", "10.20.3.4:80", "nft", ""},
		{"ipv6 host through the relay", "udp", "51820", "[fd00:1::5]:51820", "relay", ""},
		{"outside the lan", "tcp", "8080", "10.99.99.99:80", "nft", "berth.toml:5: forward[0].internal: 10.99.99.99 is in no LAN prefix"},
		{"the router's loopback", "tcp", "8080", "127.0.0.1:80", "relay", "berth.toml:5: forward[0].internal: 127.0.0.1 is in no LAN prefix"},
		{"ipv6 host through nft", "udp", "51820", "[fd00:1::5]:51820", "nft", "berth.toml:5: forward[0].internal: the nft backend forwards the external address 203.0.113.2 only to addresses of its family"},
		{"pcp port", "udp", "5351", "192.168.1.10:5351", "relay", "berth.toml:4: forward[0].external_port: udp port 5351 is berth's own (NAT-PMP and PCP)"},
		{"ssdp port", "udp", "1900", "192.168.1.10:1900", "nft", "berth.toml:4: forward[0].external_port: udp port 1900 is berth's own (SSDP)"},
		{"tcp on 5351 is no one's", "tcp", "5351", "192.168.1.10:5351", "nft", ""},
	} {
		src := "[[forward]]\nname = \"f\"\nproto = \"" + tc.proto + "\"\nexternal_port = " + tc.port + "\ninternal = \"" + tc.internal + "\"\n"
		cfg, err := config.Parse("berth.toml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fs, err := forwards(cfg, det, ext, tc.backend)
		var ce *config.Error
		switch {
		case tc.want == "" && (err != nil || len(fs) != 1):
			t.Errorf("%s: got %v, %v; want the forward accepted", tc.name, fs, err)
		case tc.want != "" && (!errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%s: got error %v, want *config.Error %q", tc.name, err, tc.want)
		}
	}
}

// TestForwardOutsideLANStopsStart: Run refuses to start on such a forward,
// with a configuration error (berthd exits 2), before it maps anything.
func TestForwardOutsideLANStopsStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.toml")
	src := "backend = \"relay\"\n[upnp]\nenabled = false\n[[forward]]\nname = \"away\"\nproto = \"tcp\"\nexternal_port = 8080\ninternal = \"192.0.2.9:80\"\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	err = Run(context.Background(), cfg, Options{PortControlPort: freeUDPPort(t), OpenNft: noNft, Logger: slog.New(slog.DiscardHandler), Detect: loopback})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Line != 8 || ce.Field != "forward[0].internal" {
		t.Fatalf("got %v, want a *config.Error at line 8, forward[0].internal", err)
	}
}
