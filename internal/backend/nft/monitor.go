package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Loss detection. Another process can remove what berth installed: `nft
// flush ruleset`, `nft delete table ip berth`, `nft flush table ip berth`,
// a firewall reload (OpenWrt fw4), an element deleted by hand. The kernel
// announces every committed transaction on the netlink multicast group
// NFNLGRP_NFTABLES, as what nft-monitor(8) prints: one message per object
// added or deleted, then NFT_MSG_NEWGEN, which ends the transaction and
// names the process that committed it (NFTA_GEN_PROC_PID and _NAME).
// Every one of these messages carries, in its netlink header, the port id
// of the socket the transaction came from (nf_tables_api.c: ctx->portid,
// and NETLINK_CB(skb).portid for NEWGEN).
//
// The monitor listens on a socket of its own. It keeps the transactions
// that touch berth's table and came from another socket than berth's
// lasting one (Config.PortID). checkDelay after the first of them, the
// backend checks the kernel against what its batches installed (verify);
// only a difference is reported, on Lost. The check is the ground truth:
// the port id only spares it for berth's own batches. A harmless change
// by someone else is therefore not reported, and berth's own batches are
// never reported, even when the port id is unknown (every change is then
// checked) or events were lost (the receive buffer overran: the monitor
// checks).
//
// berth's own notifications do not even reach the monitor: a socket
// filter (ownFilter) has the kernel drop them, so a batch costs no wakeup
// of the monitor's goroutine and no decoding. The port id, unlike the
// thread id in NFTA_GEN_PROC_PID, needs no thread pinned per batch and
// means the same when berth runs in a PID namespace of its own (a
// container).
//
// google/nftables' Monitor is not used: it takes the socket of the
// backend's Conn, which is a lasting one in berthd (AsLasting), so it
// would read the acknowledgements of the batches; it ends for good on
// the first ENOBUFS; and it decodes every element of berth's own batches.

// checkDelay is how long the monitor lets a burst of changes by another
// process settle (one `nft -f` script may be several transactions) before
// the backend checks the kernel.
const checkDelay = 100 * time.Millisecond

// monitorBuffer is the monitor socket's receive buffer: room for the
// notifications of some ten thousand elements. berth's own large batches
// send none (quiet.go); a larger transaction by another process overruns
// it, and the monitor then checks the kernel. A variable for tests.
var monitorBuffer = 4 << 20

// Attributes of the nf_tables messages the monitor reads
// (linux/netfilter/nf_tables.h). In every object message attribute 1 is
// the table's name; attribute 2 or 3 the object's or its container's.
const (
	attrTable     = 1 // NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE
	attrRuleChain = 2 // NFTA_RULE_CHAIN
	attrSetName   = 2 // NFTA_SET_NAME, NFTA_SET_ELEM_LIST_SET
	attrChainName = 3 // NFTA_CHAIN_NAME
)

// monitor is the goroutines and socket of loss detection. Its methods are
// safe for concurrent use.
type monitor struct {
	log   *slog.Logger
	nl    *netlink.Conn // in NFNLGRP_NFTABLES
	ctl   *netlink.Conn // for requests (quiet.go)
	table string
	lost  chan<- string // Nft.lost
	check func() string // Nft.verify
	sig   chan struct{} // reader → checker: something to check; buffer 1
	done  chan struct{} // closed by stop
	stop1 sync.Once
	wg    sync.WaitGroup

	checks   atomic.Uint64 // checks run, for tests
	overruns atomic.Uint64 // receive buffer overruns, for tests
	received atomic.Uint64 // messages read, for tests

	// port is the netlink port id of berth's batches (Config.PortID, or
	// the Conn's that replaced it: follow); zero when unknown, and every
	// change to the table is then checked.
	port atomic.Uint32

	mu   sync.Mutex // guards whys and more
	whys []string   // changes not yet checked, at most maxReasons
	more int        // changes beyond whys
}

// maxReasons bounds the changes named in one report.
const maxReasons = 3

// startMonitor joins NFNLGRP_NFTABLES in the network namespace of n's Conn
// and starts the reader and the checker. It returns nil, and n.lost never
// receives, when the Conn is a test double (Conn.TestDial): there is no
// kernel to listen to.
func startMonitor(n *Nft) (*monitor, error) {
	if n.conn.TestDial != nil {
		return nil, nil
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: n.conn.NetNS})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if err := receiveBuffer(nl, monitorBuffer); err != nil {
		nl.Close()
		return nil, fmt.Errorf("monitor: receive buffer: %w", err)
	}
	if n.cfg.PortID != 0 {
		if err := nl.SetBPF(ownFilter(n.cfg.PortID)); err != nil {
			nl.Close()
			return nil, fmt.Errorf("monitor: socket filter: %w", err)
		}
	}
	if err := nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		nl.Close()
		return nil, fmt.Errorf("monitor: join nftables group: %w", err)
	}
	ctl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: n.conn.NetNS})
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	m := &monitor{
		log:   n.log,
		nl:    nl,
		ctl:   ctl,
		table: n.table.Name,
		lost:  n.lost,
		check: n.verify,
		sig:   make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	m.port.Store(n.cfg.PortID)
	m.wg.Add(2)
	go m.read()
	go m.checker()
	return m, nil
}

// receiveBuffer sets the socket's receive buffer to size bytes, beyond
// net.core.rmem_max when the process has CAP_NET_ADMIN.
func receiveBuffer(nl *netlink.Conn, size int) error {
	rc, err := nl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return nl.SetReadBuffer(size)
	}
	return nil
}

// stop ends the goroutines and closes the socket; nothing is sent on lost
// after it returns. It is idempotent and must not be called with Nft.mu
// held (the checker takes it).
func (m *monitor) stop() {
	if m == nil {
		return
	}
	m.stop1.Do(func() {
		close(m.done)
		m.nl.Close() // interrupts the reader's Receive
		m.wg.Wait()
		m.ctl.Close()
	})
}

// ownFilter is a socket filter that drops the messages whose netlink
// header names port as their sender: berth's own notifications. The
// kernel merges the notifications of one transaction into few messages,
// all from the same port. A filter loads words in network byte order and
// the header holds the port id in the host's, hence the conversion.
func ownFilter(port uint32) []bpf.RawInstruction {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], port)
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 4}, // struct nlmsghdr: nlmsg_pid
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(b[:]), SkipTrue: 1},
		bpf.RetConstant{Val: 0xffffffff}, // keep the whole message
		bpf.RetConstant{Val: 0},          // drop it
	})
	if err != nil {
		panic("nft: ownFilter: " + err.Error()) // the program is fixed
	}
	return prog
}

// follow makes port the port id of berth's batches, after the backend
// replaced its Conn (renew.go): the socket filter drops the notifications
// of the new socket, and no longer those of the closed one, whose port id
// another process's socket may get. Called with Nft.mu held.
func (m *monitor) follow(port uint32) {
	if m == nil {
		return
	}
	old := m.port.Swap(port)
	if old == port || m.stopped() {
		return
	}
	if port != 0 {
		err := m.nl.SetBPF(ownFilter(port))
		if err == nil {
			return
		}
		// Without a filter berth's own notifications reach the reader,
		// which knows them by port: harmless, only slower.
		m.log.Warn("nftables monitor cannot filter berth's own notifications", "err", err)
	}
	if old == 0 {
		return // no filter attached
	}
	if err := m.nl.RemoveBPF(); err != nil {
		m.log.Error("nftables monitor cannot remove its socket filter; changes by another process may go unnoticed", "err", err)
	}
}

func (m *monitor) stopped() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// signal queues a change for the checker.
func (m *monitor) signal(why string) {
	m.mu.Lock()
	switch {
	case slices.Contains(m.whys, why):
	case len(m.whys) < maxReasons:
		m.whys = append(m.whys, why)
	default:
		m.more++
	}
	m.mu.Unlock()
	select {
	case m.sig <- struct{}{}:
	default: // the checker has one waiting, and will take this change too
	}
}

// take returns the queued changes, joined, and empties the queue.
func (m *monitor) take() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	why := strings.Join(m.whys, "; ")
	if m.more > 0 {
		why += fmt.Sprintf("; and %d more", m.more)
	}
	m.whys, m.more = nil, 0
	return why
}

// reasonOverrun is the reason given when the monitor's receive buffer
// overran and the transaction that changed the table is unknown.
const reasonOverrun = "nftables events lost"

// read receives the group's messages until stop. It ends early, after a
// last signal, on an error other than an overrun.
func (m *monitor) read() {
	defer m.wg.Done()
	g := transaction{table: m.table}
	for {
		msgs, err := m.nl.Receive()
		if m.stopped() {
			return
		}
		if errors.Is(err, unix.ENOBUFS) {
			// Messages were dropped: the transaction being read may have
			// lost its NFT_MSG_NEWGEN. Let the check decide.
			g.reset()
			m.overruns.Add(1)
			m.signal(reasonOverrun)
			continue
		}
		if err != nil {
			m.log.Error("nftables monitor stopped, changes by other processes will go unnoticed", "err", err)
			m.signal("nftables monitor stopped: " + err.Error())
			return
		}
		m.received.Add(uint64(len(msgs)))
		for _, msg := range msgs {
			if why := g.add(msg, m.port.Load()); why != "" {
				m.signal(why)
			}
		}
	}
}

// checker waits for a signal, lets the burst settle for checkDelay, and
// reports on lost the changes queued before the check if it finds a
// difference, until stop.
func (m *monitor) checker() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case <-m.sig:
		}
		t := time.NewTimer(checkDelay)
		select {
		case <-m.done:
			t.Stop()
			return
		case <-t.C:
		}
		// The check covers every change queued before it.
		select {
		case <-m.sig:
		default:
		}
		why := m.take()
		found := m.check()
		m.checks.Add(1)
		if found == "" {
			m.log.Debug("table changed by another process, kernel state intact", "table", m.table, "change", why)
			continue
		}
		m.log.Info("table changed by another process, mappings lost", "table", m.table, "change", why, "found", found)
		switch why {
		case "":
			why = found // the change was reported with an earlier check
		case reasonOverrun:
			// The events are gone; what the check found is all there is.
			why = found + " (" + reasonOverrun + ")"
		}
		select {
		case m.lost <- why:
		default: // one is waiting: the daemon has not synced yet
		}
	}
}

// Severity of a change to berth's table, most severe first: a transaction
// is described by its most severe kind of change.
const (
	kindNone = iota
	kindDelTable
	kindDelChain
	kindDelSet
	kindDelRule
	kindDelElem
	kindNewTable
	kindNewChain
	kindNewSet
	kindNewRule
	kindNewElem
)

// transaction is what the monitor has read of one transaction so far:
// its most severe change to berth's table (family ip) and the names of
// the chains or sets with that change.
type transaction struct {
	table string
	kind  int
	names []string
}

func (g *transaction) reset() { g.kind, g.names = kindNone, nil }

// add reads one message of the group. At the transaction's end
// (NFT_MSG_NEWGEN) it returns its description when it changed berth's
// table and came from another socket than own (berth's port id, or zero
// when unknown), and "" otherwise.
func (g *transaction) add(msg netlink.Message, own uint32) string {
	if msg.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || len(msg.Data) < 4 {
		return ""
	}
	typ := int(msg.Header.Type & 0xff)
	if typ == unix.NFT_MSG_NEWGEN {
		defer g.reset()
		if g.kind == kindNone {
			return ""
		}
		if own != 0 && msg.Header.PID == own {
			return ""
		}
		pid, comm, ok := genProcess(msg.Data[4:])
		by := " by an unknown process"
		if ok {
			by = fmt.Sprintf(" by %s (pid %d)", comm, pid)
		}
		return g.describe() + by
	}
	if nftables.TableFamily(msg.Data[0]) != nftables.TableFamilyIPv4 {
		return ""
	}
	attrs := stringAttrs(msg.Data[4:])
	if attrs[attrTable] != g.table {
		return ""
	}
	var kind int
	var name string
	switch typ {
	case unix.NFT_MSG_DELTABLE:
		kind = kindDelTable
	case unix.NFT_MSG_NEWTABLE:
		kind = kindNewTable
	case unix.NFT_MSG_DELCHAIN:
		kind, name = kindDelChain, attrs[attrChainName]
	case unix.NFT_MSG_NEWCHAIN:
		kind, name = kindNewChain, attrs[attrChainName]
	case unix.NFT_MSG_DELRULE:
		kind, name = kindDelRule, attrs[attrRuleChain]
	case unix.NFT_MSG_NEWRULE:
		kind, name = kindNewRule, attrs[attrRuleChain]
	case unix.NFT_MSG_DELSET:
		kind, name = kindDelSet, attrs[attrSetName]
	case unix.NFT_MSG_NEWSET:
		kind, name = kindNewSet, attrs[attrSetName]
	case unix.NFT_MSG_DELSETELEM:
		kind, name = kindDelElem, attrs[attrSetName]
	case unix.NFT_MSG_NEWSETELEM:
		kind, name = kindNewElem, attrs[attrSetName]
	default:
		return "" // objects, flowtables: berth has none
	}
	switch {
	case g.kind == kindNone || kind < g.kind:
		g.kind, g.names = kind, nil
	case kind > g.kind:
		return ""
	}
	if name != "" && !slices.Contains(g.names, name) {
		g.names = append(g.names, name)
	}
	return ""
}

// describe is the transaction's change, for example "rules deleted in
// chain prerouting, forward".
func (g *transaction) describe() string {
	names := strings.Join(g.names, ", ")
	switch g.kind {
	case kindDelTable:
		return "table ip " + g.table + " deleted"
	case kindNewTable:
		return "table ip " + g.table + " changed"
	case kindDelChain:
		return "chain " + names + " deleted"
	case kindNewChain:
		return "chain " + names + " added or changed"
	case kindDelSet:
		return "set " + names + " deleted"
	case kindNewSet:
		return "set " + names + " added"
	case kindDelRule:
		return "rules deleted in chain " + names
	case kindNewRule:
		return "rules added in chain " + names
	case kindDelElem:
		return "elements deleted in " + setNoun(g.names) + " " + names
	default:
		return "elements added in " + setNoun(g.names) + " " + names
	}
}

// setNoun is "map" when every name is one of berth's maps, else "set".
func setNoun(names []string) string {
	for _, s := range names {
		if s != mapDNAT && s != mapDNATRemote && s != mapSNATUDP {
			return "set"
		}
	}
	return "map"
}

// stringAttrs returns the string attributes 1 to 3 of a message's
// attributes, by type; a malformed list yields what precedes the fault.
func stringAttrs(b []byte) [attrChainName + 1]string {
	var out [attrChainName + 1]string
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return out
	}
	for ad.Next() {
		if t := ad.Type(); t >= attrTable && t <= attrChainName {
			out[t] = string(bytes.TrimRight(ad.Bytes(), "\x00"))
		}
	}
	return out
}

// genProcess returns the committing process of an NFT_MSG_NEWGEN
// message's attributes (after the nfgenmsg header): NFTA_GEN_PROC_PID (in
// fact the thread's id) and NFTA_GEN_PROC_NAME.
func genProcess(b []byte) (pid uint32, comm string, ok bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, "", false
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_GEN_PROC_PID:
			if v := ad.Bytes(); len(v) == 4 {
				pid, ok = binary.BigEndian.Uint32(v), true
			}
		case unix.NFTA_GEN_PROC_NAME:
			comm = string(bytes.TrimRight(ad.Bytes(), "\x00"))
		}
	}
	return pid, comm, ok && ad.Err() == nil
}

// flush commits what is queued on the Conn, waiting at most flushTimeout
// for the kernel's answers.
func (n *Nft) flush() error { return withDeadline(n.conn, flushTimeout, n.conn.Flush) }

// Lost returns a channel that receives a short reason, such as "table ip
// berth deleted by nft (pid 4242)" (several changes joined with "; "),
// when another process has changed berth's table so that the kernel no
// longer holds what Apply and Sync installed: `nft flush ruleset`, `nft
// delete table` or `nft flush table`, a firewall reload, an element
// deleted by hand. The daemon should then call Sync with every mapping;
// Sync rebuilds what is missing in one batch.
//
// A reason arrives about checkDelay (100 ms) after the change, plus the
// time to read the maps back. Changes made by Apply, Sync and New are
// never reported, nor are changes by others that leave berth's state
// intact. Reports coalesce: the channel has a buffer of one, and a report
// is dropped while another is waiting. It is the same channel on every
// call and is never closed; nothing is sent on it after Close returns.
// Safe for concurrent use.
func (n *Nft) Lost() <-chan string { return n.lost }

// verify says how the kernel differs from what berth's batches installed
// ("" when it does not): the table, chains and rules (damaged), and the
// elements of every map and set.
func (n *Nft) verify() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ""
	}
	if why := n.damaged(); why != "" {
		return why
	}
	cur, err := n.read()
	if err != nil {
		return err.Error()
	}
	missing := 0
	for k, v := range n.installed {
		if c, ok := cur[k.key()]; !ok || c.Internal != v.internal.addrPort() {
			missing++
		}
	}
	if missing > 0 || len(cur) != len(n.installed) {
		return fmt.Sprintf("maps hold %d mappings, %d of %d installed ones missing or changed", len(cur), missing, len(n.installed))
	}
	ops, err := n.filterSyncOps(n.installed, false)
	if err != nil {
		return err.Error()
	}
	if len(ops) > 0 {
		return fmt.Sprintf("filter sets differ in %d elements", len(ops))
	}
	if n.snat != nil {
		have, err := n.readSNAT()
		if err != nil {
			return err.Error()
		}
		if ops := n.snatOps(have, n.snatKernel); len(ops) > 0 {
			return fmt.Sprintf("map %s differs in %d elements", mapSNATUDP, len(ops))
		}
	}
	return ""
}
