package relay

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

func TestUDPRelayAndIdle(t *testing.T) {
	const idle = time.Minute
	r, clk := newRelay(t, Config{UDPIdle: idle})
	echo, _ := udpEcho(t, "in")
	m := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), echo)
	mustApply(t, r, changes(backend.Add, m)...)
	c1, c2 := udpClient(t, lo), udpClient(t, lo)

	// check asks through c and returns the session's source port as seen
	// by the internal host.
	check := func(c *net.UDPConn, payload string) netip.AddrPort {
		t.Helper()
		tag, src, got := ask(t, c, m.External, payload)
		if tag != "in" || got != payload {
			t.Fatalf("reply %s|%s, want in|%s", tag, got, payload)
		}
		return src
	}
	sessions := func(want int) {
		t.Helper()
		if s := r.Stats(); s.Sessions != want {
			t.Fatalf("at +%v: %d sessions, want %d", clk.Now().Sub(t0), s.Sessions, want)
		}
	}

	s1, s2 := check(c1, "a"), check(c2, "b")
	if s1 == s2 {
		t.Errorf("two remotes share session source %s", s1)
	}
	if again := check(c1, "c"); again != s1 {
		t.Errorf("remote 1 moved from session %s to %s", s1, again)
	}
	sessions(2)

	clk.Advance(idle / 2)
	sessions(2)
	if again := check(c2, "d"); again != s2 { // refreshes remote 2 only
		t.Errorf("remote 2 moved from session %s to %s", s2, again)
	}
	clk.Advance(idle / 2)
	sessions(1) // remote 1 idle for UDPIdle

	// Holding the closed session's port proves it was closed and makes
	// the next session's port necessarily different.
	if err := bindPort(t, mapping.UDP, s1); err != nil {
		t.Fatalf("idle session's socket %s still bound: %v", s1, err)
	}
	if s1b := check(c1, "e"); s1b == s1 {
		t.Errorf("remote 1 back after idle: session %s, want a new one", s1b)
	}
	sessions(2)

	clk.Advance(idle)
	sessions(0)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers pending without sessions, want 0", n)
	}
	waitFor(t, "session goroutines to end", func() bool { return r.Stats().Goroutines == 1 })
}

func TestUDPRemoteRestriction(t *testing.T) {
	r, _ := newRelay(t, Config{})
	ext := netip.AddrPortFrom(lo, freePort(t, mapping.UDP))
	twoEcho, twoCount := udpEcho(t, "two")
	anyEcho, _ := udpEcho(t, "any")
	two := restricted(mkMap(mapping.UDP, ext, twoEcho), lo2)
	anyone := mkMap(mapping.UDP, ext, anyEcho)
	from1, from2 := udpClient(t, lo), udpClient(t, lo2)

	mustApply(t, r, changes(backend.Add, two)...)
	ln := listenerOf(r, two.Key)
	if _, err := from1.WriteToUDPAddrPort([]byte("x"), ext); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the datagram from 127.0.0.1 to be refused", func() bool { return r.Stats().Unmatched == 1 })
	if tag, _, _ := ask(t, from2, ext, "x"); tag != "two" {
		t.Errorf("from 127.0.0.2: answered by %q, want two", tag)
	}
	if n := twoCount.Load(); n != 1 {
		t.Errorf("restricted target received %d datagrams, want 1", n)
	}

	mustApply(t, r, changes(backend.Add, anyone)...)
	if listenerOf(r, anyone.Key) != ln || r.Stats().Listeners != 1 {
		t.Error("mappings on one port differing only by Remote do not share a socket")
	}
	if tag, _, _ := ask(t, from1, ext, "y"); tag != "any" {
		t.Errorf("from 127.0.0.1: answered by %q, want any", tag)
	}
	if tag, _, _ := ask(t, from2, ext, "y"); tag != "two" {
		t.Errorf("from 127.0.0.2: answered by %q, want two", tag)
	}
}

func TestUDPReplace(t *testing.T) {
	r, _ := newRelay(t, Config{})
	oldEcho, _ := udpEcho(t, "old")
	newEcho, _ := udpEcho(t, "new")
	old := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), oldEcho)
	mustApply(t, r, changes(backend.Add, old)...)
	ln := listenerOf(r, old.Key)
	c := udpClient(t, lo)
	if tag, _, _ := ask(t, c, old.External, "x"); tag != "old" {
		t.Fatalf("answered by %q, want old", tag)
	}
	repl := old
	repl.Internal = newEcho
	mustApply(t, r, append(changes(backend.Delete, old), changes(backend.Add, repl)...)...)
	if listenerOf(r, repl.Key) != ln {
		t.Error("replace rebound the socket")
	}
	if s := r.Stats(); s.Sessions != 0 {
		t.Errorf("%d sessions to the old target survive the replace, want 0", s.Sessions)
	}
	if tag, _, _ := ask(t, c, old.External, "y"); tag != "new" {
		t.Errorf("after replace: answered by %q, want new", tag)
	}
}

func TestUDPLimits(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		other  bool // the second remote goes to the second mapping
		wantOK bool // the second remote gets a session
	}{
		{"MaxSessions same mapping", Config{MaxSessions: 1}, false, false},
		{"MaxSessions other mapping", Config{MaxSessions: 1}, true, true},
		{"MaxTotal", Config{MaxTotal: 1}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRelay(t, tt.cfg)
			echo, count := udpEcho(t, "e")
			m1 := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), echo)
			m2 := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), echo)
			mustApply(t, r, changes(backend.Add, m1, m2)...)
			c1, c2 := udpClient(t, lo), udpClient(t, lo)
			ask(t, c1, m1.External, "1")
			to := m1.External
			if tt.other {
				to = m2.External
			}
			if tt.wantOK {
				ask(t, c2, to, "2")
				if s := r.Stats(); s.Sessions != 2 || s.Dropped != 0 {
					t.Errorf("Stats = %+v, want 2 sessions, no drop", s)
				}
				return
			}
			if _, err := c2.WriteToUDPAddrPort([]byte("2"), to); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the second remote's datagram to be dropped", func() bool { return r.Stats().Dropped == 1 })
			if n := count.Load(); n != 1 {
				t.Errorf("internal host received %d datagrams, want 1", n)
			}
			ask(t, c1, m1.External, "3") // the first session still works
		})
	}
}

func TestUDPLargeDatagram(t *testing.T) {
	r, _ := newRelay(t, Config{})
	echo, _ := udpEcho(t, "")
	m := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), echo)
	mustApply(t, r, changes(backend.Add, m)...)
	c := udpClient(t, lo)
	for _, size := range []int{0, 1, 1500, 65507} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := c.WriteToUDPAddrPort(msg, m.External); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(clock.Real{}.Now().Add(wait))
		buf := make([]byte, bufSize+1)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Errorf("%d-byte datagram: got %d bytes, %v", size, n, err)
		}
	}
}

// TestUDPPortUnreachable checks that an ICMP error from the internal host
// does not end the session: the service may come up later.
func TestUDPPortUnreachable(t *testing.T) {
	r, _ := newRelay(t, Config{})
	internal := netip.AddrPortFrom(lo, freePort(t, mapping.UDP))
	m := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), internal)
	mustApply(t, r, changes(backend.Add, m)...)
	c := udpClient(t, lo)
	if _, err := c.WriteToUDPAddrPort([]byte("nobody"), m.External); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a session", func() bool { return r.Stats().Sessions == 1 })
	sess := func() *session {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.targets[m.Key].sessions {
			return s
		}
		return nil
	}
	first := sess()

	// Start the service, then retry until a datagram gets through: one
	// may be lost to the ICMP error reported on send.
	srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(internal))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	buf := make([]byte, 64)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		if _, err := c.WriteToUDPAddrPort([]byte("up"), m.External); err != nil {
			t.Fatal(err)
		}
		srv.SetReadDeadline(clock.Real{}.Now().Add(50 * time.Millisecond))
		if _, _, err := srv.ReadFromUDPAddrPort(buf); err == nil {
			break
		} else if !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
			t.Fatal(err)
		}
		select {
		case <-deadline.C:
			t.Fatal("timed out waiting for a datagram through the session")
		default:
		}
	}
	if got := sess(); got != first {
		t.Error("the ICMP error replaced the session")
	}
}
