package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// tcpFlow is one relayed TCP connection: the accepted one and, once the
// dial succeeds, the one to the internal host.
type tcpFlow struct {
	t      *target // owner; its conns set holds f while f counts against the limits
	in     *net.TCPConn
	src    netip.AddrPort
	cancel context.CancelFunc // aborts the dial

	mu     sync.Mutex
	out    *net.TCPConn
	closed bool
}

// close closes both connections and aborts a dial in progress. It is
// idempotent and safe for concurrent use.
func (f *tcpFlow) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	f.cancel()
	f.in.Close()
	if f.out != nil {
		f.out.Close()
	}
}

// setOut records the dialled connection, or closes it and reports false if
// the flow was closed during the dial.
func (f *tcpFlow) setOut(c *net.TCPConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.out = c
	return true
}

// pipe copies src to dst until EOF, then half-closes dst so the peer sees
// the EOF too. On an error it closes the whole flow, which ends the other
// direction. It returns the bytes copied.
func (f *tcpFlow) pipe(dst, src *net.TCPConn) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		f.close()
		return n
	}
	if err := dst.CloseWrite(); err != nil {
		f.close()
	}
	return n
}

// acceptLoop accepts connections on l until l is closed.
func (r *Relay) acceptLoop(l *listener) {
	var delay time.Duration
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait rather than spin.
			r.log.Debug("accept failed", "addr", l.key.addr, "err", err)
			if !r.backoff(l, &delay) {
				return
			}
			continue
		}
		delay = 0
		r.admit(l, c)
	}
}

// admit hands an accepted connection to the mapping serving its source and
// starts relaying it, or closes it when no mapping accepts the source, the
// mapping's remote-peer filters refuse it or a limit is reached.
func (r *Relay) admit(l *listener, c *net.TCPConn) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		c.Close()
		return
	}
	src := ta.AddrPort()
	r.mu.Lock()
	if l.closed {
		r.mu.Unlock()
		c.Close()
		return
	}
	var why string
	t := l.lookup(src.Addr())
	switch {
	case t == nil:
		r.unmatched++
		why = "no mapping for source"
	case !t.m.Peers.Allows(src):
		r.filtered++
		why = "remote peer filtered"
	case r.overLimit(len(t.conns), r.cfg.MaxConns):
		r.dropped++
		why = "connection limit"
	}
	if why != "" {
		r.mu.Unlock()
		c.Close()
		r.log.Debug("tcp refused", "addr", l.key.addr, "src", src, "why", why)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &tcpFlow{t: t, in: c, src: src, cancel: cancel}
	t.conns[f] = struct{}{}
	r.nconns++
	to := t.m.Internal
	r.goFunc(func() { r.relayTCP(ctx, f, to) })
	r.mu.Unlock()
}

// relayTCP dials the internal host and copies both ways until both
// directions end or the flow is closed.
func (r *Relay) relayTCP(ctx context.Context, f *tcpFlow, to netip.AddrPort) {
	defer r.forget(f)
	d := net.Dialer{Timeout: r.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", to.String())
	if err != nil {
		if ctx.Err() == nil {
			r.mu.Lock()
			r.dialErrs++
			r.mu.Unlock()
			r.log.Debug("tcp dial failed", "src", f.src, "internal", to, "err", err)
		}
		return
	}
	out := c.(*net.TCPConn)
	if !f.setOut(out) {
		return
	}
	r.log.Debug("tcp open", "src", f.src, "internal", to)
	up := make(chan int64, 1)
	r.goFunc(func() { up <- f.pipe(out, f.in) })
	down := f.pipe(f.in, out)
	r.log.Debug("tcp closed", "src", f.src, "internal", to, "sent", <-up, "received", down)
}

// forget removes f from its mapping unless that was done already (mapping
// removed or retargeted), then closes it, so that a peer that sees the
// close also sees the counts updated.
func (r *Relay) forget(f *tcpFlow) {
	r.mu.Lock()
	if _, ok := f.t.conns[f]; ok {
		delete(f.t.conns, f)
		r.nconns--
	}
	r.mu.Unlock()
	f.close()
}
