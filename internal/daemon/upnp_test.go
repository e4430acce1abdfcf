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
	"testing"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/portmap"
)

// TestUPnPDiscoveryAndControl runs the daemon's IGD on loopback: a unicast
// M-SEARCH from a LAN host finds it, the LOCATION leads goupnp's IGD:2
// client to the description, and AddPortMapping creates a mapping in the
// Service that DeletePortMapping removes.
func TestUPnPDiscoveryAndControl(t *testing.T) {
	ssdpPort, groupPort := freeUDPPort(t), freeUDPPort(t)
	cfg := config.Default()
	cfg.Backend = "relay"
	cfg.NATPMP.Enabled, cfg.PCP.Enabled = false, false
	ready := make(chan *portmap.Service, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Detect: loopback, OpenNft: noNft,
			SSDPPort: ssdpPort, SSDPGroup: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), groupPort),
			Ready: func(s *portmap.Service) { ready <- s }})
	}()
	defer func() { cancel(); <-done }()
	var svc *portmap.Service
	select {
	case svc = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	}
	host := netip.MustParseAddr("127.0.0.2") // a LAN host; 127.0.0.1 is the router
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: host.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	search := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n" +
		"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n"
	if _, err := c.WriteToUDPAddrPort([]byte(search), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ssdpPort)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(clock.Real{}.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no SSDP answer: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", buf[:n], err)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Hostname() != "127.0.0.1" {
		t.Fatalf("LOCATION %q: %v", resp.Header.Get("Location"), err)
	}
	cs, err := internetgateway2.NewWANIPConnection2ClientsByURL(loc)
	if err != nil || len(cs) != 1 {
		t.Fatalf("goupnp found %d WANIPConnection:2 clients: %v", len(cs), err)
	}
	ig := cs[0]
	ig.SOAPClient.HTTPClient = http.Client{Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: host.AsSlice()}}).DialContext}}
	if err := ig.AddPortMapping("", 20000, "TCP", 20000, host.String(), true, "daemon test", 3600); err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	ms := svc.List(mapping.Filter{Kind: mapping.KindIGD})
	if len(ms) != 1 || ms[0].External.Port() != 20000 || ms[0].Origin.Description != "daemon test" {
		t.Fatalf("Service holds %v, want the UPnP mapping", ms)
	}
	if err := ig.DeletePortMapping("", 20000, "TCP"); err != nil {
		t.Fatalf("DeletePortMapping: %v", err)
	}
	if svc.Len() != 0 {
		t.Fatalf("%d mappings left after delete", svc.Len())
	}
}
