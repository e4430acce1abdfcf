package nft

import (
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/berthd/berth/internal/clock"
)

// A failed batch must leave nothing on the Conn that a later batch could
// send or trip over, and google/nftables v0.3.0 has no way to discard what
// a Conn holds (conn.go, set.go):
//
//   - Messages are dropped only by Flush. One queued before an error in the
//     same batch (a SetAddElements whose elements do not encode, returning
//     an error after other messages were queued) stays queued and would go
//     out in the next batch, together with that batch's own.
//   - An encoding error the Conn records itself (Conn.err: the attributes of
//     a message do not encode, and the call that queued it returns nil) is
//     never cleared: every later Flush returns it and sends nothing.
//   - Flush returns at the first ENOBUFS or EPERM without reading the
//     acknowledgements of the batch's other messages. On a lasting socket
//     they would be read as the answers to the next batch or query.
//
// A refused batch (the kernel's error in an acknowledgement) leaves a clean
// Conn, but telling it apart from the cases above takes knowing v0.3.0's
// internals, and a failed batch is rare. So after any error while a batch
// is queued or flushed, commit renews the Conn: it opens a new one like the
// old, closes the old one's socket and never flushes it again, so nothing
// it holds is ever sent.

// renew replaces n.conn after a failed batch (see above): with a lasting
// Conn opened as Dial opens it when Config.PortID is set (the Conn is
// lasting), and otherwise, or when that fails, with one that opens a
// socket per batch. The monitor then knows berth's batches by the new
// socket's port id. Called with n.mu held.
func (n *Nft) renew(cause error) {
	old := n.conn
	var (
		c    *nftables.Conn
		port uint32
		err  error
	)
	if n.cfg.PortID != 0 {
		c, port, err = Dial(old.NetNS)
		if err != nil {
			n.log.Warn("cannot open a lasting netlink socket; using one socket per batch", "err", err)
		}
	}
	if c == nil {
		// Without AsLasting, New opens no socket and cannot fail.
		c, _ = nftables.New(nftables.WithNetNSFd(old.NetNS), nftables.WithTestDial(old.TestDial))
	}
	// The old socket's unread acknowledgements go with it. Closing the
	// caller's Conn (Config.Conn) again is harmless.
	old.CloseLasting()
	sockets.Delete(old)
	n.conn = c
	n.mon.follow(port)
	n.renewed++
	n.log.Debug("netlink connection renewed after a failed batch", "cause", cause, "port", port)
}

// closeConn closes n.conn if the backend opened it (renew), and forgets
// its socket; Config.Conn is the caller's, who opened it with Dial and
// closes it. The caller's Conn keeps its socket's entry for a next Nft on it.
func (n *Nft) closeConn() {
	if n.conn != n.cfg.Conn {
		sockets.Delete(n.conn)
		n.conn.CloseLasting()
	}
}

// flushTimeout bounds how long a batch waits for the kernel's answers.
// v0.3.0's Flush reads one acknowledgement per message with no deadline,
// and the kernel sends none for the messages after the one it aborts a
// batch on (an allocation failure in nfnetlink's batch loop ends the
// batch there): unbounded, Apply, and every request waiting for it,
// would hang for good. At the deadline Flush fails and commit renews the
// Conn, unread answers and all.
const flushTimeout = 30 * time.Second

// sockets holds the netlink socket of each Conn that Dial opened, which
// nftables.Conn does not expose, for the deadline above. The backend
// drops the entries of the Conns it opens itself (renew); one for each
// Dial of a caller (berthd: one) stays.
var sockets sync.Map // *nftables.Conn → *netlink.Conn

// withDeadline runs flush with a read deadline timeout from now on c's
// socket, when Dial opened c. A Conn without a lasting socket opens one
// inside each Flush, out of reach.
func withDeadline(c *nftables.Conn, timeout time.Duration, flush func() error) error {
	v, ok := sockets.Load(c)
	if !ok {
		return flush()
	}
	sock := v.(*netlink.Conn)
	if err := sock.SetReadDeadline(clock.Real{}.Now().Add(timeout)); err != nil {
		return flush()
	}
	defer sock.SetReadDeadline(time.Time{})
	return flush()
}
