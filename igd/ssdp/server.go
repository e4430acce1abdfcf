package ssdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/ratelimit"
)

// Port is the SSDP port (UDA 1.1 §1.1.2).
const Port = 1900

// Group is the IPv4 SSDP multicast address and port.
var Group = netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, 255, 250}), Port)

// Bind is one LAN address to serve on, and the interface it belongs to.
type Bind struct {
	// Interface is required with a multicast Group; "" (tests only)
	// means no group join and no arrival-interface check.
	Interface string
	Addr      netip.Addr // IPv4; IPv6 SSDP (ff02::c) is not served yet
	// Virtual marks a virtual gateway address (VRRP, CARP; COMPAT S4)
	// that only the active router of a pair carries. Its socket is bound
	// with FreeBind, so the Server starts on a standby router too and the
	// socket answers from the moment the address is added. On its
	// interface it stands for the router: multicast searches are answered
	// from it with it in LOCATION, and NOTIFYs advertise it alone (a
	// client would otherwise see two IGDs). Unicast searches to another
	// address are still answered from that address. While the address is
	// absent nothing can leave from it, so a standby stays silent there.
	Virtual bool
}

// Config configures a Server. Clock and Location are required.
type Config struct {
	Binds []Bind
	// LAN are the source prefixes answered (served subnets plus admin
	// configured routed subnets, COMPAT S9); everything else is ignored.
	LAN    []netip.Prefix
	Device Device
	// Location returns the LOCATION for an answer sent from lanAddr to a
	// search, so the IGD can pick a v1 or v2 description per client
	// (COMPAT D7). NOTIFYs pass Search{ST: nt, MX: -1}. It must return an
	// http URL with lanAddr as an IP literal and an explicit port (S3).
	// Called from the reader goroutines; it must not block.
	Location func(lanAddr netip.Addr, s Search) string
	// Server is the SERVER header; default "<GOOS>/1.0 UPnP/1.1 berth/1.0".
	Server string
	// BootID must change on every start (UDA 1.1 §1.2.2; COMPAT S8);
	// ConfigID changes with the description.
	BootID, ConfigID uint32
	// MaxAge is CACHE-CONTROL max-age; default 1800 s. ssdp:alive is
	// repeated every MaxAge/2.
	MaxAge time.Duration
	Clock  clock.Clock
	Logger *slog.Logger // nil discards

	// Port is the unicast port on each Bind, which all answers and
	// NOTIFYs leave from (COMPAT S4); 0 means 1900.
	Port uint16
	// Group is where multicast searches arrive; zero means
	// 239.255.255.250:1900. Tests use a loopback unicast address.
	Group netip.AddrPort
	// NotifyTo is where NOTIFYs go; zero means Group.
	NotifyTo netip.AddrPort

	// Jitter is the largest random delay before answering a multicast
	// search, whatever its MX (COMPAT S6: tailscale waits 250 ms);
	// 0 means 100 ms, negative means none. Unicast searches (S5) are
	// answered at once.
	Jitter time.Duration
	// Pace separates the answers to one search (ssdp:all has ~11);
	// 0 means 5 ms, so all leave within ~60 ms.
	Pace time.Duration
	// NotifyRepeat is how many times the first ssdp:alive set is sent
	// (UDP loss), NotifyGap apart; defaults 3 and 200 ms.
	NotifyRepeat int
	NotifyGap    time.Duration

	// SourceRate and SourceBurst bound answer datagrams per source
	// (per second); defaults 20 and 40. GlobalRate and GlobalBurst bound
	// all answers; defaults 200 and 400. SSDP is an amplification vector:
	// one 100-byte ssdp:all search earns ~11 answers of ~400 bytes.
	SourceRate, GlobalRate   float64
	SourceBurst, GlobalBurst int
	// MaxClients bounds the per-source table; default 1024.
	MaxClients int
	// MaxPending bounds answers waiting for their send time; default 256.
	// Searches that do not fit are dropped and counted as Overflow.
	MaxPending int
}

// Stats are the Server's counters.
type Stats struct {
	Received    uint64 // datagrams read
	Searches    uint64 // searches accepted for an answer (some may then Overflow)
	Answered    uint64 // answer datagrams sent
	NotLAN      uint64 // wrong interface, source outside LAN, own address
	RateLimited uint64 // searches refused by the per-source or global limit
	Ignored     uint64 // NOTIFYs, responses, searches for unknown targets
	Malformed   uint64
	Overflow    uint64 // searches dropped because MaxPending was reached
	WriteErrors uint64
	Notifies    uint64 // NOTIFY datagrams sent
}

var discard = slog.New(slog.DiscardHandler)

// Server answers M-SEARCHes and sends NOTIFYs. It holds one socket bound
// to the group (joined on each LAN interface) and one per LAN address;
// every datagram it sends leaves from a LAN address's socket, so answers
// come from <LAN addr>:1900 of the interface the search arrived on.
// Goroutines: one reader per socket and at most one pending timer each for
// delayed answers and for NOTIFYs; never one per packet.
type Server struct {
	cfg       Config
	log       *slog.Logger
	group     *sock
	socks     []*sock
	lanIf     map[int]bool        // LAN interface indexes
	virtualIf map[int]bool        // interfaces with a Virtual bind (0: Interface "")
	own       map[netip.Addr]bool // bound addresses: never a client
	perSource *ratelimit.Limiter
	global    *ratelimit.Limiter
	wg        sync.WaitGroup
	closed    atomic.Bool

	received, searches, answered, notLAN, rateLimited, ignored,
	malformed, overflow, writeErrors, notifies atomic.Uint64

	qmu   sync.Mutex
	queue queue
	qSeq  uint64
	qStop func() bool // the armed flush timer, or nil
	qAt   time.Time   // when it fires
	qGen  uint64      // identifies the armed timer

	nmu   sync.Mutex
	nStop func() bool
	nLeft int
	nGen  uint64 // identifies the armed alive timer
}

type sock struct {
	bind    Bind
	ifIndex int // 0 when Interface is ""
	conn    *net.UDPConn
	pc      *ipv4.PacketConn
	mcastOK bool // NOTIFYs leave through the bind's interface
}

// NewServer binds the group socket and one socket per LAN address. On
// error nothing stays bound.
func NewServer(c Config) (*Server, error) {
	if c.Clock == nil {
		panic("ssdp: NewServer needs a Clock")
	}
	if c.Location == nil {
		return nil, errors.New("ssdp: server without a Location func")
	}
	setDefaults(&c)
	log := c.Logger
	if log == nil {
		log = discard
	}
	s := &Server{cfg: c, log: log.With("component", "ssdp"),
		lanIf: make(map[int]bool), virtualIf: make(map[int]bool), own: make(map[netip.Addr]bool),
		perSource: ratelimit.New(c.SourceRate, c.SourceBurst, c.MaxClients),
		global:    ratelimit.New(c.GlobalRate, c.GlobalBurst, 1)}
	if err := s.listen(); err != nil {
		s.closeSockets()
		return nil, err
	}
	return s, nil
}

func setDefaults(c *Config) {
	if c.Server == "" {
		c.Server = runtime.GOOS + "/1.0 UPnP/1.1 berth/1.0"
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge * time.Second
	}
	if c.Port == 0 {
		c.Port = Port
	}
	if !c.Group.IsValid() {
		c.Group = Group
	}
	if !c.NotifyTo.IsValid() {
		c.NotifyTo = c.Group
	}
	if c.Jitter == 0 {
		c.Jitter = 100 * time.Millisecond
	}
	if c.Pace <= 0 {
		c.Pace = 5 * time.Millisecond
	}
	if c.NotifyRepeat <= 0 {
		c.NotifyRepeat = 3
	}
	if c.NotifyGap <= 0 {
		c.NotifyGap = 200 * time.Millisecond
	}
	if c.SourceRate <= 0 {
		c.SourceRate = 20
	}
	if c.SourceBurst <= 0 {
		c.SourceBurst = 40
	}
	if c.GlobalRate <= 0 {
		c.GlobalRate = 200
	}
	if c.GlobalBurst <= 0 {
		c.GlobalBurst = 400
	}
	if c.MaxClients <= 0 {
		c.MaxClients = 1024
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
}

func (s *Server) listen() error {
	var ifaces []*net.Interface
	for _, b := range s.cfg.Binds {
		if !b.Addr.Is4() {
			return fmt.Errorf("ssdp: bind %v: only IPv4 is served", b.Addr)
		}
		if b.Interface == "" && s.cfg.Group.Addr().IsMulticast() {
			// Without it there is no group join and no arrival-interface
			// check: searches from the WAN would be answered.
			return fmt.Errorf("ssdp: bind %v: no interface", b.Addr)
		}
		k := &sock{bind: b}
		if b.Interface != "" {
			ifi, err := net.InterfaceByName(b.Interface)
			if err != nil {
				return fmt.Errorf("ssdp: %w", err)
			}
			k.ifIndex = ifi.Index
			if !s.lanIf[ifi.Index] {
				ifaces = append(ifaces, ifi)
			}
			s.lanIf[ifi.Index] = true
		}
		ap := netip.AddrPortFrom(b.Addr, s.cfg.Port)
		ulc := net.ListenConfig{Control: reuseAddr}
		if b.Virtual {
			s.virtualIf[k.ifIndex] = true
			ulc.Control = func(network, address string, c syscall.RawConn) error {
				if err := reuseAddr(network, address, c); err != nil {
					return err
				}
				return FreeBind(network, address, c)
			}
		}
		upc, err := ulc.ListenPacket(context.Background(), "udp4", ap.String())
		var conn *net.UDPConn
		if err == nil {
			conn = upc.(*net.UDPConn)
		}
		if err != nil {
			return fmt.Errorf("ssdp: listen %v: %w", ap, err)
		}
		k.conn, k.pc = conn, ipv4.NewPacketConn(conn)
		s.socks = append(s.socks, k)
		s.own[b.Addr] = true
		if err := k.pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
			return fmt.Errorf("ssdp: %v: arrival interface: %w", ap, err)
		}
		k.mcastOK = b.Interface == "" || !s.cfg.NotifyTo.Addr().IsMulticast()
		if !k.mcastOK {
			ifi, _ := net.InterfaceByIndex(k.ifIndex)
			// UDA 1.1 §1.1.2: TTL 2 (COMPAT S8); our own NOTIFYs need
			// not come back to the group socket.
			k.mcastOK = ifi != nil && k.pc.SetMulticastInterface(ifi) == nil &&
				k.pc.SetMulticastTTL(2) == nil && k.pc.SetMulticastLoopback(false) == nil
			if !k.mcastOK {
				s.log.Warn("cannot choose the multicast interface; no NOTIFYs from this address", "addr", b.Addr)
			}
		}
	}
	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(context.Background(), "udp4", s.cfg.Group.String())
	if err != nil {
		return fmt.Errorf("ssdp: listen %v: %w", s.cfg.Group, err)
	}
	g := &sock{conn: pc.(*net.UDPConn)}
	g.pc = ipv4.NewPacketConn(g.conn)
	s.group = g
	if err := g.pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		return fmt.Errorf("ssdp: group: arrival interface: %w", err)
	}
	if s.cfg.Group.Addr().IsMulticast() {
		dst := net.UDPAddrFromAddrPort(s.cfg.Group)
		for _, ifi := range ifaces {
			if err := g.pc.JoinGroup(ifi, dst); err != nil {
				return fmt.Errorf("ssdp: join %v on %s: %w", s.cfg.Group.Addr(), ifi.Name, err)
			}
		}
	}
	return nil
}

// LocalAddrs are the unicast sockets' addresses, in Binds order.
func (s *Server) LocalAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(s.socks))
	for i, k := range s.socks {
		out[i] = k.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	return out
}

// GroupAddr is the group socket's address.
func (s *Server) GroupAddr() netip.AddrPort {
	return s.group.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Serve starts the readers and the ssdp:alive schedule: NotifyRepeat sets
// NotifyGap apart, then one set every MaxAge/2 (COMPAT S8). It returns at
// once; Close stops everything.
func (s *Server) Serve() {
	s.wg.Add(1)
	go s.read(s.group, true)
	for _, k := range s.socks {
		s.log.Info("serving SSDP", "addr", k.conn.LocalAddr(), "interface", k.bind.Interface, "virtual", k.bind.Virtual)
		s.wg.Add(1)
		go s.read(k, false)
	}
	s.nmu.Lock()
	defer s.nmu.Unlock()
	s.nLeft = s.cfg.NotifyRepeat
	s.aliveLocked()
}

// Announce restarts the ssdp:alive schedule now, with its repeats: for
// when a virtual gateway address (COMPAT S4) has just come to this router
// and the LAN should learn of it before its next search.
func (s *Server) Announce() {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.closed.Load() {
		return
	}
	if s.nStop != nil {
		s.nStop()
		s.nStop = nil
	}
	s.nLeft = s.cfg.NotifyRepeat
	s.aliveLocked()
}

// Close stops the schedule, multicasts ssdp:byebye for every target,
// closes the sockets and waits for the readers. Answers still waiting
// for their send time are dropped.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.nmu.Lock()
	if s.nStop != nil {
		s.nStop()
		s.nStop = nil
	}
	s.nmu.Unlock()
	s.qmu.Lock()
	if s.qStop != nil {
		s.qStop()
		s.qStop = nil
	}
	s.queue = nil
	s.qmu.Unlock()
	s.notify(true)
	s.closeSockets()
	s.wg.Wait()
	return nil
}

func (s *Server) closeSockets() {
	if s.group != nil {
		s.group.conn.Close()
	}
	for _, k := range s.socks {
		k.conn.Close()
	}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Received: s.received.Load(), Searches: s.searches.Load(), Answered: s.answered.Load(),
		NotLAN: s.notLAN.Load(), RateLimited: s.rateLimited.Load(), Ignored: s.ignored.Load(),
		Malformed: s.malformed.Load(), Overflow: s.overflow.Load(), WriteErrors: s.writeErrors.Load(),
		Notifies: s.notifies.Load(),
	}
}

func (s *Server) read(k *sock, multicast bool) {
	defer s.wg.Done()
	// One byte more than accepted, so an oversized search is seen as one.
	buf := make([]byte, MaxSearchLen+1)
	for {
		n, cm, src, err := k.pc.ReadFrom(buf)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("read", "addr", k.conn.LocalAddr(), "err", err)
			continue
		}
		ifIndex := 0
		if cm != nil {
			ifIndex = cm.IfIndex
		}
		var from netip.AddrPort
		if u, ok := src.(*net.UDPAddr); ok {
			from = u.AddrPort()
		}
		to := k
		if multicast {
			to = nil
		}
		s.handle(buf[:n], from, ifIndex, to)
	}
}

// handle answers one datagram. k is the unicast socket it arrived on, or
// nil for the group socket.
func (s *Server) handle(pkt []byte, from netip.AddrPort, ifIndex int, k *sock) {
	s.received.Add(1)
	src := from.Addr().Unmap()
	// Linux accepts datagrams for a LAN address on the WAN interface, and
	// group traffic on every interface some socket joined: check both the
	// interface and the source (COMPAT S9, "Security history").
	if (len(s.lanIf) > 0 && !s.lanIf[ifIndex]) || from.Port() == 0 || !s.inLAN(src) {
		s.notLAN.Add(1)
		return
	}
	req, err := ParseSearch(pkt)
	if err != nil {
		if errors.Is(err, ErrNotSearch) {
			s.ignored.Add(1) // other devices' NOTIFYs and answers
		} else {
			s.malformed.Add(1)
			s.log.Debug("bad search", "from", from, "err", err)
		}
		return
	}
	answers := Matches(req.ST, s.cfg.Device)
	if len(answers) == 0 {
		s.ignored.Add(1)
		return
	}
	multicast := k == nil
	if multicast {
		if k = s.pick(src, ifIndex); k == nil {
			s.notLAN.Add(1)
			return
		}
	}
	now := s.cfg.Clock.Now()
	if !s.perSource.AllowN(src, len(answers), now) || !s.global.AllowN(netip.Addr{}, len(answers), now) {
		s.rateLimited.Add(1)
		return
	}
	s.searches.Add(1)
	s.log.Debug("search", "from", from, "st", req.ST, "mx", req.MX, "ua", req.UserAgent, "multicast", multicast)
	loc := s.cfg.Location(k.bind.Addr, req)
	maxAge := int(s.cfg.MaxAge / time.Second)
	pkts := make([][]byte, len(answers))
	for i, a := range answers {
		pkts[i] = Response{ST: a.ST, USN: a.USN, Location: loc, Server: s.cfg.Server,
			BootID: s.cfg.BootID, ConfigID: s.cfg.ConfigID, MaxAge: maxAge, Date: now}.AppendTo(nil)
	}
	to := netip.AddrPortFrom(src, from.Port()) // S5: even if it is 1900
	var delay time.Duration
	if multicast {
		delay = s.jitter(req.MX)
	}
	if delay == 0 {
		if s.write(k, pkts[0], to) {
			s.answered.Add(1)
		}
		pkts, delay = pkts[1:], s.cfg.Pace
	}
	s.enqueue(k, to, pkts, now, delay)
}

// jitter picks the delay of a multicast answer: at most Jitter and at
// most MX seconds; MX 0 means at once.
func (s *Server) jitter(mx int) time.Duration {
	d := s.cfg.Jitter
	if mx >= 0 {
		d = min(d, time.Duration(mx)*time.Second)
	}
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// pick chooses the socket to answer a multicast search from: one on the
// arrival interface, a Virtual one if the interface has any (COMPAT S4),
// preferably in the same LAN prefix as the source.
func (s *Server) pick(src netip.Addr, ifIndex int) *sock {
	if len(s.lanIf) == 0 {
		ifIndex = 0 // binds without an interface (tests)
	}
	virtual := s.virtualIf[ifIndex]
	var first *sock
	for _, k := range s.socks {
		if k.ifIndex != ifIndex || k.bind.Virtual != virtual {
			continue
		}
		if first == nil {
			first = k
		}
		for _, p := range s.cfg.LAN {
			if p.Contains(src) && p.Contains(k.bind.Addr) {
				return k
			}
		}
	}
	return first
}

// inLAN reports whether a can be a LAN client: inside a LAN prefix and a
// unicast host, not the router and not a network or broadcast address (a
// reply to a spoofed broadcast source would reach every host).
func (s *Server) inLAN(a netip.Addr) bool {
	if !a.Is4() || a.IsUnspecified() || a.IsMulticast() || s.own[a] {
		return false
	}
	for _, p := range s.cfg.LAN {
		if p.Contains(a) {
			return !netif.IsNetworkOrBroadcast(p, a)
		}
	}
	return false
}

func (s *Server) write(k *sock, b []byte, to netip.AddrPort) bool {
	if _, err := k.conn.WriteToUDPAddrPort(b, to); err != nil {
		s.writeErrors.Add(1)
		if k.bind.Virtual && errors.Is(err, syscall.ENETUNREACH) {
			err = fmt.Errorf("virtual address absent (standby router?): %w", err)
		}
		s.log.Debug("write", "from", k.conn.LocalAddr(), "to", to, "err", err)
		return false
	}
	return true
}

// aliveLocked sends one ssdp:alive set and schedules the next. Called
// with nmu held.
func (s *Server) aliveLocked() {
	if s.closed.Load() {
		return
	}
	s.notify(false)
	d := s.cfg.NotifyGap
	if s.nLeft--; s.nLeft <= 0 {
		d, s.nLeft = s.cfg.MaxAge/2, 1
	}
	s.nGen++
	gen := s.nGen
	s.nStop = s.cfg.Clock.AfterFunc(d, func() {
		s.nmu.Lock()
		defer s.nmu.Unlock()
		if gen != s.nGen {
			return // replaced by Announce while it waited for the lock
		}
		s.aliveLocked()
	})
}

// notify multicasts one NOTIFY per target from every LAN address, but
// only from the Virtual ones on an interface that has any (COMPAT S4).
func (s *Server) notify(byebye bool) {
	host := s.cfg.Group.String()
	maxAge := int(s.cfg.MaxAge / time.Second)
	targets := s.cfg.Device.Targets()
	for _, k := range s.socks {
		if !k.mcastOK {
			continue // it could leave through the WAN
		}
		if !k.bind.Virtual && s.virtualIf[k.ifIndex] {
			continue // the virtual address stands for the router here
		}
		for _, a := range targets {
			var n Notify
			if byebye {
				n = Byebye(a, s.cfg.BootID, s.cfg.ConfigID)
			} else {
				loc := s.cfg.Location(k.bind.Addr, Search{ST: a.ST, MX: -1})
				n = Alive(a, loc, s.cfg.Server, s.cfg.BootID, s.cfg.ConfigID, maxAge)
			}
			n.Host = host
			if s.write(k, n.AppendTo(nil), s.cfg.NotifyTo) {
				s.notifies.Add(1)
			}
		}
	}
}
