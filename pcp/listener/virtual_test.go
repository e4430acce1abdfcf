package listener_test

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
	"github.com/berthd/berth/pcp/listener"
)

// absent is an address no test host carries (TEST-NET-1, RFC 5737): a
// virtual gateway address while this router is the standby.
const absent = "192.0.2.77"

func needFreeBind(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("IP_FREEBIND is Linux only")
	}
}

// COMPAT S4, RFC 6886 §3, RFC 6887 §8.3: a request to the virtual gateway
// address is answered from it, one to the router's own address from that.
func TestVirtualAddressAnswersFromItself(t *testing.T) {
	needFreeBind(t)
	r := newRig(t, rigOpts{binds: []string{"127.0.0.100"}, virtual: []string{"127.0.0.101"}})
	if got := r.addrs[1].Addr(); got != netip.MustParseAddr("127.0.0.101") {
		t.Fatalf("second socket bound to %v, want the virtual address", got)
	}
	c := newClient(t, "127.0.0.1")
	for _, srv := range r.addrs {
		b, from := c.exchange(srv, natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil))
		if b == nil || from != srv {
			t.Fatalf("request to %v: answer %x from %v, want one from %v", srv, b, from, srv)
		}
	}
}

// A standby router binds the virtual address although it does not carry
// it (IP_FREEBIND); without Virtual the same bind fails.
func TestVirtualAddressAbsentBinds(t *testing.T) {
	needFreeBind(t)
	r := newRig(t, rigOpts{binds: []string{"127.0.0.100"}, virtual: []string{absent}})
	if got := r.addrs[1].Addr(); got != netip.MustParseAddr(absent) {
		t.Fatalf("second socket bound to %v, want %s", got, absent)
	}
	bind := func(addr string, virtual bool) error {
		s, err := listener.New(listener.Config{Clock: clocktest.NewFake(t0), PCP: &pcp.Handler{},
			Binds: []listener.Bind{{Interface: "lo", Addr: netip.MustParseAddr(addr), Virtual: virtual}}})
		if err == nil {
			s.Close()
		}
		return err
	}
	if bind(absent, false) == nil {
		t.Fatalf("bound %s without Virtual: does this host carry it?", absent)
	}
	// IPv6 (IPV6_FREEBIND), where the host has IPv6 at all.
	if haveIPv6() {
		if err := bind("2001:db8::77", true); err != nil {
			t.Errorf("virtual IPv6 address: %v", err)
		}
	}
}

// haveIPv6 reports whether the host has IPv6 loopback.
func haveIPv6() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// COMPAT N10: on an interface with a virtual address the announcements
// come from it alone; a standby, which cannot send from the address it
// lacks, announces nothing there. An IPv6 virtual address leaves IPv4
// announcements to the interface's own IPv4 address.
func TestVirtualAddressAnnounces(t *testing.T) {
	needFreeBind(t)
	for _, tt := range []struct {
		name    string
		virtual string
		from    string // the source of every IPv4 announcement
		want    int
	}{
		{"active", "127.0.0.101", "127.0.0.101", 2}, // NAT-PMP and PCP, once each
		{"standby", absent, "", 0},
		{"ipv6 virtual", "2001:db8::77", "127.0.0.100", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if netip.MustParseAddr(tt.virtual).Is6() && !haveIPv6() {
				t.Skip("no IPv6 here")
			}
			watch := newClient(t, "127.0.0.1")
			lp := netip.MustParseAddrPort(watch.conn.LocalAddr().String()).Port()
			r := newRig(t, rigOpts{binds: []string{"127.0.0.100"}, virtual: []string{tt.virtual}, announcePort: lp})
			r.srv.Announce() // the first of the series goes out at once
			n := 0
			for range 4 {
				b, from := watch.read(300 * time.Millisecond)
				if b == nil {
					break
				}
				if from.Addr().String() != tt.from {
					t.Fatalf("announcement %x from %v, want only from %s", b, from, tt.from)
				}
				n++
			}
			if n != tt.want {
				t.Fatalf("got %d announcements, want %d", n, tt.want)
			}
		})
	}
}
