package ssdp

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

const (
	virtualAddr = "127.0.0.101" // a virtual gateway address the router carries
	absentAddr  = "192.0.2.77"  // one it does not (standby); TEST-NET-1
)

// virtualRig is the loopback rig with a second, Virtual, bind on lo.
func virtualRig(t *testing.T, vip string) *rig {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("IP_FREEBIND is Linux only")
	}
	return newRig(t, func(c *Config) {
		c.Binds = append(c.Binds, Bind{Interface: "lo", Addr: netip.MustParseAddr(vip), Virtual: true})
	})
}

// checkNotifies reads the NOTIFYs waiting at the rig's NOTIFY socket and checks
// that each came from the virtual address and names it in LOCATION.
func checkNotifies(t *testing.T, r *rig, step, nts string, vip netip.AddrPort) {
	t.Helper()
	n := 0
	for {
		b, from := r.notices.read(100 * time.Millisecond)
		if b == nil {
			break
		}
		n++
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if from != vip || req.Header.Get("Nts") != nts {
			t.Fatalf("%s: %s NOTIFY from %v, want %s from %v", step, req.Header.Get("Nts"), from, nts, vip)
		}
		if loc := req.Header.Get("Location"); nts == "ssdp:alive" && loc != "http://"+virtualAddr+":5000/rootDesc.xml" {
			t.Fatalf("%s: NOTIFY advertises LOCATION %q, want the virtual address", step, loc)
		}
	}
	if want := len(testDevice.Targets()); n != want {
		t.Fatalf("%s: got %d NOTIFYs, want %d (one set, from the virtual address only)", step, n, want)
	}
}

// COMPAT S4: on an interface with a virtual gateway address, multicast
// searches are answered from it with it in LOCATION, and only it is
// advertised; a unicast search to the router's own address is still
// answered from that address.
func TestVirtualAddressStandsForTheRouter(t *testing.T) {
	r := virtualRig(t, virtualAddr)
	vip := r.srv.LocalAddrs()[1]
	if vip.Addr() != netip.MustParseAddr(virtualAddr) {
		t.Fatalf("virtual socket bound to %v", vip)
	}
	r.srv.Serve()
	checkNotifies(t, r, "start", "ssdp:alive", vip)

	c := newClient(t, "127.0.0.5", 0)
	for _, tt := range []struct {
		name     string
		to       netip.AddrPort
		from     netip.AddrPort
		location string
	}{
		{"multicast", r.group, vip, "http://" + virtualAddr + ":5000/rootDesc.xml"},
		{"unicast to the virtual address", vip, vip, "http://" + virtualAddr + ":5000/rootDesc.xml"},
		{"unicast to the router's own address", r.uni, r.uni, "http://" + routerAddr + ":5000/rootDesc.xml"},
	} {
		c.send(tt.to, searchIGD1)
		if tt.to == r.group {
			waitStat(t, func() uint64 { return r.srv.Stats().Searches }, 1)
			r.clk.Advance(100 * time.Millisecond) // the jitter
		}
		b, from := c.read(2 * time.Second)
		if b == nil {
			t.Fatalf("%s: no answer", tt.name)
		}
		if got := parseAnswer(t, b).Header.Get("Location"); from != tt.from || got != tt.location {
			t.Errorf("%s: answer from %v with LOCATION %q, want from %v with %q", tt.name, from, got, tt.from, tt.location)
		}
		if more, _ := c.read(100 * time.Millisecond); more != nil {
			t.Errorf("%s: a second answer %q", tt.name, more)
		}
	}
	r.srv.Close()
	checkNotifies(t, r, "close", "ssdp:byebye", vip)
}

// A standby router binds the virtual address it lacks (IP_FREEBIND) and
// stays silent on that interface: no NOTIFYs, no answers to multicast
// searches (they would leave from the address it does not have). Unicast
// searches to its own address are still answered. Without Virtual the
// bind fails.
func TestVirtualAddressAbsent(t *testing.T) {
	r := virtualRig(t, absentAddr)
	if got := r.srv.LocalAddrs()[1].Addr(); got != netip.MustParseAddr(absentAddr) {
		t.Fatalf("virtual socket bound to %v, want %s", got, absentAddr)
	}
	r.srv.Serve()
	if got := r.notices.readAll(); len(got) != 0 {
		t.Fatalf("a standby sent %d NOTIFYs", len(got))
	}
	c := newClient(t, "127.0.0.5", 0)
	c.send(r.group, searchIGD1)
	waitStat(t, func() uint64 { return r.srv.Stats().Searches }, 1)
	r.clk.Advance(100 * time.Millisecond)
	if b, from := c.read(200 * time.Millisecond); b != nil {
		t.Fatalf("a standby answered a multicast search from %v: %q", from, b)
	}
	c.send(r.uni, searchIGD1)
	if b, from := c.read(2 * time.Second); b == nil || from != r.uni {
		t.Fatalf("unicast search to the router's own address: got %q from %v", b, from)
	}

	s, err := NewServer(Config{Clock: r.clk, Location: r.srv.cfg.Location, Port: r.srv.cfg.Port, Group: r.srv.cfg.Group,
		Binds: []Bind{{Interface: "lo", Addr: netip.MustParseAddr(absentAddr)}}})
	if err == nil {
		s.Close()
		t.Fatalf("bound %s without Virtual: does this host carry it?", absentAddr)
	}
}
