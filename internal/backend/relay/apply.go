package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// ErrClosed is returned (wrapped) by Apply and Sync after Close.
var ErrClosed = errors.New("relay is closed")

// Apply applies a batch all-or-nothing (backend.Backend).
//
// Phase 1 binds every socket the batch newly needs; if a bind fails, the
// sockets bound so far are closed and the error wraps
// backend.ErrPortUnavailable and names the port, with the relay unchanged.
// Phase 2 cannot fail: it switches mappings and closes the sockets no
// longer needed, together with their flows.
//
// A Delete of a Key that is not installed is ignored. An Add of an
// installed Key replaces it: the socket is kept; the mapping's flows are
// closed if Internal changed, and if only Peers changed, just the flows
// from remote peers the new filters refuse. A Delete followed by an Add of
// the same Key is therefore a replace, and an Add identical to the
// installed mapping is a no-op.
func (r *Relay) Apply(ctx context.Context, cs []backend.Change) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	next, err := r.current()
	if err != nil {
		return fmt.Errorf("relay: apply: %w", err)
	}
	for _, c := range cs {
		switch c.Op {
		case backend.Add:
			if err := r.validate(c.Mapping); err != nil {
				return fmt.Errorf("relay: apply: %w", err)
			}
			next[c.Mapping.Key] = c.Mapping
		case backend.Delete:
			delete(next, c.Mapping.Key)
		default:
			return fmt.Errorf("relay: apply: %s of %s: unknown operation", c.Op, c.Mapping.Key)
		}
	}
	return r.commit(ctx, next)
}

// Sync makes the installed mappings exactly want (backend.Backend), with
// the same all-or-nothing guarantee and replace rules as Apply. want must
// not hold two mappings with the same Key.
func (r *Relay) Sync(ctx context.Context, want []mapping.Mapping) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if _, err := r.current(); err != nil {
		return fmt.Errorf("relay: sync: %w", err)
	}
	next := make(map[mapping.Key]mapping.Mapping, len(want))
	for _, m := range want {
		if err := r.validate(m); err != nil {
			return fmt.Errorf("relay: sync: %w", err)
		}
		if _, dup := next[m.Key]; dup {
			return fmt.Errorf("relay: sync: %s listed twice: %w", m.Key, mapping.ErrInvalid)
		}
		next[m.Key] = m
	}
	return r.commit(ctx, next)
}

// current returns a copy of the installed mappings, or ErrClosed.
func (r *Relay) current() (map[mapping.Key]mapping.Mapping, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	m := make(map[mapping.Key]mapping.Mapping, len(r.targets))
	for k, t := range r.targets {
		m[k] = t.m
	}
	return m, nil
}

// validate checks what the relay needs of a mapping it is asked to add.
func (r *Relay) validate(m mapping.Mapping) error {
	var why string
	err := mapping.ErrInvalid
	switch {
	case !m.Proto.Valid():
		why, err = "protocol not relayed", mapping.ErrUnsupported
	case m.External.Port() == 0:
		why = "external port 0"
	case !m.External.Addr().IsValid() && !r.cfg.Listen.IsValid():
		why = "no external address"
	case !m.Internal.Addr().IsValid() || m.Internal.Addr().IsUnspecified() || m.Internal.Port() == 0:
		why = "bad internal address " + m.Internal.String()
	default:
		return nil
	}
	return fmt.Errorf("add %s: %s: %w", m.Key, why, err)
}

// lnKeyOf is the socket a mapping key is served by.
func (r *Relay) lnKeyOf(k mapping.Key) lnKey {
	a := r.cfg.Listen
	if !a.IsValid() {
		a = k.External.Addr().Unmap()
	}
	return lnKey{proto: k.Proto, addr: netip.AddrPortFrom(a, k.External.Port())}
}

// commit makes next the installed state, all or nothing. opMu must be held
// (it guards r.lns and r.targets against mutation, so phase 1 reads them
// without mu).
func (r *Relay) commit(ctx context.Context, next map[mapping.Key]mapping.Mapping) error {
	keys := make([]mapping.Key, 0, len(next))
	for k := range next {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, mapping.Key.Compare)

	// Plan: the sockets the new state needs, and no two keys on one socket
	// for the same remote host (possible only with Config.Listen,
	// IPv4-mapped addresses or zoned remote hosts).
	type slot struct {
		lk     lnKey
		remote netip.Addr
	}
	owner := make(map[slot]mapping.Key, len(keys))
	needed := make(map[lnKey]bool)
	var missing []lnKey
	for _, k := range keys {
		lk := r.lnKeyOf(k)
		s := slot{lk, remoteKey(k.Remote)}
		if o, dup := owner[s]; dup {
			return fmt.Errorf("relay: %s and %s would share %s %s: %w",
				o, k, lk.proto, lk.addr, backend.ErrPortUnavailable)
		}
		owner[s] = k
		if needed[lk] {
			continue
		}
		needed[lk] = true
		if _, have := r.lns[lk]; !have {
			missing = append(missing, lk)
		}
	}

	// Phase 1: bind, undoing this call's binds on failure.
	bound := make([]*listener, 0, len(missing))
	for _, lk := range missing {
		l, err := r.bind(ctx, lk)
		if err != nil {
			for _, b := range bound {
				b.closeSocket()
			}
			return err
		}
		bound = append(bound, l)
	}

	// Phase 2: switch; nothing here can fail.
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range bound {
		r.lns[l.key] = l
	}
	for k, t := range r.targets {
		m, ok := next[k]
		switch {
		case !ok:
			r.closeFlows(t)
			delete(t.l.targets, remoteKey(k.Remote))
			delete(r.targets, k)
			r.log.Debug("mapping removed", "mapping", t.m)
		case m.Internal != t.m.Internal:
			r.closeFlows(t)
			r.log.Debug("mapping retargeted", "key", k, "from", t.m.Internal, "to", m.Internal)
			t.m = m
		case !m.Peers.Equal(t.m.Peers):
			t.m = m
			r.closeFiltered(t)
			r.log.Debug("mapping filters changed", "key", k, "peers", m.Peers.String())
		default:
			t.m = m
		}
	}
	for _, k := range keys {
		if _, ok := r.targets[k]; ok {
			continue
		}
		l := r.lns[r.lnKeyOf(k)]
		t := &target{
			m:        next[k],
			l:        l,
			conns:    make(map[*tcpFlow]struct{}),
			sessions: make(map[netip.AddrPort]*session),
		}
		l.targets[remoteKey(k.Remote)] = t
		r.targets[k] = t
		r.log.Debug("mapping added", "mapping", t.m)
	}
	for _, l := range bound {
		r.log.Info("listener open", "proto", l.key.proto, "addr", l.key.addr)
		if l.tcp != nil {
			r.goFunc(func() { r.acceptLoop(l) })
		} else {
			r.goFunc(func() { r.readLoop(l) })
		}
	}
	for lk, l := range r.lns {
		if len(l.targets) == 0 {
			r.closeListener(l)
			delete(r.lns, lk)
		}
	}
	return nil
}

// bind opens the socket for lk. Any failure but a cancelled ctx wraps
// backend.ErrPortUnavailable.
func (r *Relay) bind(ctx context.Context, lk lnKey) (*listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("relay: bind %s %s: %w", lk.proto, lk.addr, err)
	}
	var lc net.ListenConfig
	l := &listener{key: lk, targets: make(map[netip.Addr]*target), done: make(chan struct{})}
	var err error
	switch lk.proto {
	case mapping.TCP:
		var ln net.Listener
		if ln, err = lc.Listen(ctx, network("tcp", lk.addr.Addr()), lk.addr.String()); err == nil {
			l.tcp = ln.(*net.TCPListener)
		}
	case mapping.UDP:
		var pc net.PacketConn
		if pc, err = lc.ListenPacket(ctx, network("udp", lk.addr.Addr()), lk.addr.String()); err == nil {
			l.udp = pc.(*net.UDPConn)
		}
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("relay: bind %s %s: %w", lk.proto, lk.addr, cerr)
		}
		// Logged although returned: the Service may quietly retry on
		// another port, and the operator should still learn that another
		// program holds this one.
		r.log.Warn("bind failed", "proto", lk.proto, "addr", lk.addr, "err", err)
		return nil, fmt.Errorf("relay: bind %s %s: %w: %w", lk.proto, lk.addr, backend.ErrPortUnavailable, err)
	}
	return l, nil
}

// network picks the Go network name for binding a: IPv4 only for an IPv4
// address, dual-stack for the IPv6 unspecified address, IPv6 otherwise.
func network(base string, a netip.Addr) string {
	switch {
	case a.Is4():
		return base + "4"
	case a.IsUnspecified():
		return base
	}
	return base + "6"
}

// closeSocket closes a socket that was bound but never started.
func (l *listener) closeSocket() {
	if l.tcp != nil {
		l.tcp.Close()
	}
	if l.udp != nil {
		l.udp.Close()
	}
}
