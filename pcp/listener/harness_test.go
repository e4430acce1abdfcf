package listener_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
	"github.com/berthd/berth/pcp/listener"
)

var (
	t0  = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ext = netip.MustParseAddr("203.0.113.2")
)

// rig is a Server on loopback in front of a real Service with the fake
// backend and a fake clock.
type rig struct {
	svc   *portmap.Service
	be    *fake.Backend
	clk   *clocktest.Fake
	srv   *listener.Server
	addrs []netip.AddrPort
}

type rigOpts struct {
	noPCP, noNATPMP bool
	thirdParty      bool
	burst           int
	binds           []string
	virtual         []string // Virtual binds, after binds
	lan             string
	ext             netip.Addr
	announcePort    uint16
	maxPerClient    int
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if o.lan == "" {
		o.lan = "127.0.0.0/8"
	}
	if o.binds == nil {
		// Not a client address: the router's own address is never a client.
		o.binds = []string{"127.0.0.100"}
	}
	if !o.ext.IsValid() {
		o.ext = ext
	}
	lan := netip.MustParsePrefix(o.lan)
	pol, err := policy.New(policy.Config{
		LAN: []netip.Prefix{lan}, Insecure: o.thirdParty, MaxPerClient: o.maxPerClient,
		Lifetime: map[mapping.Kind]policy.Lifetimes{
			mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour},
			mapping.KindPCP:    {Min: 120 * time.Second, Max: 24 * time.Hour},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{be: &fake.Backend{}, clk: clocktest.NewFake(t0)}
	extAddr := o.ext
	if o.ext == netip.IPv4Unspecified() {
		extAddr = netip.Addr{}
	}
	r.svc = portmap.New(portmap.Config{Backend: r.be, Policy: pol, Clock: r.clk, External: extAddr})
	cfg := listener.Config{
		Port: 0, LAN: []netip.Prefix{lan}, Clock: r.clk, Burst: o.burst,
		Epoch: r.svc.Epoch,
		NATPMPAnnouncement: func(epoch uint32) []byte {
			a := r.svc.ExternalAddr()
			if !a.IsValid() {
				return nil
			}
			return natpmp.Announcement(epoch, a).AppendTo(nil)
		},
		AnnounceGroup4: netip.MustParseAddr("127.0.0.1"),
	}
	if o.announcePort != 0 {
		cfg.AnnouncePorts = []uint16{o.announcePort}
	}
	for _, b := range o.binds {
		cfg.Binds = append(cfg.Binds, listener.Bind{Interface: "lo", Addr: netip.MustParseAddr(b)})
	}
	for _, b := range o.virtual {
		cfg.Binds = append(cfg.Binds, listener.Bind{Interface: "lo", Addr: netip.MustParseAddr(b), Virtual: true})
	}
	if !o.noPCP {
		cfg.PCP = &pcp.Handler{Mapper: r.svc, Epoch: r.svc.Epoch, AllowThirdParty: o.thirdParty}
	}
	if !o.noNATPMP {
		cfg.NATPMP = &natpmp.Handler{Mapper: r.svc, Epoch: r.svc.Epoch}
	}
	r.srv, err = listener.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.srv.Serve()
	r.addrs = r.srv.LocalAddrs()
	t.Cleanup(func() { r.srv.Close(); r.svc.Close() })
	return r
}

// client is an unconnected UDP socket on a loopback address, so the test
// sees which address a reply came from.
type client struct {
	t    *testing.T
	conn *net.UDPConn
}

func newClient(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c}
}

func (c *client) addr() netip.Addr { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr() }

// exchange sends req to srv and waits up to 2 s for a reply; nil if none.
func (c *client) exchange(srv netip.AddrPort, req []byte) ([]byte, netip.AddrPort) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(req, srv); err != nil {
		c.t.Fatal(err)
	}
	return c.read(2 * time.Second)
}

func (c *client) read(wait time.Duration) ([]byte, netip.AddrPort) {
	c.t.Helper()
	c.conn.SetReadDeadline(clock.Real{}.Now().Add(wait))
	buf := make([]byte, 2048)
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	return buf[:n], from
}

// waitStat polls a counter for up to 5 s.
func waitStat(t *testing.T, get func() uint64, want uint64) {
	t.Helper()
	for range 100 {
		if get() >= want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("counter stayed at %d, want %d", get(), want)
}
