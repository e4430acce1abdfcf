package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// session is the UDP association of one remote source address:port with a
// mapping: a socket connected to the internal host, whose replies go back
// through the listener socket to the remote.
type session struct {
	t    *target
	src  netip.AddrPort // the remote, as received on the listener socket
	to   netip.AddrPort // the internal host
	conn *net.UDPConn   // connected to to
	out  *net.UDPConn   // the listener socket
	// last is the time of the last datagram either way, as a duration
	// since Relay.epoch on the relay's clock.
	last atomic.Int64
}

// close closes the session's socket, which ends its reply goroutine.
func (s *session) close() { s.conn.Close() }

// readLoop reads datagrams on the UDP socket of l until l is closed and
// forwards each one through its session. One 64 KiB buffer serves the loop.
func (r *Relay) readLoop(l *listener) {
	buf := make([]byte, bufSize)
	var delay time.Duration
	for {
		n, src, err := l.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("udp read failed", "addr", l.key.addr, "err", err)
			if !r.backoff(l, &delay) {
				return
			}
			continue
		}
		delay = 0
		s := r.session(l, src)
		if s == nil {
			continue
		}
		// An error here is an ICMP error reported late, or the session
		// closed by the janitor a moment ago; UDP may lose the datagram.
		if _, err := s.conn.Write(buf[:n]); err != nil {
			r.log.Debug("udp send failed", "src", src, "internal", s.to, "err", err)
		}
	}
}

// session returns the session for a datagram from src on l, after
// recording activity on it, creating it if needed. It returns nil when the
// datagram must be dropped: no mapping accepts src, the mapping's
// remote-peer filters refuse it, a limit is reached or the socket to the
// internal host cannot be made.
func (r *Relay) session(l *listener, src netip.AddrPort) *session {
	now := r.sinceEpoch()
	r.mu.Lock()
	defer r.mu.Unlock()
	if l.closed {
		return nil
	}
	t := l.lookup(src.Addr())
	if t == nil {
		r.unmatched++
		r.log.Debug("udp refused", "addr", l.key.addr, "src", src, "why", "no mapping for source")
		return nil
	}
	if !t.m.Peers.Allows(src) {
		// Checked before the session lookup too: a filter change closes
		// the sessions it refuses, and this keeps a datagram racing that
		// change from slipping through.
		r.filtered++
		r.log.Debug("udp refused", "addr", l.key.addr, "src", src, "why", "remote peer filtered")
		return nil
	}
	if s := t.sessions[src]; s != nil {
		s.last.Store(now)
		return s
	}
	if r.overLimit(len(t.sessions), r.cfg.MaxSessions) {
		r.dropped++
		r.log.Debug("udp refused", "addr", l.key.addr, "src", src, "why", "session limit")
		return nil
	}
	// A connected UDP socket is made without network traffic, so holding
	// mu here costs a few system calls, not a round trip.
	to := t.m.Internal
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		r.dialErrs++
		r.log.Debug("udp session failed", "src", src, "internal", to, "err", err)
		return nil
	}
	s := &session{t: t, src: src, to: to, conn: conn, out: l.udp}
	s.last.Store(now)
	t.sessions[src] = s
	r.nsess++
	r.goFunc(func() { r.replyLoop(s) })
	r.scheduleJanitor()
	r.log.Debug("udp session open", "src", src, "internal", to, "local", conn.LocalAddr())
	return s
}

// replyLoop sends the internal host's datagrams back to the remote until
// the session is closed.
func (r *Relay) replyLoop(s *session) {
	defer r.endSession(s)
	rd, err := newReplyReader(s.conn)
	if err != nil {
		r.log.Debug("udp session failed", "src", s.src, "internal", s.to, "err", err)
		return
	}
	for {
		b, n, err := rd.read()
		if err != nil {
			// ECONNREFUSED reports an ICMP port unreachable for an earlier
			// datagram: the internal service may come back, so keep going.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		// Record activity before the reply leaves, so that whoever sees
		// the reply also sees the session refreshed.
		s.last.Store(r.sinceEpoch())
		_, err = s.out.WriteToUDPAddrPort((*b)[:n], s.src)
		rd.release(b)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("udp reply failed", "src", s.src, "internal", s.to, "err", err)
		}
	}
}

// endSession removes s from its mapping unless that was done already
// (janitor, mapping removed or retargeted), then closes it.
func (r *Relay) endSession(s *session) {
	r.mu.Lock()
	if s.t.sessions[s.src] == s {
		delete(s.t.sessions, s.src)
		r.nsess--
	}
	r.mu.Unlock()
	s.close()
	r.log.Debug("udp session closed", "src", s.src, "internal", s.to)
}

// sinceEpoch is the relay clock's time as a duration since r.epoch.
func (r *Relay) sinceEpoch() int64 { return int64(r.clk.Now().Sub(r.epoch)) }

// janitorPeriod is how often idle sessions are looked for: half of UDPIdle,
// so a session lives between UDPIdle and 1.5×UDPIdle after its last
// datagram. The floor keeps a tiny UDPIdle from scheduling a busy loop.
func (r *Relay) janitorPeriod() time.Duration {
	return max(r.cfg.UDPIdle/2, time.Millisecond)
}

// scheduleJanitor arranges for sweep to run unless it already will. r.mu
// must be held.
func (r *Relay) scheduleJanitor() {
	if r.janitor != nil || r.closed {
		return
	}
	r.janitor = r.clk.AfterFunc(r.janitorPeriod(), r.sweep)
}

// sweep closes the sessions idle for UDPIdle and reschedules itself while
// sessions remain.
func (r *Relay) sweep() {
	now := r.sinceEpoch()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.janitor = nil
	if r.closed {
		return
	}
	idle := int64(r.cfg.UDPIdle)
	for _, t := range r.targets {
		for src, s := range t.sessions {
			if now-s.last.Load() < idle {
				continue
			}
			s.close()
			delete(t.sessions, src)
			r.nsess--
			r.log.Debug("udp session idle", "src", src, "internal", s.to)
		}
	}
	if r.nsess > 0 {
		r.scheduleJanitor()
	}
}
