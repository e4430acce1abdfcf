// Package relay is berth's userspace forwarding plane: a backend.Backend
// that listens on each mapping's external port and copies TCP connections
// and UDP datagrams to the internal host. It is the backend used where
// nftables is not available (a plain machine, a container, `go run
// ./cmd/berthd`).
//
// Unlike a NAT, a relay does not preserve the remote's source address: the
// internal host sees connections and datagrams coming from the gateway.
//
// One socket is bound per (protocol, external address:port). Mappings that
// differ only in Key.Remote (a UPnP NewRemoteHost restriction) share it;
// each incoming connection or datagram goes to the mapping whose Remote is
// its source address, else to the unrestricted mapping, else it is refused.
// A mapping with remote-peer filters (Mapping.Peers, from PCP FILTER) then
// refuses every source its filters do not admit.
package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

// Defaults for the zero fields of Config.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultUDPIdle     = 120 * time.Second
	DefaultMaxConns    = 256
	DefaultMaxSessions = 256
	DefaultMaxTotal    = 8192
)

// bufSize holds the largest UDP payload (65,507 bytes over IPv4).
const bufSize = 64 << 10

// Config configures a Relay. Zero (or negative) limits and durations take
// the Default* values.
type Config struct {
	// Clock drives UDP idle expiry and error backoff. Required.
	Clock clock.Clock
	// Logger receives listener events at Info, bind failures at Warn and
	// per-connection events at Debug. Nil discards.
	Logger *slog.Logger
	// Listen, if valid, is the address every socket binds instead of the
	// mapping's Key.External address, for example the unspecified address
	// when the external address is not local (behind another NAT).
	Listen netip.Addr
	// DialTimeout bounds the TCP connect to the internal host.
	DialTimeout time.Duration
	// UDPIdle closes a UDP session that carried no datagram either way for
	// this long.
	UDPIdle time.Duration
	// MaxConns bounds the concurrent TCP connections of one mapping.
	MaxConns int
	// MaxSessions bounds the UDP sessions of one mapping.
	MaxSessions int
	// MaxTotal bounds TCP connections plus UDP sessions over all mappings.
	MaxTotal int
}

// Relay forwards mapped ports in user space. Create it with New. All
// methods are safe for concurrent use; Apply, Sync and Close are
// serialised.
//
// Goroutines: one per bound socket, two per relayed TCP connection and one
// per UDP session.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	clk   clock.Clock
	epoch time.Time // clk.Now() at New; session activity is kept relative to it

	// opMu serialises Apply, Sync and Close. It is held while binding so
	// that mu is not held across system calls on the control path.
	opMu sync.Mutex

	// mu guards the fields below and the listeners, targets and flows
	// they reach. targets and lns change only with opMu held as well.
	mu        sync.Mutex
	closed    bool
	targets   map[mapping.Key]*target
	lns       map[lnKey]*listener
	nconns    int // registered TCP flows
	nsess     int // registered UDP sessions
	unmatched uint64
	filtered  uint64
	dropped   uint64
	dialErrs  uint64
	janitor   func() bool // stops the pending janitor; nil when none is scheduled

	wg         sync.WaitGroup
	goroutines atomic.Int64
}

// lnKey identifies a bound socket: protocol and the address:port bound.
type lnKey struct {
	proto mapping.Protocol
	addr  netip.AddrPort
}

// listener is one bound socket and the mappings that share it.
type listener struct {
	key lnKey
	tcp *net.TCPListener // for TCP
	udp *net.UDPConn     // for UDP
	// targets maps remoteKey(Key.Remote) (the zero Addr for "any") to the
	// mapping that serves it. Guarded by Relay.mu.
	targets map[netip.Addr]*target
	closed  bool          // guarded by Relay.mu
	done    chan struct{} // closed when the socket is closed
}

// lookup returns the target serving a source address: the mapping
// restricted to it, else the unrestricted one, else nil. r.mu must be held.
func (l *listener) lookup(src netip.Addr) *target {
	if t := l.targets[remoteKey(src)]; t != nil {
		return t
	}
	return l.targets[netip.Addr{}]
}

// remoteKey is how a remote host is compared: an IPv4-mapped IPv6 address
// (from a dual-stack socket) equals its IPv4 address, and IPv6 zones, which
// a UPnP NewRemoteHost cannot carry, are ignored.
func remoteKey(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// target is one installed mapping and its live flows. A replace that keeps
// the Key keeps the target and updates m. Guarded by Relay.mu.
type target struct {
	m        mapping.Mapping
	l        *listener
	conns    map[*tcpFlow]struct{}
	sessions map[netip.AddrPort]*session // by remote source, as received
}

// New returns a Relay with nothing mapped. It panics if c.Clock is nil.
func New(c Config) *Relay {
	if c.Clock == nil {
		panic("relay: New: nil Clock")
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.UDPIdle <= 0 {
		c.UDPIdle = DefaultUDPIdle
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = DefaultMaxTotal
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.Listen = c.Listen.Unmap()
	return &Relay{
		cfg:     c,
		log:     log.With("component", "relay"),
		clk:     c.Clock,
		epoch:   c.Clock.Now(),
		targets: make(map[mapping.Key]*target),
		lns:     make(map[lnKey]*listener),
	}
}

// Interface guard.
var _ backend.Backend = (*Relay)(nil)

// Stats is a snapshot of a Relay's state and counters.
type Stats struct {
	Mappings   int // installed mappings
	Listeners  int // bound sockets (TCP listeners and UDP sockets)
	Conns      int // TCP connections being relayed
	Sessions   int // UDP sessions
	Goroutines int // relay goroutines still running; 0 after Close
	// Unmatched counts connections and datagrams refused because no
	// mapping accepts their source address.
	Unmatched uint64
	// Filtered counts connections and datagrams refused because the
	// mapping's remote-peer filters (Mapping.Peers) do not admit their
	// source.
	Filtered uint64
	// Dropped counts connections and datagrams refused by MaxConns,
	// MaxSessions or MaxTotal.
	Dropped uint64
	// DialErrors counts failed TCP connects and UDP sockets to internal
	// hosts.
	DialErrors uint64
}

// Stats returns a snapshot of the relay's counters. It is safe for
// concurrent use.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{
		Mappings:   len(r.targets),
		Listeners:  len(r.lns),
		Conns:      r.nconns,
		Sessions:   r.nsess,
		Goroutines: int(r.goroutines.Load()),
		Unmatched:  r.unmatched,
		Filtered:   r.filtered,
		Dropped:    r.dropped,
		DialErrors: r.dialErrs,
	}
}

// Mappings returns the installed mappings sorted by Key.Compare. The slice
// is the caller's. It is safe for concurrent use.
func (r *Relay) Mappings() []mapping.Mapping {
	r.mu.Lock()
	ms := make([]mapping.Mapping, 0, len(r.targets))
	for _, t := range r.targets {
		ms = append(ms, t.m)
	}
	r.mu.Unlock()
	slices.SortFunc(ms, func(a, b mapping.Mapping) int { return a.Key.Compare(b.Key) })
	return ms
}

// Close closes every socket and flow, forgets every mapping and waits for
// the relay's goroutines to end. It is idempotent and always returns nil;
// Apply and Sync fail after it.
func (r *Relay) Close() error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for k, t := range r.targets {
		r.closeFlows(t)
		delete(r.targets, k)
	}
	for k, l := range r.lns {
		r.closeListener(l)
		delete(r.lns, k)
	}
	if r.janitor != nil {
		r.janitor()
		r.janitor = nil
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// goFunc runs f in a goroutine counted by Close and Stats.Goroutines. It
// must be called either from the control path with opMu held or from a
// goroutine that is itself counted, so that wg.Add never races wg.Wait.
func (r *Relay) goFunc(f func()) {
	r.wg.Add(1)
	r.goroutines.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.goroutines.Add(-1)
		f()
	}()
}

// closeFlows closes and forgets every TCP flow and UDP session of t.
// r.mu must be held.
func (r *Relay) closeFlows(t *target) {
	for f := range t.conns {
		f.close()
		delete(t.conns, f)
		r.nconns--
	}
	for src, s := range t.sessions {
		s.close()
		delete(t.sessions, src)
		r.nsess--
	}
}

// closeFiltered closes and forgets the TCP flows and UDP sessions of t
// whose remote source t's filters no longer admit. r.mu must be held.
func (r *Relay) closeFiltered(t *target) {
	for f := range t.conns {
		if !t.m.Peers.Allows(f.src) {
			f.close()
			delete(t.conns, f)
			r.nconns--
		}
	}
	for src, s := range t.sessions {
		if !t.m.Peers.Allows(src) {
			s.close()
			delete(t.sessions, src)
			r.nsess--
		}
	}
}

// closeListener closes l's socket; its reader goroutine then ends. r.mu
// must be held.
func (r *Relay) closeListener(l *listener) {
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	l.closeSocket()
	clear(l.targets)
	r.log.Info("listener closed", "proto", l.key.proto, "addr", l.key.addr)
}

// overLimit reports whether one more flow would exceed n per mapping or
// MaxTotal. r.mu must be held.
func (r *Relay) overLimit(have, max int) bool {
	return have >= max || r.nconns+r.nsess >= r.cfg.MaxTotal
}

// backoff waits d (doubled on each call from 5ms up to 1s) on the relay's
// clock after a persistent socket error, so that a reader does not spin.
// It returns false if l was closed meanwhile.
func (r *Relay) backoff(l *listener, d *time.Duration) bool {
	switch {
	case *d == 0:
		*d = 5 * time.Millisecond
	case *d < time.Second:
		*d *= 2
	}
	ch := make(chan struct{})
	stop := r.clk.AfterFunc(*d, func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-l.done:
		stop()
		return false
	}
}
