// Package nft is berth's kernel forwarding plane: a backend.Backend that
// programs Linux nftables over netlink (github.com/google/nftables), without
// running nft(8).
//
// berth owns one table, created by New and removed by Close. Mappings are
// elements of maps, not rules: the rules are fixed, so the per-packet cost
// (one hash lookup) and the cost of a change (one element) do not depend on
// how many mappings exist. With the default Config the kernel holds:
//
//	table ip berth {
//		map mappings {
//			type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
//			counter
//		}
//		map remote_mappings {
//			type ipv4_addr . ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
//			counter
//		}
//		chain prerouting {
//			type nat hook prerouting priority dstnat; policy accept;
//			dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @remote_mappings
//			dnat ip to ip daddr . meta l4proto . th dport map @mappings
//		}
//		chain forward {
//			type filter hook forward priority filter; policy accept;
//			ct status dnat accept
//		}
//	}
//
// mappings holds the mappings open to any remote host, keyed by (external
// address, protocol, external port); remote_mappings those restricted to one
// remote host (mapping.Key.Remote, UPnP NewRemoteHost), keyed by (remote,
// external address, protocol, external port). A restricted mapping is
// looked up first, so it wins over an unrestricted one on the same port.
// Keying by the external address lets mappings on several WAN addresses
// coexist and keeps traffic to other local addresses untouched.
//
// The forward chain's accept documents intent and lets berth's table be the
// only one on a router whose other filter tables accept by default; it
// cannot override a drop in another table (every base chain must accept).
//
// With Config.Hairpin (and Config.WANInterface), a LAN host may reach a
// mapping through the external address; with Config.PreserveSourcePort,
// outbound UDP from a mapped internal address:port leaves the WAN from the
// mapping's external address:port (COMPAT M7: consoles' "open NAT"). These
// add
//
//	map snat_udp {
//		type ipv4_addr . inet_service : ipv4_addr . inet_service
//	}
//	chain postrouting {
//		type nat hook postrouting priority srcnat - 10; policy accept;
//		iifname != "<WANInterface>" ct status dnat masquerade
//		meta l4proto udp oifname "<WANInterface>" snat ip to ip saddr . udp sport map @snat_udp
//	}
//
// (the map and second rule with PreserveSourcePort, the first rule with
// Hairpin; nft(8) lists the second without its implied "meta l4proto
// udp"). snat_udp holds one element per internal address:port of the UDP
// mappings; when several mappings share one, the one open to any remote
// host wins, then the lowest external address:port. It is maintained in
// the same batches as the DNAT maps. The chain runs before a router's usual
// masquerade at srcnat, which would otherwise bind the flow's source first.
//
// After a batch that deletes or replaces mappings, their conntrack entries
// are deleted (inbound flows to the external address:port translated to
// the internal one, and outbound UDP flows from the internal address:port
// translated to the external one), so that an established flow does not
// outlive its mapping and a new mapping of the same port to another
// internal host keeps its flows; a failure is logged only.
//
// Every element of mappings and remote_mappings carries a counter, read
// by Counters. It counts flows (their first packets), not the packets
// forwarded, except for remote_mappings (see Counter).
//
// Another process may remove what berth installed: `nft flush ruleset`,
// `nft delete table ip berth`, `nft flush table ip berth`, a firewall
// reload. New starts a monitor on the nf_tables netlink group
// (monitor.go) that notices it without polling and reports it on Lost;
// Sync then rebuilds whatever is missing, in one batch.
//
// Remote-peer filters (mapping.Mapping.Peers, PCP FILTER) are enforced
// by the set filtered, the interval set allowed and the chain prefilter
// (a filter chain at dstnat - 10, described in filter.go), maintained in the
// same batches as the maps: a packet to a filtered mapping's external
// address:port from a source no filter admits is dropped before DNAT.
// Every IPv4 filter is supported (any prefix length, with or without a
// port); IPv6 filters admit no IPv4 host and are left out, so a mapping
// with only IPv6 filters is reachable from nobody.
//
// Limits: IPv4 only (an IPv6 mapping is refused with mapping.ErrUnsupported);
// filters on a mapping restricted to one remote host (mapping.Key.Remote)
// are refused with mapping.ErrUnsupported rather than installed
// unfiltered.
package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

// DefaultTable is the table name used when Config.Table is empty.
const DefaultTable = "berth"

// Map names in berth's table.
const (
	mapDNAT       = "mappings"
	mapDNATRemote = "remote_mappings"
	mapSNATUDP    = "snat_udp"
)

// Chain names in berth's table.
const (
	chainPrerouting  = "prerouting"
	chainForward     = "forward"
	chainPostrouting = "postrouting"
)

// maxElemsPerMsg bounds the elements of one netlink message of a batch so
// that no single message approaches the socket buffer size, and so that
// its element list stays under the 64 KiB a netlink attribute's 16-bit
// length can say: the netlink library wraps a longer one without an
// error. 1,024 of the largest elements take about 61 KB
// (TestFullMessagesFit fails with 2,048).
const maxElemsPerMsg = 1024

// ErrClosed is returned (wrapped) by Apply, Sync and Counters after Close.
var ErrClosed = errors.New("nft backend is closed")

// Config configures an Nft.
type Config struct {
	// Conn is the netlink transport, as Dial opens it. Required, and used
	// by nothing else: Flush sends whatever is queued on it. The backend
	// does not close it, except after a failed batch: the backend then
	// closes its socket (CloseLasting; closing it again is harmless),
	// never sends on it again, and goes on with a Conn of its own in the
	// same network namespace (Conn.NetNS), lasting as Dial opens it when
	// PortID is set, otherwise one that opens a socket per batch (see
	// renew.go); Close and Release close that one.
	//
	// The kernel refuses a batch larger than the socket's send buffer
	// (EMSGSIZE; about 4,000 elements with the default 208 KiB), so a Sync
	// of many mappings needs LargeBuffers.
	Conn *nftables.Conn
	// PortID is the netlink port id of Conn's socket, as Dial returns it.
	// The kernel puts the committing socket's port id in every
	// notification of a transaction, so the monitor knows berth's own
	// batches by it and has the kernel drop their notifications before
	// they reach it (monitor.go), and follows the port id of the Conn
	// that replaces Conn after a failed batch. Zero, for a Conn that is
	// not lasting (it opens a socket per batch), has every change to the
	// table checked against the kernel, berth's own included.
	PortID uint32
	// Table is the name of berth's table (family ip); DefaultTable when
	// empty. A table of that name left by an earlier run is replaced
	// (unless Adopt).
	Table string
	// WANInterface is the name of the WAN interface. It is needed only by
	// Hairpin.
	WANInterface string
	// Hairpin lets hosts on other interfaces than WANInterface reach a
	// mapping through the external address, by masquerading the
	// DNATed flows that did not arrive on the WAN.
	Hairpin bool
	// PreserveSourcePort makes outbound UDP from a mapped internal
	// address:port leave WANInterface from the mapping's external
	// address:port (COMPAT M7, "open NAT"), through the snat_udp map and
	// a srcnat rule. It needs WANInterface.
	PreserveSourcePort bool
	// Conntrack is the conntrack netlink connection used to delete the
	// flows of deleted and replaced mappings, for example
	// conntrack.Dial(&netlink.Config{NetNS: fd}) in a network namespace.
	// When nil, New dials one in the calling thread's network namespace
	// (conntrack.Dial(nil)) and Close closes it; a given one is not
	// closed.
	Conntrack *conntrack.Conn
	// Logger receives one Debug record per batch. Nil discards.
	Logger *slog.Logger
	// Clock paces the conntrack flushes (see flusher); nil means the
	// real one.
	Clock clock.Clock
	// Adopt keeps an intact table left by an earlier run (see Release)
	// instead of replacing it: its mappings go on forwarding until the
	// first Sync, which reconciles them with what is wanted. A damaged or
	// missing table is created as without Adopt.
	Adopt bool
}

// Nft is the nftables backend. Create it with New. Apply, Sync, Counters
// and Close are serialised by an internal lock and are safe for concurrent
// use, as is Lost.
type Nft struct {
	cfg Config
	log *slog.Logger
	// conn is Config.Conn until a batch fails, then one the backend
	// opened (renew); changed under mu.
	conn   *nftables.Conn
	table  *nftables.Table
	dnat   *nftables.Set
	remote *nftables.Set
	snat   *nftables.Set // nil without PreserveSourcePort
	// filtered and allowed hold the remote-peer filters (filter.go).
	filtered, allowed *nftables.Set
	ct                *conntrack.Conn
	ownCT             bool     // ct was dialed by New
	fl                *flusher // deletes removed mappings' flows; nil without ct
	// mon watches for changes by other processes (monitor.go) and
	// reports them on lost; nil with a test double Conn.
	mon  *monitor
	lost chan string

	mu     sync.Mutex
	closed bool
	// installed is what the last successful batch left in the kernel,
	// by Key: the Internal address:port. Apply computes its batch against
	// it; Sync re-reads the kernel.
	installed map[key]inst
	batches   uint64
	messages  uint64
	failed    uint64
	renewed   uint64
	// users indexes the installed UDP mappings by Internal, and
	// snatKernel is what snat_udp holds: Internal → External of the
	// mapping chosen by snatWinner (PreserveSourcePort only).
	users      map[addr4][]key
	snatKernel map[addr4]addr4
	scratch    scratch // Apply's buffers
}

// Interface guard.
var _ backend.Backend = (*Nft)(nil)

// New creates berth's table with its maps and chains, in one batch, and
// returns the backend with nothing mapped. A table of the same name is
// replaced. It also starts watching for changes by other processes
// (Lost), on a netlink socket of its own in c.Conn's network namespace
// (c.Conn.NetNS). It panics if c.Conn is nil.
func New(c Config) (*Nft, error) {
	if c.Conn == nil {
		panic("nft: New: nil Conn")
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Hairpin && c.WANInterface == "" {
		return nil, fmt.Errorf("nft: new: hairpin needs the WAN interface: %w", mapping.ErrInvalid)
	}
	if c.PreserveSourcePort && c.WANInterface == "" {
		return nil, fmt.Errorf("nft: new: source-port preservation needs the WAN interface: %w", mapping.ErrInvalid)
	}
	if len(c.WANInterface) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("nft: new: interface name %q too long: %w", c.WANInterface, mapping.ErrInvalid)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Nft{
		cfg:       c,
		log:       log.With("component", "nft"),
		conn:      c.Conn,
		table:     &nftables.Table{Name: c.Table, Family: nftables.TableFamilyIPv4},
		installed: make(map[key]inst),
		ct:        c.Conntrack,
		lost:      make(chan string, 1),
	}
	n.resetSNAT()
	n.dnat, n.remote = newSets(n)
	n.filtered, n.allowed = newFilterSets(n)
	if c.PreserveSourcePort {
		n.snat = newSNATSet(n)
	}
	// The monitor starts first so that it has seen everything since the
	// table was created.
	mon, err := startMonitor(n)
	if err != nil {
		return nil, fmt.Errorf("nft: new: %w", err)
	}
	n.mon = mon
	if why := n.damaged(); c.Adopt && why == "" {
		n.log.Info("adopting the table of an earlier run; the first sync reconciles it", "table", c.Table)
	} else if err := n.create(); err != nil {
		n.mon.stop()
		return nil, fmt.Errorf("nft: new: table %s: %w", c.Table, err)
	}
	if n.ct == nil {
		ct, err := conntrack.Dial(nil)
		if err != nil {
			// Deleted mappings' flows will live until they time out.
			n.log.Warn("cannot open conntrack, flows of deleted mappings will not be flushed", "err", err)
		} else {
			n.ct, n.ownCT = ct, true
		}
	}
	if n.ct != nil {
		clk := c.Clock
		if clk == nil {
			clk = clock.Real{}
		}
		n.startFlusher(clk)
	}
	return n, nil
}

// create installs the table, replacing any of the same name.
func (n *Nft) create() error {
	if err := n.queueCreate(); err != nil {
		return err
	}
	return n.flush()
}

// newSets returns the mappings and remote_mappings maps of n's table. Every
// element carries a counter.
func newSets(n *Nft) (dnat, remote *nftables.Set) {
	val := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	dnat = &nftables.Set{
		Table:         n.table,
		Name:          mapDNAT,
		IsMap:         true,
		Concatenation: true,
		Counter:       true,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
		DataType:      val,
	}
	remote = &nftables.Set{
		Table:         n.table,
		Name:          mapDNATRemote,
		IsMap:         true,
		Concatenation: true,
		Counter:       true,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
		DataType:      val,
	}
	return dnat, remote
}

// queueCreate queues the messages that install the table: add (so that
// the delete cannot fail), delete, add again, then the maps and chains. The
// caller flushes them, possibly together with elements.
func (n *Nft) queueCreate() error {
	cc := n.conn
	cc.AddTable(n.table)
	cc.DelTable(n.table)
	cc.AddTable(n.table)
	if err := cc.AddSet(n.dnat, nil); err != nil {
		return err
	}
	if err := cc.AddSet(n.remote, nil); err != nil {
		return err
	}
	if n.snat != nil {
		if err := cc.AddSet(n.snat, nil); err != nil {
			return err
		}
	}
	if err := n.queueFilter(); err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	pre := cc.AddChain(&nftables.Chain{
		Name:     chainPrerouting,
		Table:    n.table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
		Policy:   &accept,
	})
	// ip saddr . ip daddr . meta l4proto . th dport → reg 1 (32-bit regs 8..11).
	cc.AddRule(&nftables.Rule{Table: n.table, Chain: pre, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 10},
		&expr.Payload{DestRegister: 11, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: n.remote.Name, DestRegister: 1, IsDestRegSet: true},
		dnatTo(),
	}})
	// ip daddr . meta l4proto . th dport → reg 1 (32-bit regs 8..10).
	cc.AddRule(&nftables.Rule{Table: n.table, Chain: pre, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: n.dnat.Name, DestRegister: 1, IsDestRegSet: true},
		dnatTo(),
	}})
	fwd := cc.AddChain(&nftables.Chain{
		Name:     chainForward,
		Table:    n.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &accept,
	})
	cc.AddRule(&nftables.Rule{Table: n.table, Chain: fwd, Exprs: append(ctStatusDNAT(),
		&expr.Verdict{Kind: expr.VerdictAccept})})
	if n.cfg.Hairpin || n.snat != nil {
		post := cc.AddChain(&nftables.Chain{
			Name:     chainPostrouting,
			Table:    n.table,
			Type:     nftables.ChainTypeNAT,
			Hooknum:  nftables.ChainHookPostrouting,
			Priority: postroutingPriority,
			Policy:   &accept,
		})
		ifname := make([]byte, unix.IFNAMSIZ)
		copy(ifname, n.cfg.WANInterface)
		if n.cfg.Hairpin {
			exprs := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname},
			}
			exprs = append(exprs, ctStatusDNAT()...)
			exprs = append(exprs, &expr.Masq{})
			cc.AddRule(&nftables.Rule{Table: n.table, Chain: post, Exprs: exprs})
		}
		if n.snat != nil {
			// meta l4proto udp oifname <WAN>
			// snat ip to ip saddr . udp sport map @snat_udp
			cc.AddRule(&nftables.Rule{Table: n.table, Chain: post, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: n.snat.Name, DestRegister: 1, IsDestRegSet: true},
				&expr.NAT{
					Type:        expr.NATTypeSourceNAT,
					Family:      unix.NFPROTO_IPV4,
					RegAddrMin:  1,
					RegProtoMin: 9,
					Specified:   true,
				},
			}})
		}
	}
	return nil
}

// postroutingPriority is srcnat - 10: berth's source NAT (source-port
// preservation, hairpin) decides before a router's usual masquerade at
// srcnat, which would otherwise bind the flow's source first.
var postroutingPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityNATSource - 10)

// dnatTo is "dnat ip to <addr . port in reg 1>": the address in 32-bit
// register 8 (reg 1), the port in register 9.
func dnatTo() *expr.NAT {
	return &expr.NAT{
		Type:        expr.NATTypeDestNAT,
		Family:      unix.NFPROTO_IPV4,
		RegAddrMin:  1,
		RegProtoMin: 9,
		Specified:   true,
	}
}

// ipsDstNAT is IPS_DST_NAT of enum ip_conntrack_status
// (linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// ctStatusDNAT is "ct status dnat".
func ctStatusDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// Dial opens the Conn an Nft wants: lasting (one socket for every batch)
// and with LargeBuffers, in the network namespace of the file descriptor
// netns, or in the calling thread's when netns is 0. It returns the
// socket's port id for Config.PortID. Close the Conn with CloseLasting
// after the Nft.
func Dial(netns int) (*nftables.Conn, uint32, error) {
	var port uint32
	var sock *netlink.Conn
	opt := func(c *netlink.Conn) error {
		if err := LargeBuffers(c); err != nil {
			return err
		}
		var err error
		port, err = portID(c)
		sock = c
		return err
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(opt)}
	if netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, 0, err
	}
	sockets.Store(c, sock)
	return c, port, nil
}

// portID returns the netlink port id the kernel bound c's socket to.
func portID(c *netlink.Conn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("getsockname: %w", serr)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok || nl.Pid == 0 {
		return 0, fmt.Errorf("getsockname: no netlink port id (%T)", sa)
	}
	return nl.Pid, nil
}

// LargeBuffers is an nftables.SockOption that raises the netlink socket's
// send and receive buffers to 64 MiB (SO_SNDBUFFORCE, which needs
// CAP_NET_ADMIN), enough for one batch of several hundred thousand
// elements.
func LargeBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Stats is a snapshot of an Nft's state.
type Stats struct {
	Mappings int    // installed mappings
	Batches  uint64 // batches committed by Apply and Sync
	Messages uint64 // element messages in those batches
	Failed   uint64 // batches that failed: refused by the kernel, or not sent
	Renewed  uint64 // netlink connections replaced after a failed batch
}

// Stats returns a snapshot. It is safe for concurrent use.
func (n *Nft) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Stats{Mappings: len(n.installed), Batches: n.batches, Messages: n.messages, Failed: n.failed, Renewed: n.renewed}
}

// Release stops watching for changes (Lost) and releases the backend's
// resources but leaves the table and its mappings in the kernel, for a
// next run that adopts them (Config.Adopt). Close after Release does
// nothing.
func (n *Nft) Release() error {
	first, unlock := n.shut()
	if first {
		n.closeConn()
	}
	unlock()
	return nil
}

// shut stops the monitor and marks n closed, with n.mu held until unlock
// is called. first is false when n was closed already.
func (n *Nft) shut() (first bool, unlock func()) {
	// Before the lock: the monitor's check takes it. The flusher ends
	// before conntrack is closed, with what it had queued flushed.
	n.mon.stop()
	n.stopFlusher()
	n.mu.Lock()
	if n.closed {
		return false, n.mu.Unlock
	}
	n.closed = true
	n.installed = nil
	if n.ownCT {
		n.ct.Close()
	}
	return true, n.mu.Unlock
}

// Close stops watching for changes (Lost) and removes berth's table, and
// with it every mapping, in one batch. It is idempotent; a table already
// removed by someone else is not an error. Apply, Sync and Counters fail
// after it.
func (n *Nft) Close() error {
	first, unlock := n.shut()
	defer unlock()
	if !first {
		return nil
	}
	defer n.closeConn()
	n.conn.DelTable(n.table)
	if err := n.flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: close: table %s: %w", n.table.Name, err)
	}
	return nil
}
