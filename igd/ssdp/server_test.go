package ssdp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/porttest"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	searchIGD1 = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"
	searchAll  = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: ssdp:all\r\n\r\n"
	routerAddr = "127.0.0.100"
)

// rig is a Server on loopback: its LAN address is 127.0.0.100, the
// "group" is the unicast 127.0.0.2 and NOTIFYs go to a test socket.
type rig struct {
	srv     *Server
	clk     *clocktest.Fake
	uni     netip.AddrPort // the router's unicast SSDP address
	group   netip.AddrPort
	notices *client
}

func newRig(t *testing.T, mod func(*Config)) *rig {
	t.Helper()
	r := &rig{clk: clocktest.NewFake(t0), notices: newClient(t, "127.0.0.3", 0)}
	c := Config{
		Binds:  []Bind{{Interface: "lo", Addr: netip.MustParseAddr(routerAddr)}},
		LAN:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Device: testDevice,
		Location: func(lan netip.Addr, s Search) string {
			return fmt.Sprintf("http://%s:5000/rootDesc.xml", lan)
		},
		Server:   "Linux/6.12 UPnP/1.1 berth/1.0",
		BootID:   42,
		ConfigID: 3,
		Clock:    r.clk,
		Port:     freePort(t, routerAddr),
		Group:    netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), freePort(t, "127.0.0.2")),
		NotifyTo: r.notices.addr(),
	}
	if mod != nil {
		mod(&c)
	}
	srv, err := NewServer(c)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	t.Cleanup(func() { srv.Close() })
	r.uni, r.group = srv.LocalAddrs()[0], srv.GroupAddr()
	return r
}

func freePort(t *testing.T, addr string) uint16 {
	t.Helper()
	return porttest.Free(t, "udp", netip.MustParseAddr(addr))
}

type client struct {
	t    *testing.T
	conn *net.UDPConn
}

func newClient(t *testing.T, addr string, port uint16) *client {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c}
}

func (c *client) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (c *client) send(to netip.AddrPort, msg string) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		c.t.Fatal(err)
	}
}

// read waits up to wait of real time for one datagram; nil if none.
func (c *client) read(wait time.Duration) ([]byte, netip.AddrPort) {
	c.conn.SetReadDeadline(clock.Real{}.Now().Add(wait))
	buf := make([]byte, 2048)
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	return buf[:n], from
}

// readAll reads datagrams until none arrives for 100 ms.
func (c *client) readAll() [][]byte {
	var out [][]byte
	for {
		b, _ := c.read(100 * time.Millisecond)
		if b == nil {
			return out
		}
		out = append(out, b)
	}
}

func waitStat(t *testing.T, get func() uint64, want uint64) {
	t.Helper()
	for range 200 {
		if get() >= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("counter stayed at %d, want %d", get(), want)
}

func parseAnswer(t *testing.T, b []byte) *http.Response {
	t.Helper()
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("answer does not parse: %v\n%q", err, b)
	}
	return res
}

// COMPAT S4, S5, S6: a unicast search is answered at once, unicast, from
// the LAN address, with LOCATION built from it.
func TestUnicastSearch(t *testing.T) {
	r := newRig(t, nil)
	r.srv.Serve()
	c := newClient(t, "127.0.0.5", 0)
	c.send(r.uni, searchIGD1)
	b, from := c.read(2 * time.Second)
	if b == nil {
		t.Fatal("no answer without advancing the clock")
	}
	if from != r.uni {
		t.Errorf("answered from %v, want %v", from, r.uni)
	}
	res := parseAnswer(t, b)
	if got := res.Header.Get("Location"); got != "http://127.0.0.100:5000/rootDesc.xml" {
		t.Errorf("got LOCATION %q", got)
	}
	if got := res.Header.Get("St"); got != "urn:schemas-upnp-org:device:InternetGatewayDevice:1" {
		t.Errorf("got ST %q", got)
	}
	if got := res.Header.Get("Bootid.upnp.org"); got != "42" {
		t.Errorf("got BOOTID %q", got)
	}
	if got := res.Header.Get("Date"); got != "Mon, 23 Nov 2026 12:00:00 GMT" {
		t.Errorf("got DATE %q, want the injected clock's", got)
	}
}

// COMPAT S5: answer to the source port even when it is 1900.
func TestUnicastSearchFromPort1900(t *testing.T) {
	r := newRig(t, nil)
	r.srv.Serve()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.6"), Port: Port})
	if err != nil {
		t.Skipf("port 1900 on 127.0.0.6 not available: %v", err)
	}
	conn.Close()
	c := newClient(t, "127.0.0.6", Port)
	c.send(r.uni, searchIGD1)
	if b, _ := c.read(2 * time.Second); b == nil {
		t.Fatal("no answer to source port 1900")
	}
}

// COMPAT S4, S6: a multicast search is answered within 100 ms of fake
// time, unicast, from the LAN address's socket (not the group's).
func TestMulticastSearchJitter(t *testing.T) {
	r := newRig(t, nil)
	r.srv.Serve()
	c := newClient(t, "127.0.0.5", 0)
	c.send(r.group, searchIGD1)
	waitStat(t, func() uint64 { return r.srv.Stats().Searches }, 1)
	r.clk.Advance(100 * time.Millisecond)
	b, from := c.read(2 * time.Second)
	if b == nil {
		t.Fatal("no answer 100 ms after a multicast search")
	}
	if from != r.uni {
		t.Errorf("answered from %v, want the LAN address %v", from, r.uni)
	}
	if r.clk.Pending() != 1 { // only the NOTIFY timer
		t.Errorf("%d timers pending, want 1", r.clk.Pending())
	}
}

// COMPAT S6: ssdp:all answers are paced, all within ~100 ms.
func TestSSDPAllPaced(t *testing.T) {
	r := newRig(t, nil)
	r.srv.Serve()
	c := newClient(t, "127.0.0.5", 0)
	c.send(r.uni, searchAll)
	if b, _ := c.read(2 * time.Second); b == nil {
		t.Fatal("no first answer")
	}
	if got := c.readAll(); len(got) != 0 {
		t.Fatalf("got %d more answers before the clock moved, want paced", len(got))
	}
	r.clk.Advance(100 * time.Millisecond)
	rest := c.readAll()
	if len(rest) != len(testDevice.Targets())-1 {
		t.Fatalf("got %d more answers, want %d", len(rest), len(testDevice.Targets())-1)
	}
	seen := map[string]bool{}
	for _, b := range rest {
		seen[parseAnswer(t, b).Header.Get("St")] = true
	}
	if !seen["urn:schemas-upnp-org:service:WANIPConnection:2"] || !seen[rootUDN] {
		t.Errorf("missing targets in %v", seen)
	}
	if s := r.srv.Stats(); s.Answered != uint64(len(testDevice.Targets())) || s.Searches != 1 {
		t.Errorf("got stats %+v", s)
	}
}

// COMPAT S9 and "Security history": only LAN sources, on LAN interfaces.
func TestNotLANIgnored(t *testing.T) {
	r := newRig(t, func(c *Config) { c.LAN = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/25")} })
	r.srv.Serve()
	for _, src := range []string{
		"127.0.0.200", // outside the LAN prefixes
		"127.0.0.127", // broadcast address of the LAN prefix
		routerAddr,    // the router itself
	} {
		c := newClient(t, src, 0)
		c.send(r.uni, searchIGD1)
		c.send(r.group, searchIGD1)
	}
	waitStat(t, func() uint64 { return r.srv.Stats().NotLAN }, 6)
	r.clk.Advance(time.Second)
	if s := r.srv.Stats(); s.Answered != 0 || s.Searches != 0 {
		t.Fatalf("answered sources outside the LAN: %+v", s)
	}
}

// COMPAT S9: other devices' NOTIFYs and answers, unknown targets and
// garbage get no answer.
func TestIgnored(t *testing.T) {
	r := newRig(t, nil)
	r.srv.Serve()
	c := newClient(t, "127.0.0.5", 0)
	c.send(r.group, "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\r\n")
	c.send(r.uni, string(testResponse.AppendTo(nil)))
	c.send(r.uni, "M-SEARCH * HTTP/1.1\r\nST: urn:schemas-upnp-org:device:MediaRenderer:1\r\n\r\n")
	c.send(r.uni, "M-SEARCH * HTTP/1.1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:3\r\n\r\n")
	c.send(r.uni, "GET / HTTP/1.1\r\n\r\n")
	c.send(r.uni, "M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n"+strings.Repeat("X: y\r\n", 400)+"\r\n")
	waitStat(t, func() uint64 { return r.srv.Stats().Received }, 6)
	r.clk.Advance(time.Second)
	if b, _ := c.read(100 * time.Millisecond); b != nil {
		t.Fatalf("got an answer %q", b)
	}
	if s := r.srv.Stats(); s.Ignored != 4 || s.Malformed != 2 || s.Answered != 0 {
		t.Fatalf("got %+v, want 4 ignored and 2 malformed", s)
	}
}

// Amplification: per-source and global budgets of answer datagrams.
func TestRateLimits(t *testing.T) {
	t.Run("per source", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.SourceBurst, c.SourceRate = 10, 1 })
		r.srv.Serve()
		noisy := newClient(t, "127.0.0.5", 0)
		noisy.send(r.uni, searchAll)  // 9 answers
		noisy.send(r.uni, searchAll)  // 9 more: refused whole
		noisy.send(r.uni, searchIGD1) // 1 left
		noisy.send(r.uni, searchIGD1) // refused
		waitStat(t, func() uint64 { return r.srv.Stats().RateLimited }, 2)
		if s := r.srv.Stats(); s.RateLimited != 2 || s.Searches != 2 {
			t.Fatalf("got %+v, want 2 answered and 2 rate-limited searches", s)
		}
		other := newClient(t, "127.0.0.6", 0)
		other.send(r.uni, searchIGD1)
		if b, _ := other.read(2 * time.Second); b == nil {
			t.Fatal("another source was refused")
		}
		r.clk.Advance(time.Second) // one token back
		noisy.readAll()
		noisy.send(r.uni, searchIGD1)
		if b, _ := noisy.read(2 * time.Second); b == nil {
			t.Fatal("tokens did not come back with time")
		}
	})
	t.Run("global", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.GlobalBurst, c.GlobalRate = 3, 1 })
		r.srv.Serve()
		for i := range 5 {
			newClient(t, fmt.Sprintf("127.0.0.%d", 10+i), 0).send(r.uni, searchIGD1)
		}
		waitStat(t, func() uint64 { return r.srv.Stats().RateLimited + r.srv.Stats().Searches }, 5)
		if s := r.srv.Stats(); s.RateLimited != 2 || s.Searches != 3 {
			t.Fatalf("got %+v, want 3 answered and 2 rate-limited", s)
		}
	})
}

// Bounded work: answers waiting for their time are capped.
func TestOverflow(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxPending = 10 })
	r.srv.Serve()
	c := newClient(t, "127.0.0.5", 0)
	c.send(r.uni, searchAll) // 8 queued
	c.send(r.uni, searchAll) // 8 more do not fit
	waitStat(t, func() uint64 { return r.srv.Stats().Overflow }, 1)
	if s := r.srv.Stats(); s.Overflow != 1 || s.Searches != 2 {
		t.Fatalf("got %+v, want 1 overflow", s)
	}
}

// COMPAT S8: alive 3× at start, then every max-age/2; byebye at Close.
func TestNotifySchedule(t *testing.T) {
	r := newRig(t, nil)
	n := len(testDevice.Targets())
	r.srv.Serve()
	checkSet := func(step string, nts string) {
		t.Helper()
		got := r.notices.readAll()
		if len(got) != n {
			t.Fatalf("%s: got %d NOTIFYs, want %d", step, len(got), n)
		}
		for _, b := range got {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if req.Header.Get("Nts") != nts || req.Host != r.group.String() {
				t.Fatalf("%s: got NTS %q HOST %q", step, req.Header.Get("Nts"), req.Host)
			}
			if nts == "ssdp:alive" && req.Header.Get("Location") != "http://127.0.0.100:5000/rootDesc.xml" {
				t.Fatalf("%s: got LOCATION %q", step, req.Header.Get("Location"))
			}
		}
	}
	checkSet("start", "ssdp:alive")
	r.clk.Advance(200 * time.Millisecond)
	checkSet("repeat 1", "ssdp:alive")
	r.clk.Advance(200 * time.Millisecond)
	checkSet("repeat 2", "ssdp:alive")
	r.clk.Advance(200 * time.Millisecond)
	if got := r.notices.readAll(); len(got) != 0 {
		t.Fatalf("got %d NOTIFYs after the third set", len(got))
	}
	r.clk.Advance(900*time.Second - 200*time.Millisecond)
	checkSet("max-age/2", "ssdp:alive")
	r.clk.Advance(900 * time.Second)
	checkSet("max-age", "ssdp:alive")
	r.srv.Close()
	checkSet("close", "ssdp:byebye")
	if r.clk.Pending() != 0 {
		t.Errorf("%d timers left after Close", r.clk.Pending())
	}
}

// TestAnnounceRestartsTheSchedule: Announce sends a set now and repeats
// it, and replaces the running schedule rather than adding a second one.
func TestAnnounceRestartsTheSchedule(t *testing.T) {
	r := newRig(t, nil)
	n := len(testDevice.Targets())
	r.srv.Serve()
	r.clk.Advance(time.Second) // the start's three sets
	r.notices.readAll()
	r.clk.Advance(100 * time.Second)
	r.srv.Announce()
	for i, step := range []time.Duration{0, 200 * time.Millisecond, 200 * time.Millisecond} {
		r.clk.Advance(step)
		if got := len(r.notices.readAll()); got != n {
			t.Fatalf("announce set %d: got %d NOTIFYs, want %d", i, got, n)
		}
	}
	r.clk.Advance(900*time.Second - time.Millisecond) // the last repeat plus max-age/2
	if got := len(r.notices.readAll()); got != 0 {
		t.Fatalf("got %d NOTIFYs before max-age/2 after the announcement: the old schedule still runs", got)
	}
	r.clk.Advance(time.Millisecond)
	if got := len(r.notices.readAll()); got != n {
		t.Fatalf("max-age/2 after the last repeat: got %d NOTIFYs, want %d", got, n)
	}
	if p := r.clk.Pending(); p != 1 {
		t.Errorf("%d timers pending, want the one alive schedule", p)
	}
}

func TestNewServerRefuses(t *testing.T) {
	loc := func(netip.Addr, Search) string { return "" }
	clk := clocktest.NewFake(t0)
	for _, tt := range []struct {
		name string
		c    Config
	}{
		{"no Location", Config{Clock: clk}},
		{"IPv6 bind", Config{Clock: clk, Location: loc, Binds: []Bind{{Interface: "lo", Addr: netip.IPv6Loopback()}}}},
		{"multicast group without interface", Config{Clock: clk, Location: loc,
			Binds: []Bind{{Addr: netip.MustParseAddr(routerAddr)}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := NewServer(tt.c); err == nil {
				s.Close()
				t.Fatal("NewServer accepted it")
			}
		})
	}
}

// The production path: bind the real group (SO_REUSEADDR), join it on an
// interface, answer from the LAN address. Skipped where loopback multicast
// does not work.
func TestRealMulticastGroup(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip(err)
	}
	group := netip.AddrPortFrom(Group.Addr(), freePort(t, "0.0.0.0"))
	r := newRig(t, func(c *Config) {
		c.Group = group
		c.Binds = []Bind{{Interface: "lo", Addr: netip.MustParseAddr(routerAddr)}}
	})
	r.srv.Serve()
	c := newClient(t, "127.0.0.5", 0)
	p := ipv4.NewPacketConn(c.conn)
	if err := p.SetMulticastInterface(lo); err != nil {
		t.Skipf("no multicast on lo: %v", err)
	}
	c.send(group, searchIGD1)
	for range 50 {
		if r.srv.Stats().Searches > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r.srv.Stats().Searches == 0 {
		t.Skipf("group search not delivered over lo: %+v", r.srv.Stats())
	}
	r.clk.Advance(100 * time.Millisecond)
	if b, from := c.read(2 * time.Second); b == nil || from != r.uni {
		t.Fatalf("got %q from %v, want an answer from %v", b, from, r.uni)
	}
}
