package relay

import (
	"bufio"
	"io"
	"net/netip"
	"testing"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

func TestTCPRelay(t *testing.T) {
	tests := []struct {
		name string
		ext  netip.Addr // external address the relay binds
	}{
		{"IPv4", lo},
		{"IPv6 to IPv4", lo6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRelay(t, Config{})
			m := mkMap(mapping.TCP, netip.AddrPortFrom(tt.ext, freePortOn(t, mapping.TCP, tt.ext)), tcpEcho(t, "in"))
			mustApply(t, r, changes(backend.Add, m)...)
			c, err := tcpClient(t, tt.ext, m.External)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for _, line := range []string{"hello", "again"} {
				if got, err := say(c, br, line); got != "in:"+line {
					t.Fatalf("say %q: got %q, %v; want %q", line, got, err, "in:"+line)
				}
			}
			if s := r.Stats(); s.Conns != 1 || s.Listeners != 1 {
				t.Errorf("Stats = %+v, want 1 conn, 1 listener", s)
			}
			// Half-close: the server sees our EOF and still answers.
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(br)
			if string(rest) != "in:eof\n" || err != nil {
				t.Errorf("after CloseWrite read %q, %v; want %q", rest, err, "in:eof\n")
			}
			waitFor(t, "the connection to be forgotten", func() bool { return r.Stats().Conns == 0 })
		})
	}
}

func TestTCPRemoteRestriction(t *testing.T) {
	r, _ := newRelay(t, Config{})
	ext := netip.AddrPortFrom(lo, freePort(t, mapping.TCP))
	two := restricted(mkMap(mapping.TCP, ext, tcpEcho(t, "two")), lo2)
	anyone := mkMap(mapping.TCP, ext, tcpEcho(t, "any"))

	// expect connects from `from` and checks the answer; "" means refused.
	expect := func(from netip.Addr, want string) {
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

	mustApply(t, r, changes(backend.Add, two)...)
	ln := listenerOf(r, two.Key)
	expect(lo, "")
	if s := r.Stats(); s.Unmatched != 1 {
		t.Errorf("Unmatched = %d, want 1", s.Unmatched)
	}
	expect(lo2, "two:x")

	mustApply(t, r, changes(backend.Add, anyone)...)
	if listenerOf(r, anyone.Key) != ln || r.Stats().Listeners != 1 {
		t.Error("mappings on one port differing only by Remote do not share a listener")
	}
	expect(lo, "any:x")
	expect(lo2, "two:x")

	mustApply(t, r, changes(backend.Delete, two)...)
	expect(lo2, "any:x")
	mustApply(t, r, changes(backend.Delete, anyone)...)
	if s := r.Stats(); s.Listeners != 0 {
		t.Errorf("Listeners = %d after deleting both, want 0", s.Listeners)
	}
}

func TestTCPReplace(t *testing.T) {
	r, _ := newRelay(t, Config{})
	old := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), tcpEcho(t, "old"))
	mustApply(t, r, changes(backend.Add, old)...)
	ln := listenerOf(r, old.Key)
	c, err := tcpClient(t, lo, old.External)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if got, err := say(c, br, "x"); got != "old:x" {
		t.Fatalf("got %q, %v; want old:x", got, err)
	}

	repl := old
	repl.Internal = tcpEcho(t, "new")
	mustApply(t, r, append(changes(backend.Delete, old), changes(backend.Add, repl)...)...)
	if listenerOf(r, repl.Key) != ln {
		t.Error("replace rebound the listener")
	}
	if s, err := br.ReadString('\n'); err == nil || isTimeout(err) {
		t.Errorf("connection to the old target: read %q, %v; want it closed", s, err)
	}
	c2, err := tcpClient(t, lo, old.External)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := say(c2, bufio.NewReader(c2), "y"); got != "new:y" {
		t.Errorf("after replace: got %q, %v; want new:y", got, err)
	}
}

func TestTCPLimits(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		other  bool // the second connection goes to the second mapping
		wantOK bool // the second connection is relayed
	}{
		{"MaxConns same mapping", Config{MaxConns: 1}, false, false},
		{"MaxConns other mapping", Config{MaxConns: 1}, true, true},
		{"MaxTotal", Config{MaxTotal: 1}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRelay(t, tt.cfg)
			echo := tcpEcho(t, "e")
			m1 := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), echo)
			m2 := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), echo)
			mustApply(t, r, changes(backend.Add, m1, m2)...)
			c1, err := tcpClient(t, lo, m1.External)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := say(c1, bufio.NewReader(c1), "1"); got != "e:1" {
				t.Fatalf("first connection: got %q, %v; want e:1", got, err)
			}

			to := m1.External
			if tt.other {
				to = m2.External
			}
			c2, err := tcpClient(t, lo, to)
			if err != nil {
				t.Fatal(err)
			}
			got, err := say(c2, bufio.NewReader(c2), "2")
			if tt.wantOK != (got == "e:2") || isTimeout(err) {
				t.Errorf("second connection: got %q, %v; want relayed = %v", got, err, tt.wantOK)
			}
			wantDropped := uint64(1)
			if tt.wantOK {
				wantDropped = 0
			}
			if s := r.Stats(); s.Dropped != wantDropped {
				t.Errorf("Dropped = %d, want %d", s.Dropped, wantDropped)
			}

			// Freeing the first slot admits a new connection.
			c1.Close()
			if !tt.wantOK {
				waitFor(t, "the first connection to be forgotten", func() bool { return r.Stats().Conns == 0 })
				c3, err := tcpClient(t, lo, to)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := say(c3, bufio.NewReader(c3), "3"); got != "e:3" {
					t.Errorf("after the first closed: got %q, %v; want e:3", got, err)
				}
			}
		})
	}
}

func TestTCPDialFailure(t *testing.T) {
	r, _ := newRelay(t, Config{})
	nobody := netip.AddrPortFrom(lo, freePort(t, mapping.TCP))
	m := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), nobody)
	mustApply(t, r, changes(backend.Add, m)...)
	c, err := tcpClient(t, lo, m.External)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := say(c, bufio.NewReader(c), "x"); err == nil || isTimeout(err) {
		t.Errorf("got %q, %v; want the connection closed", got, err)
	}
	if s := r.Stats(); s.DialErrors != 1 || s.Conns != 0 {
		t.Errorf("Stats = %+v, want 1 dial error and no connection", s)
	}
}
