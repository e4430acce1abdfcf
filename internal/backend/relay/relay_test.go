package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/porttest"
)

// wait bounds every wait in these tests. It is generous on purpose: it
// only limits how long a broken test hangs, it never asserts speed.
const wait = 10 * time.Second

var (
	lo  = netip.MustParseAddr("127.0.0.1")
	lo2 = netip.MustParseAddr("127.0.0.2")
	lo6 = netip.MustParseAddr("::1")
	t0  = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

// newRelay returns a relay on a fake clock, closed at the end of the test,
// where Close must leave no goroutine behind.
func newRelay(t testing.TB, c Config) (*Relay, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.NewFake(t0)
	c.Clock = clk
	r := New(c)
	t.Cleanup(func() {
		r.Close()
		if n := r.Stats().Goroutines; n != 0 {
			t.Errorf("after Close: %d relay goroutines, want 0", n)
		}
	})
	return r, clk
}

// freePort returns a port that was free on 127.0.0.1 for proto a moment ago.
func freePort(t testing.TB, proto mapping.Protocol) uint16 {
	t.Helper()
	return freePortOn(t, proto, lo)
}

// freePortOn returns a port that was free on addr for proto a moment ago,
// outside the ephemeral range (porttest).
func freePortOn(t testing.TB, proto mapping.Protocol, addr netip.Addr) uint16 {
	t.Helper()
	if proto == mapping.TCP {
		return porttest.Free(t, "tcp", addr)
	}
	return porttest.Free(t, "udp", addr)
}

// bindPort binds addr:port for proto and reports whether that succeeded; the
// socket is closed at the end of the test.
func bindPort(t testing.TB, proto mapping.Protocol, ap netip.AddrPort) error {
	t.Helper()
	var c io.Closer
	var err error
	if proto == mapping.TCP {
		c, err = net.Listen("tcp", ap.String())
	} else {
		c, err = net.ListenPacket("udp", ap.String())
	}
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return err
}

// mkMap is a mapping of proto from ext to internal.
func mkMap(proto mapping.Protocol, ext, internal netip.AddrPort) mapping.Mapping {
	return mapping.Mapping{Key: mapping.Key{Proto: proto, External: ext}, Internal: internal, Client: internal.Addr()}
}

// restricted is m limited to one remote host.
func restricted(m mapping.Mapping, remote netip.Addr) mapping.Mapping {
	m.Remote = remote
	return m
}

func changes(op backend.Op, ms ...mapping.Mapping) []backend.Change {
	cs := make([]backend.Change, len(ms))
	for i, m := range ms {
		cs[i] = backend.Change{Op: op, Mapping: m}
	}
	return cs
}

func mustApply(t testing.TB, r *Relay, cs ...backend.Change) {
	t.Helper()
	if err := r.Apply(context.Background(), cs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// listenerOf returns the socket serving k, or nil.
func listenerOf(r *Relay, k mapping.Key) *listener {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lns[r.lnKeyOf(k)]
}

// tcpEcho starts a line server on 127.0.0.1 that answers each line with
// "tag:line" and, on the client's EOF (a half-close), sends "tag:eof" and
// closes.
func tcpEcho(t testing.TB, tag string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						fmt.Fprintf(c, "%s:eof\n", tag)
						return
					}
					fmt.Fprintf(c, "%s:%s", tag, line)
				}
			})
		}
	})
	return netip.MustParseAddrPort(l.Addr().String())
}

// tcpClient connects from the address from (any port) to to.
func tcpClient(t testing.TB, from netip.Addr, to netip.AddrPort) (*net.TCPConn, error) {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(clock.Real{}.Now().Add(wait))
	return c.(*net.TCPConn), nil
}

// say sends one line on c and returns the answer line without "\n".
func say(c net.Conn, br *bufio.Reader, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := br.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

// udpEcho starts a server on 127.0.0.1 that answers each datagram with
// "tag|source|payload", or echoes it unchanged when tag is empty. It
// returns its address and a count of datagrams received.
func udpEcho(t testing.TB, tag string) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { c.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, bufSize)
		for {
			k, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			n.Add(1)
			out := buf[:k]
			if tag != "" {
				out = fmt.Appendf(nil, "%s|%s|%s", tag, src, buf[:k])
			}
			c.WriteToUDPAddrPort(out, src)
		}
	})
	return netip.MustParseAddrPort(c.LocalAddr().String()), &n
}

// udpClient is a UDP socket on from, closed at the end of the test.
func udpClient(t testing.TB, from netip.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends payload from c to to and returns the reply's "tag|source|payload"
// fields.
func ask(t testing.TB, c *net.UDPConn, to netip.AddrPort, payload string) (tag string, src netip.AddrPort, echoed string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(payload), to); err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
	c.SetReadDeadline(clock.Real{}.Now().Add(wait))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("reply from %s: %v", to, err)
	}
	f := strings.SplitN(string(buf[:n]), "|", 3)
	if len(f) != 3 {
		t.Fatalf("reply %q: want tag|src|payload", buf[:n])
	}
	return f[0], netip.MustParseAddrPort(f[1]), f[2]
}

func TestNewPanicsWithoutClock(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without a Clock did not panic")
		}
	}()
	New(Config{})
}

func TestNewDefaults(t *testing.T) {
	r, _ := newRelay(t, Config{})
	want := Config{
		Clock: r.cfg.Clock, DialTimeout: DefaultDialTimeout, UDPIdle: DefaultUDPIdle,
		MaxConns: DefaultMaxConns, MaxSessions: DefaultMaxSessions, MaxTotal: DefaultMaxTotal,
	}
	got := r.cfg
	got.Logger = nil
	if got != want {
		t.Errorf("config after New = %+v, want %+v", got, want)
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	for _, proto := range []mapping.Protocol{mapping.TCP, mapping.UDP} {
		t.Run(proto.String(), func(t *testing.T) {
			r, _ := newRelay(t, Config{})
			echo := tcpEcho(t, "e")
			uecho, _ := udpEcho(t, "e")
			internal := echo
			if proto == mapping.UDP {
				internal = uecho
			}
			keep := mkMap(proto, netip.AddrPortFrom(lo, freePort(t, proto)), internal)
			mustApply(t, r, changes(backend.Add, keep)...)
			keepLn := listenerOf(r, keep.Key)

			// The free port sorts first, so it is bound before the taken
			// one fails.
			p1, p2 := freePort(t, proto), freePort(t, proto)
			if p1 > p2 {
				p1, p2 = p2, p1
			}
			taken := netip.AddrPortFrom(lo, p2)
			if err := bindPort(t, proto, taken); err != nil {
				t.Fatal(err)
			}
			free := netip.AddrPortFrom(lo, p1)
			err := r.Apply(context.Background(), []backend.Change{
				{Op: backend.Delete, Mapping: keep},
				{Op: backend.Add, Mapping: mkMap(proto, free, internal)},
				{Op: backend.Add, Mapping: mkMap(proto, taken, internal)},
			})
			if !errors.Is(err, backend.ErrPortUnavailable) {
				t.Fatalf("Apply over a taken port: got %v, want an error wrapping ErrPortUnavailable", err)
			}
			if !strings.Contains(err.Error(), taken.String()) {
				t.Errorf("error %q does not name %s", err, taken)
			}
			if err := bindPort(t, proto, free); err != nil {
				t.Errorf("port of the first add left bound: %v", err)
			}
			if got := r.Mappings(); len(got) != 1 || got[0] != keep {
				t.Errorf("Mappings after failed Apply = %v, want [%v]", got, keep)
			}
			if got := listenerOf(r, keep.Key); got != keepLn {
				t.Errorf("listener of the kept mapping changed")
			}
			if s := r.Stats(); s.Listeners != 1 || s.Goroutines != 1 {
				t.Errorf("Stats after failed Apply = %+v, want 1 listener, 1 goroutine", s)
			}
			if proto == mapping.TCP {
				c, err := tcpClient(t, lo, keep.External)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := say(c, bufio.NewReader(c), "still"); got != "e:still" {
					t.Errorf("kept mapping answered %q, %v; want e:still", got, err)
				}
			} else if tag, _, got := ask(t, udpClient(t, lo), keep.External, "still"); tag+got != "estill" {
				t.Errorf("kept mapping answered %s|%s, want e|still", tag, got)
			}
		})
	}
}

func TestApplyInvalid(t *testing.T) {
	ext := netip.MustParseAddrPort("127.0.0.1:4000")
	in := netip.MustParseAddrPort("127.0.0.1:5000")
	tests := []struct {
		name string
		m    mapping.Mapping
		want error
	}{
		{"protocol", mkMap(mapping.Protocol(1), ext, in), mapping.ErrUnsupported},
		{"external port 0", mkMap(mapping.TCP, netip.AddrPortFrom(lo, 0), in), mapping.ErrInvalid},
		{"no external addr", mkMap(mapping.TCP, netip.AddrPortFrom(netip.Addr{}, 4000), in), mapping.ErrInvalid},
		{"internal port 0", mkMap(mapping.TCP, ext, netip.AddrPortFrom(lo, 0)), mapping.ErrInvalid},
		{"internal unspecified", mkMap(mapping.UDP, ext, netip.MustParseAddrPort("0.0.0.0:5000")), mapping.ErrInvalid},
		{"internal zero", mkMap(mapping.UDP, ext, netip.AddrPort{}), mapping.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRelay(t, Config{})
			err := r.Apply(context.Background(), changes(backend.Add, tt.m))
			if !errors.Is(err, tt.want) {
				t.Errorf("Apply(add %v) = %v, want %v", tt.m, err, tt.want)
			}
			if err := r.Sync(context.Background(), []mapping.Mapping{tt.m}); !errors.Is(err, tt.want) {
				t.Errorf("Sync(%v) = %v, want %v", tt.m, err, tt.want)
			}
			if s := r.Stats(); s.Mappings != 0 || s.Listeners != 0 {
				t.Errorf("Stats = %+v, want nothing installed", s)
			}
		})
	}
}

func TestApplyIdempotence(t *testing.T) {
	r, _ := newRelay(t, Config{})
	m := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), tcpEcho(t, "a"))
	other := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), m.Internal)
	mustApply(t, r, changes(backend.Delete, other)...) // not installed: ignored
	mustApply(t, r, changes(backend.Add, m)...)
	ln := listenerOf(r, m.Key)
	c, err := tcpClient(t, lo, m.External)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if got, err := say(c, br, "1"); got != "a:1" {
		t.Fatalf("got %q, %v; want a:1", got, err)
	}
	mustApply(t, r, changes(backend.Add, m)...)                                        // same target: no-op
	mustApply(t, r, append(changes(backend.Delete, m), changes(backend.Add, m)...)...) // replaced by itself
	if listenerOf(r, m.Key) != ln {
		t.Error("listener rebound by a no-op")
	}
	if got, err := say(c, br, "2"); got != "a:2" {
		t.Errorf("connection after no-op changes: got %q, %v; want a:2", got, err)
	}
	if got := r.Mappings(); len(got) != 1 || got[0] != m {
		t.Errorf("Mappings = %v, want [%v]", got, m)
	}
}

func TestApplyUnknownOp(t *testing.T) {
	r, _ := newRelay(t, Config{})
	m := mkMap(mapping.TCP, netip.AddrPortFrom(lo, 4000), netip.AddrPortFrom(lo, 5000))
	if err := r.Apply(context.Background(), []backend.Change{{Op: 9, Mapping: m}}); err == nil {
		t.Error("Apply with op(9) succeeded")
	}
}

func TestApplyCancelled(t *testing.T) {
	r, _ := newRelay(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), netip.AddrPortFrom(lo, 5000))
	err := r.Apply(ctx, changes(backend.Add, m))
	if !errors.Is(err, context.Canceled) || errors.Is(err, backend.ErrPortUnavailable) {
		t.Errorf("Apply with a cancelled ctx = %v, want context.Canceled only", err)
	}
}

func TestListenOverride(t *testing.T) {
	r, _ := newRelay(t, Config{Listen: lo})
	port := freePort(t, mapping.TCP)
	wan := netip.MustParseAddr("203.0.113.9") // not local: bind Listen instead
	m := mkMap(mapping.TCP, netip.AddrPortFrom(wan, port), tcpEcho(t, "o"))
	mustApply(t, r, changes(backend.Add, m)...)
	c, err := tcpClient(t, lo, netip.AddrPortFrom(lo, port))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := say(c, bufio.NewReader(c), "x"); got != "o:x" {
		t.Errorf("got %q, %v; want o:x", got, err)
	}

	// A second external address on the same port would need the same
	// socket for the same remote hosts.
	clash := m
	clash.External = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), port)
	if err := r.Apply(context.Background(), changes(backend.Add, clash)); !errors.Is(err, backend.ErrPortUnavailable) {
		t.Errorf("Apply of a clashing key = %v, want ErrPortUnavailable", err)
	}
}

func TestSync(t *testing.T) {
	r, _ := newRelay(t, Config{})
	e1, e2 := tcpEcho(t, "one"), tcpEcho(t, "two")
	ext := func() netip.AddrPort { return netip.AddrPortFrom(lo, freePort(t, mapping.TCP)) }
	a, b, d := mkMap(mapping.TCP, ext(), e1), mkMap(mapping.TCP, ext(), e1), mkMap(mapping.TCP, ext(), e1)
	mustApply(t, r, changes(backend.Add, a, b, d)...)
	aLn := listenerOf(r, a.Key)

	b2 := b
	b2.Internal = e2
	c := mkMap(mapping.TCP, ext(), e1)
	want := []mapping.Mapping{a, b2, c}
	if err := r.Sync(context.Background(), want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got := r.Mappings()
	if len(got) != 3 {
		t.Fatalf("Mappings after Sync = %v, want %v", got, want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("Mappings after Sync = %v: missing %v", got, w)
		}
	}
	if listenerOf(r, a.Key) != aLn {
		t.Error("unchanged mapping's listener was rebound")
	}
	if err := bindPort(t, mapping.TCP, d.External); err != nil {
		t.Errorf("removed mapping's port still bound: %v", err)
	}
	for _, tt := range []struct {
		m    mapping.Mapping
		want string
	}{{a, "one:hi"}, {b2, "two:hi"}, {c, "one:hi"}} {
		conn, err := tcpClient(t, lo, tt.m.External)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := say(conn, bufio.NewReader(conn), "hi"); got != tt.want {
			t.Errorf("via %v: got %q, %v; want %q", tt.m.External, got, err, tt.want)
		}
	}

	if err := r.Sync(context.Background(), []mapping.Mapping{a, a}); !errors.Is(err, mapping.ErrInvalid) {
		t.Errorf("Sync with a duplicate key = %v, want ErrInvalid", err)
	}
	if len(r.Mappings()) != 3 {
		t.Errorf("failed Sync changed state: %v", r.Mappings())
	}
	if err := r.Sync(context.Background(), nil); err != nil {
		t.Fatalf("Sync(nil): %v", err)
	}
	if s := r.Stats(); s.Mappings != 0 || s.Listeners != 0 || s.Conns != 0 {
		t.Errorf("Stats after Sync(nil) = %+v, want empty", s)
	}
}

func TestClose(t *testing.T) {
	tEcho := tcpEcho(t, "t")
	uEcho, _ := udpEcho(t, "u")
	before := runtime.NumGoroutine()
	r, clk := newRelay(t, Config{})
	tm := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), tEcho)
	um := mkMap(mapping.UDP, netip.AddrPortFrom(lo, freePort(t, mapping.UDP)), uEcho)
	mustApply(t, r, changes(backend.Add, tm, um)...)
	c, err := tcpClient(t, lo, tm.External)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if got, err := say(c, br, "x"); got != "t:x" {
		t.Fatalf("got %q, %v; want t:x", got, err)
	}
	ask(t, udpClient(t, lo), um.External, "x")
	if s := r.Stats(); s.Conns != 1 || s.Sessions != 1 || s.Goroutines == 0 {
		t.Fatalf("Stats before Close = %+v, want 1 conn, 1 session, goroutines", s)
	}

	for i := range 2 {
		if err := r.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if s := r.Stats(); s != (Stats{}) {
		t.Errorf("Stats after Close = %+v, want zero", s)
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers pending after Close, want 0", n)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("relayed connection still open after Close")
	}
	for _, m := range []mapping.Mapping{tm, um} {
		if err := bindPort(t, m.Proto, m.External); err != nil {
			t.Errorf("%v still bound after Close: %v", m.Key, err)
		}
	}
	if err := r.Apply(context.Background(), changes(backend.Add, tm)); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	if err := r.Sync(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
	waitFor(t, "goroutines back to the count before New", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestRefusedAfterDelete checks that deleting a mapping closes its flows and
// its port.
func TestRefusedAfterDelete(t *testing.T) {
	r, _ := newRelay(t, Config{})
	m := mkMap(mapping.TCP, netip.AddrPortFrom(lo, freePort(t, mapping.TCP)), tcpEcho(t, "d"))
	mustApply(t, r, changes(backend.Add, m)...)
	c, err := tcpClient(t, lo, m.External)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if got, err := say(c, br, "x"); got != "d:x" {
		t.Fatalf("got %q, %v; want d:x", got, err)
	}
	mustApply(t, r, changes(backend.Delete, m)...)
	if s, err := br.ReadString('\n'); err == nil || isTimeout(err) {
		t.Errorf("read after Delete = %q, %v; want EOF or reset", s, err)
	}
	if _, err := tcpClient(t, lo, m.External); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect after Delete = %v, want connection refused", err)
	}
	if s := r.Stats(); s.Listeners != 0 || s.Conns != 0 || s.Mappings != 0 {
		t.Errorf("Stats after Delete = %+v, want empty", s)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestBackoff(t *testing.T) {
	r, clk := newRelay(t, Config{})
	l := &listener{done: make(chan struct{})}
	var d time.Duration
	for _, want := range []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond} {
		ok := make(chan bool, 1)
		go func() { ok <- r.backoff(l, &d) }()
		waitFor(t, "the backoff timer", func() bool { return clk.Pending() == 1 })
		clk.Advance(want - 1)
		select {
		case <-ok:
			t.Fatalf("backoff returned before %v", want)
		default:
		}
		clk.Advance(1)
		if !<-ok || d != want {
			t.Errorf("backoff: waited %v, want %v and true", d, want)
		}
	}
	d = time.Second
	ok := make(chan bool, 1)
	go func() { ok <- r.backoff(l, &d) }()
	waitFor(t, "the backoff timer", func() bool { return clk.Pending() == 1 })
	close(l.done)
	if <-ok {
		t.Error("backoff on a closed listener returned true")
	}
	if d != time.Second || clk.Pending() != 0 {
		t.Errorf("after close: delay %v (want 1s, the cap), %d timers pending (want 0)", d, clk.Pending())
	}
}
