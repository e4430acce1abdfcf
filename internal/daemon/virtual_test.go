package daemon

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
)

func TestVirtualAddrs(t *testing.T) {
	det := netif.Detected{LAN: []netif.Interface{
		{Name: "br-lan", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.168.1.2/24"), netip.MustParsePrefix("fd00:1::2/64")}},
		// The active router of the pair, with keepalived's /32.
		{Name: "lan2", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("10.0.0.1/32")}},
		// The virtual address is the only one holding itself.
		{Name: "lan3", Prefixes: []netip.Prefix{netip.MustParsePrefix("172.16.0.1/24")}},
	}}
	for _, tt := range []struct {
		name    string
		addrs   []string
		want    []vip
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"standby", []string{"192.168.1.1", "fd00:1::1"},
			[]vip{{netip.MustParseAddr("192.168.1.1"), "br-lan"}, {netip.MustParseAddr("fd00:1::1"), "br-lan"}}, ""},
		{"active", []string{"10.0.0.1"}, []vip{{netip.MustParseAddr("10.0.0.1"), "lan2"}}, ""},
		{"outside every LAN prefix", []string{"192.168.1.1", "198.51.100.1"}, nil,
			"virtual address 198.51.100.1: no LAN interface (br-lan,lan2,lan3) has a prefix that holds it"},
		// A standby would fail where the active router starts: both fail.
		{"held only by itself", []string{"172.16.0.1"}, nil, "virtual address 172.16.0.1: no LAN interface"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			for _, a := range tt.addrs {
				cfg.VirtualAddrs = append(cfg.VirtualAddrs, netip.MustParseAddr(a))
			}
			got, err := virtualAddrs(cfg, det)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// runVirtual runs the daemon on loopback (router 127.0.0.1) with every
// responder on and the given virtual addresses; it returns when the
// daemon serves, or Run's error.
func runVirtual(t *testing.T, vips ...string) (pmpPort, ssdpPort uint16, err error) {
	t.Helper()
	pmpPort, ssdpPort = freeUDPPort(t), freeUDPPort(t)
	cfg := config.Default()
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	cfg.Backend = "relay"
	for _, a := range vips {
		cfg.VirtualAddrs = append(cfg.VirtualAddrs, netip.MustParseAddr(a))
	}
	ready := make(chan *portmap.Service, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Detect: loopback, OpenNft: noNft,
			PortControlPort: pmpPort, SSDPPort: ssdpPort,
			SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t)),
			Ready:     func(s *portmap.Service) { ready <- s }})
	}()
	select {
	case <-ready:
		t.Cleanup(func() { cancel(); <-done })
		return pmpPort, ssdpPort, nil
	case err := <-done:
		cancel()
		return 0, 0, err
	}
}

// exchangeUDP sends msg from the LAN host 127.0.0.2 to to and returns the
// first answer and where it came from.
func exchangeUDP(t *testing.T, to netip.AddrPort, msg []byte) ([]byte, netip.AddrPort) {
	t.Helper()
	return exchangeUDPFrom(t, netip.MustParseAddr("127.0.0.2"), to, msg)
}

// exchangeUDPFrom is exchangeUDP from the host from.
func exchangeUDPFrom(t *testing.T, from netip.Addr, to netip.AddrPort, msg []byte) ([]byte, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: from.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort(msg, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(clock.Real{}.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no answer from %v: %v", to, err)
	}
	return buf[:n], src
}

// COMPAT S4: the daemon serves NAT-PMP, SSDP and HTTP on a virtual
// gateway address, each answer from it and LOCATION naming it, on the
// HTTP port of the interface's own address.
func TestVirtualAddressServed(t *testing.T) {
	pmpPort, ssdpPort, err := runVirtual(t, "127.0.0.254")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	vip := netip.MustParseAddr("127.0.0.254")

	b, from := exchangeUDP(t, netip.AddrPortFrom(vip, pmpPort), natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil))
	if resp, err := natpmp.ParseResponse(b); err != nil || resp.Result != natpmp.Success || from.Addr() != vip {
		t.Fatalf("NAT-PMP to the virtual address: %+v, %v from %v", resp, err, from)
	}

	location := func(to netip.Addr) *url.URL {
		t.Helper()
		msg := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n" +
			"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n"
		b, from := exchangeUDP(t, netip.AddrPortFrom(to, ssdpPort), []byte(msg))
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
		if err != nil || from.Addr() != to {
			t.Fatalf("SSDP answer %q from %v to a search sent to %v: %v", b, from, to, err)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Hostname() != to.String() {
			t.Fatalf("search sent to %v: LOCATION %q (%v)", to, resp.Header.Get("Location"), err)
		}
		return loc
	}
	vloc, own := location(vip), location(netip.MustParseAddr("127.0.0.1"))
	if vloc.Port() != own.Port() {
		t.Errorf("virtual address on HTTP port %s, the interface's own on %s: want the same", vloc.Port(), own.Port())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, vloc.String(), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %v: %v", vloc, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %v: %s", vloc, res.Status)
	}
}

// A virtual address no LAN prefix holds stops the start, naming it.
func TestVirtualAddressOutsideLAN(t *testing.T) {
	_, _, err := runVirtual(t, "10.99.0.1")
	if err == nil || !strings.Contains(err.Error(), "virtual address 10.99.0.1: no LAN interface (lo)") {
		t.Fatalf("got %v, want a start-up error naming 10.99.0.1", err)
	}
}
