package relay

import (
	"bufio"
	"net/netip"
	"testing"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

var lo3 = netip.MustParseAddr("127.0.0.3")

// filtered is m reachable only from the given prefixes.
func filtered(m mapping.Mapping, prefixes ...string) mapping.Mapping {
	ps := make([]mapping.Peer, len(prefixes))
	for i, p := range prefixes {
		ps[i] = mapping.Peer{Prefix: netip.MustParsePrefix(p)}
	}
	m.Peers = mapping.NewPeers(ps...)
	return m
}

// tcpExpect connects from `from` to ext and says "x"; want "" means the
// relay must close the connection.
func tcpExpect(t *testing.T, from netip.Addr, ext netip.AddrPort, want string) {
	t.Helper()
	c, err := tcpClient(t, from, ext)
	if err != nil {
		t.Fatal(err)
	}
	got, err := say(c, bufio.NewReader(c), "x")
	switch {
	case want == "" && (err == nil || isTimeout(err)):
		t.Errorf("from %s: got %q, %v; want the connection closed", from, got, err)
	case want != "" && got != want:
		t.Errorf("from %s: got %q, %v; want %q", from, got, err, want)
	}
}

func TestTCPPeersFilter(t *testing.T) {
	r, _ := newRelay(t, Config{})
	m := filtered(mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), tcpEcho(t, "in")), "127.0.0.2/32")
	mustApply(t, r, changes(backend.Add, m)...)
	tcpExpect(t, lo2, m.External, "in:x")
	tcpExpect(t, lo3, m.External, "")
	if s := r.Stats(); s.Filtered != 1 || s.Unmatched != 0 {
		t.Errorf("Filtered = %d, Unmatched = %d; want 1, 0", s.Filtered, s.Unmatched)
	}
}

func TestUDPPeersFilter(t *testing.T) {
	r, _ := newRelay(t, Config{})
	echo, count := udpEcho(t, "in")
	m := filtered(mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), echo), "127.0.0.2/32")
	mustApply(t, r, changes(backend.Add, m)...)
	if tag, _, _ := ask(t, udpClient(t, lo2), m.External, "x"); tag != "in" {
		t.Errorf("from 127.0.0.2: answered by %q, want in", tag)
	}
	if _, err := udpClient(t, lo3).WriteToUDPAddrPort([]byte("x"), m.External); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the datagram from 127.0.0.3 to be filtered", func() bool { return r.Stats().Filtered == 1 })
	if s := r.Stats(); s.Sessions != 1 || count.Load() != 1 {
		t.Errorf("%d sessions, %d datagrams delivered; want 1 and 1 (none for 127.0.0.3)", s.Sessions, count.Load())
	}
}

// TestPeersChange: a replace that changes only the filters keeps the
// socket and the flows of the peers still admitted, and closes the others.
func TestPeersChange(t *testing.T) {
	r, _ := newRelay(t, Config{})
	tm := filtered(mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), tcpEcho(t, "in")), "127.0.0.0/8")
	echo, _ := udpEcho(t, "in")
	um := filtered(mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), echo), "127.0.0.0/8")
	mustApply(t, r, changes(backend.Add, tm, um)...)
	tln, uln := listenerOf(r, tm.Key), listenerOf(r, um.Key)

	open := func(from netip.Addr) func(string) (string, error) {
		c, err := tcpClient(t, from, tm.External)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		return func(s string) (string, error) { return say(c, br, s) }
	}
	keep, drop := open(lo2), open(lo3)
	for _, c := range []func(string) (string, error){keep, drop} {
		if got, err := c("a"); got != "in:a" {
			t.Fatalf("before the change: got %q, %v; want in:a", got, err)
		}
	}
	u2, u3 := udpClient(t, lo2), udpClient(t, lo3)
	ask(t, u2, um.External, "a")
	ask(t, u3, um.External, "a")
	if s := r.Stats(); s.Conns != 2 || s.Sessions != 2 {
		t.Fatalf("%d connections, %d sessions before the change; want 2, 2", s.Conns, s.Sessions)
	}

	tn, un := filtered(tm, "127.0.0.2/32"), filtered(um, "127.0.0.2/32")
	mustApply(t, r, append(changes(backend.Delete, tm, um), changes(backend.Add, tn, un)...)...)
	if listenerOf(r, tn.Key) != tln || listenerOf(r, un.Key) != uln {
		t.Error("a change of filters rebound a socket")
	}
	if got, err := drop("b"); err == nil || isTimeout(err) {
		t.Errorf("connection from 127.0.0.3 after the change: got %q, %v; want it closed", got, err)
	}
	if got, err := keep("b"); got != "in:b" {
		t.Errorf("connection from 127.0.0.2 after the change: got %q, %v; want in:b", got, err)
	}
	if s := r.Stats(); s.Conns != 1 || s.Sessions != 1 {
		t.Errorf("%d connections, %d sessions after the change; want 1, 1", s.Conns, s.Sessions)
	}
	if tag, _, _ := ask(t, u2, um.External, "b"); tag != "in" {
		t.Errorf("UDP from 127.0.0.2 after the change: answered by %q, want in", tag)
	}
	if _, err := u3.WriteToUDPAddrPort([]byte("b"), um.External); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the datagram from 127.0.0.3 to be filtered", func() bool { return r.Stats().Filtered == 1 })
	tcpExpect(t, lo3, tm.External, "")
	if s := r.Stats(); s.Filtered != 2 {
		t.Errorf("Filtered = %d, want 2", s.Filtered)
	}
}
