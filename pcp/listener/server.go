// Package listener serves UDP port 5351, the port NAT-PMP (RFC 6886) and
// PCP (RFC 6887) share (RFC 6887 Appendix A): one socket per LAN address,
// so every reply leaves from the address the request was sent to; the
// arrival-interface and source checks; a per-client rate limit; a bounded
// pool of readers; and the unsolicited announcements of both protocols.
// It hands each packet to a natpmp.Handler or a pcp.Handler by version.
//
// It is apart from the pcp and natpmp codecs so that those depend only on
// the standard library and other programs can import them.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/ratelimit"
	"github.com/berthd/berth/pcp"
)

// Handler answers one request. It returns the reply appended to
// out, or nil to drop the packet. Handlers are called concurrently.
type Handler interface {
	Handle(ctx context.Context, req []byte, from netip.AddrPort, now time.Time, out []byte) []byte
}

// Bind is one LAN address to serve on, and the interface it belongs to
// (for multicast announcements).
type Bind struct {
	Interface string
	Addr      netip.Addr
	// Virtual marks a virtual gateway address (VRRP, CARP; COMPAT S4)
	// that only the active router of a pair carries. Its socket is bound
	// with IP_FREEBIND (IPV6_FREEBIND), so the Server starts on a standby
	// router too and answers requests to the address from the moment it
	// is added, from that address (RFC 6886 §3, RFC 6887 §8.3). On its
	// interface it alone sends announcements: clients take them only from
	// their default gateway (RFC 6886 §3.2.1), and a standby, which cannot
	// send from an address it lacks, then announces nothing there
	// (COMPAT N10: no duplicate announcers in a CARP/VRRP pair).
	Virtual bool
}

// Config configures a Server. Clock is required.
type Config struct {
	Binds []Bind
	// Port is the port to bind; 0 means pcp.Port (5351). Tests bind other
	// ports on loopback.
	Port uint16
	// LAN are the source prefixes served; packets from elsewhere are
	// dropped without an answer (DESIGN: nothing answers the WAN).
	LAN []netip.Prefix
	// PCP answers version-2 packets and, if NATPMP is nil, all others;
	// NATPMP answers version-0 packets (RFC 6887 Appendix A: both share
	// port 5351). Any other version goes to PCP, whose answer is the
	// version negotiation reply (RFC 6887 §9).
	PCP, NATPMP Handler
	Clock       clock.Clock
	Logger      *slog.Logger // nil discards
	// Workers reading each socket; default 64. No goroutine is started
	// per packet. A worker waits while its request's lease reaches the
	// kernel and the disk, and the requests in flight share one netlink
	// transaction and one disk sync: with 2 the benchmark's 16 clients
	// shared each sync two at a time, and with 16, 64 clients were served
	// 16 at a time (6.5 new mappings per transaction, 9–11k/s; with 64
	// workers 12.5 per transaction and 13–14k/s).
	Workers int
	// Rate and Burst size the per-client token bucket (requests per
	// second); defaults 50 and 100. Excess is dropped, counted
	// (Stats.RateLimited) and summed up in a Warn line at most once a
	// minute, naming the source that sent the most.
	Rate  float64
	Burst int
	// MaxClients bounds the rate limiter's table; default 4096.
	MaxClients int
	// Timeout bounds the handling of one request; default 2s.
	Timeout time.Duration
	// Epoch is the shared NAT-PMP/PCP epoch, for announcements.
	Epoch func() uint32
	// NATPMPAnnouncement returns the NAT-PMP address announcement for an
	// epoch, or nil when there is none to make (no external address). It
	// is used only with a NATPMP handler, as PCP ANNOUNCE only with a PCP
	// one: a host must not be told of a protocol that is not served.
	NATPMPAnnouncement func(epoch uint32) []byte
	// AnnounceGroup4/6 and AnnouncePorts say where announcements go;
	// defaults 224.0.0.1, ff02::1 and ports 5350 and 5351 (5351 for
	// clients of the pre-RFC drafts, as miniupnpd does; COMPAT N10).
	AnnounceGroup4, AnnounceGroup6 netip.Addr
	AnnouncePorts                  []uint16
}

var discard = slog.New(slog.DiscardHandler)

// Stats are the Server's counters.
type Stats struct {
	Received, Answered, NotLAN, RateLimited, Dropped, WriteErrors uint64
}

// Server serves NAT-PMP and PCP on UDP port 5351 of each LAN address: one
// socket per address, so every reply leaves from exactly the address and
// port the request was sent to (COMPAT N1).
type Server struct {
	cfg     Config
	log     *slog.Logger
	socks   []*sock
	limiter *ratelimit.Limiter
	drops   *ratelimit.Report
	wg      sync.WaitGroup
	closed  atomic.Bool

	received, answered, notLAN, rateLimited, dropped, writeErrors atomic.Uint64

	// lanIf are the indexes of the LAN interfaces: a packet that arrived
	// on any other interface is dropped, whatever its source address
	// (Linux accepts packets for a LAN address on the WAN interface).
	lanIf map[int]bool
	// own are the bound addresses: never a client.
	own map[netip.Addr]bool
	// virtualIf are the interfaces with a Virtual bind, by name and
	// address family.
	virtualIf map[virtualKey]bool

	amu       sync.Mutex
	aStop     func() bool
	aRemain   int
	aInterval time.Duration
	aGen      uint64 // identifies the current announcement series
	// writeAnnouncement, when set (by tests only, before Announce),
	// sends announcements in place of the sockets: loopback does not
	// deliver the multicast groups they go to.
	writeAnnouncement func(from Bind, payload []byte, dst netip.AddrPort) error
}

type sock struct {
	bind    Bind
	conn    *net.UDPConn
	mcastOK bool // IPv4 multicast leaves through the bind's interface
}

// reader is one reader goroutine's buffers, reused for every packet: the
// payload and the control message. Reading a packet allocates nothing.
type reader struct {
	// buf is longer than the PCP maximum, so that an oversized request is
	// seen as oversized and answered MALFORMED_REQUEST, not truncated.
	buf []byte
	oob []byte
}

func newReader() *reader {
	return &reader{
		buf: make([]byte, pcp.MaxLen+4),
		oob: make([]byte, max(len(ipv4.NewControlMessage(ipv4.FlagInterface)), len(ipv6.NewControlMessage(ipv6.FlagInterface)))),
	}
}

// read reads one packet from k with the index of the interface it
// arrived on (0 when unknown; prepare asked for it).
func (r *reader) read(k *sock) (pkt []byte, ifIndex int, from netip.AddrPort, err error) {
	n, oobn, _, from, err := k.conn.ReadMsgUDPAddrPort(r.buf, r.oob)
	if err != nil {
		return nil, 0, from, err
	}
	return r.buf[:n], arrivalIndex(r.oob[:oobn], k.bind.Addr.Is4()), from, nil
}

// New binds every address. On error nothing stays bound.
func New(c Config) (*Server, error) {
	if c.Clock == nil {
		panic("listener: New needs a Clock")
	}
	if c.PCP == nil && c.NATPMP == nil {
		return nil, errors.New("listener: server without handlers")
	}
	if c.Port == 0 {
		c.Port = pcp.Port
	}
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Rate <= 0 {
		c.Rate = 50
	}
	if c.Burst <= 0 {
		c.Burst = 100
	}
	if c.MaxClients <= 0 {
		c.MaxClients = 4096
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if !c.AnnounceGroup4.IsValid() {
		c.AnnounceGroup4 = pcp.AnnounceGroup4
	}
	if !c.AnnounceGroup6.IsValid() {
		c.AnnounceGroup6 = pcp.AnnounceGroup6
	}
	if len(c.AnnouncePorts) == 0 {
		c.AnnouncePorts = []uint16{pcp.ClientPort, pcp.Port}
	}
	log := c.Logger
	if log == nil {
		log = discard
	}
	s := &Server{cfg: c, log: log.With("component", "pcp"), limiter: ratelimit.New(c.Rate, c.Burst, c.MaxClients),
		lanIf: make(map[int]bool), own: make(map[netip.Addr]bool), virtualIf: make(map[virtualKey]bool)}
	s.drops = ratelimit.NewReport(c.Clock, s.log, s.limiter)
	for _, b := range c.Binds {
		ap := netip.AddrPortFrom(b.Addr, c.Port)
		conn, err := listen(b, ap)
		if err != nil {
			s.closeSockets()
			return nil, fmt.Errorf("listener: listen %v: %w", ap, err)
		}
		if b.Virtual {
			s.virtualIf[keyOf(b)] = true
		}
		k := &sock{bind: b, conn: conn}
		s.socks = append(s.socks, k)
		s.own[b.Addr.Unmap()] = true
		if err := s.prepare(k); err != nil {
			s.closeSockets()
			return nil, fmt.Errorf("listener: %v: %w", ap, err)
		}
	}
	return s, nil
}

// virtualKey is an interface and an address family (IPv4 or not): an
// IPv6 virtual address says nothing about IPv4 announcements.
type virtualKey struct {
	ifName string
	v4     bool
}

func keyOf(b Bind) virtualKey { return virtualKey{b.Interface, b.Addr.Unmap().Is4()} }

// readBuffer is the receive buffer asked for each socket. A flood from one
// host is dropped by the rate limit only once read; until then it competes
// with every other client for the socket's buffer, and the default (about
// 200 KiB, some 270 small datagrams) overflows in a fraction of a
// millisecond of a flood. 4 MiB holds a few thousand.
const readBuffer = 4 << 20

// listen binds one socket, with the large receive buffer; a Virtual bind's
// with IP_FREEBIND.
func listen(b Bind, ap netip.AddrPort) (*net.UDPConn, error) {
	conn, err := bind(b, ap)
	if err != nil {
		return nil, err
	}
	if rc, err := conn.SyscallConn(); err != nil || !forceReadBuffer(rc, readBuffer) {
		conn.SetReadBuffer(readBuffer) // capped at net.core.rmem_max
	}
	return conn, nil
}

func bind(b Bind, ap netip.AddrPort) (*net.UDPConn, error) {
	if !b.Virtual {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	}
	network := "udp4"
	if !ap.Addr().Is4() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: freeBind}
	pc, err := lc.ListenPacket(context.Background(), network, ap.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// prepare asks for the arrival interface of every packet and points IPv4
// multicast at the bind's interface.
func (s *Server) prepare(k *sock) error {
	var ifi *net.Interface
	if k.bind.Interface != "" {
		var err error
		if ifi, err = net.InterfaceByName(k.bind.Interface); err != nil {
			return err
		}
		s.lanIf[ifi.Index] = true
	}
	if k.bind.Addr.Is4() {
		p := ipv4.NewPacketConn(k.conn)
		if err := p.SetControlMessage(ipv4.FlagInterface, true); err != nil {
			return fmt.Errorf("arrival interface: %w", err)
		}
		if ifi != nil {
			k.mcastOK = p.SetMulticastInterface(ifi) == nil && p.SetMulticastTTL(1) == nil
			if !k.mcastOK {
				s.log.Warn("cannot choose the multicast interface; no IPv4 announcements from this address", "addr", k.bind.Addr)
			}
		}
		return nil
	}
	p := ipv6.NewPacketConn(k.conn)
	if err := p.SetControlMessage(ipv6.FlagInterface, true); err != nil {
		return fmt.Errorf("arrival interface: %w", err)
	}
	return nil
}

// LocalAddrs are the bound addresses, in Binds order.
func (s *Server) LocalAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(s.socks))
	for i, k := range s.socks {
		out[i] = k.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	return out
}

// Serve starts the readers. It returns at once; Close stops them.
func (s *Server) Serve() {
	for _, k := range s.socks {
		s.log.Info("serving NAT-PMP and PCP", "addr", k.conn.LocalAddr(), "interface", k.bind.Interface, "virtual", k.bind.Virtual)
		for range s.cfg.Workers {
			s.wg.Add(1)
			go s.read(k)
		}
	}
}

// Close stops announcements and readers and closes the sockets; a
// pending rate-limit report is not logged.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.amu.Lock()
	if s.aStop != nil {
		s.aStop()
		s.aStop = nil
	}
	s.amu.Unlock()
	s.closeSockets()
	s.wg.Wait()
	s.drops.Close()
	return nil
}

func (s *Server) closeSockets() {
	for _, k := range s.socks {
		k.conn.Close()
	}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Received: s.received.Load(), Answered: s.answered.Load(), NotLAN: s.notLAN.Load(),
		RateLimited: s.rateLimited.Load(), Dropped: s.dropped.Load(), WriteErrors: s.writeErrors.Load(),
	}
}

func (s *Server) read(k *sock) {
	defer s.wg.Done()
	r := newReader()
	out := make([]byte, 0, pcp.MaxLen)
	for {
		pkt, ifIndex, from, err := r.read(k)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("read", "addr", k.conn.LocalAddr(), "err", err)
			continue
		}
		s.received.Add(1)
		if len(s.lanIf) > 0 && !s.lanIf[ifIndex] {
			s.notLAN.Add(1) // arrived on the WAN (or unknown) interface
			continue
		}
		if reply := s.handle(pkt, from, out[:0]); reply != nil {
			if _, err := k.conn.WriteToUDPAddrPort(reply, from); err != nil {
				s.writeErrors.Add(1)
				s.log.Debug("write", "to", from, "err", err)
				continue
			}
			s.answered.Add(1)
		}
	}
}

// handle applies the source checks and dispatches by version.
func (s *Server) handle(pkt []byte, from netip.AddrPort, out []byte) []byte {
	src := from.Addr().Unmap()
	if !s.inLAN(src) {
		s.notLAN.Add(1)
		return nil
	}
	now := s.cfg.Clock.Now()
	if !s.limiter.Allow(src, now) {
		s.rateLimited.Add(1)
		s.drops.Dropped()
		return nil
	}
	if len(pkt) < 2 {
		s.dropped.Add(1)
		return nil
	}
	h := s.cfg.PCP
	if (pkt[0] == 0 && s.cfg.NATPMP != nil) || h == nil {
		h = s.cfg.NATPMP
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	reply := h.Handle(ctx, pkt, netip.AddrPortFrom(src, from.Port()), now, out)
	if reply == nil {
		s.dropped.Add(1)
	}
	return reply
}

// inLAN reports whether a can be a LAN client: inside a LAN prefix and a
// unicast host, not the router and not a network or broadcast address. A
// reply to a spoofed broadcast source would reach every host on the link.
func (s *Server) inLAN(a netip.Addr) bool {
	a = a.WithZone("")
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || s.own[a] {
		return false
	}
	for _, p := range s.cfg.LAN {
		if p.Contains(a) {
			return !netif.IsNetworkOrBroadcast(p, a)
		}
	}
	return false
}
