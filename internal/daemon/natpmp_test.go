package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
)

// TestNATPMPMappingCarriesTraffic is the whole path on loopback: a NAT-PMP
// request to the daemon's responder creates a mapping, the relay carries
// real TCP through it to a listener, and a delete closes it.
func TestNATPMPMappingCarriesTraffic(t *testing.T) {
	// The LAN host is 127.0.0.2: 127.0.0.1 is the router itself.
	echo := echoServerOn(t, "127.0.0.2")
	pmpPort := freeUDPPort(t)
	cfg := config.Default()
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	cfg.Backend = "relay"
	cfg.UPnP.Enabled = false
	ready := make(chan *portmap.Service, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Detect: loopback,
			PortControlPort: pmpPort, OpenNft: noNft, Ready: func(s *portmap.Service) { ready <- s }})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	}
	host := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}
	conn, err := net.DialUDP("udp", host, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pmpPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(req natpmp.Request) natpmp.Response {
		t.Helper()
		if _, err := conn.Write(req.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(clock.Real{}.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		resp, err := natpmp.ParseResponse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := ask(natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: echo.Port(), SuggestedPort: echo.Port(), Lifetime: 600})
	if resp.Result != natpmp.Success || resp.ExternalPort == 0 || resp.Lifetime != 600 {
		t.Fatalf("got %+v, want success for 600 s", resp)
	}
	through := fmt.Sprintf("127.0.0.1:%d", resp.ExternalPort)
	if err := roundTrip(through); err != nil {
		t.Fatalf("through the NAT-PMP mapping: %v", err)
	}
	if del := ask(natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: echo.Port()}); del.Result != natpmp.Success {
		t.Fatalf("delete: %+v", del)
	}
	if err := roundTrip(through); err == nil {
		t.Fatal("mapping still carries traffic after delete")
	}
}
