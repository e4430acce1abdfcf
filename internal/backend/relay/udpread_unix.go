//go:build unix

package relay

import (
	"net"
	"sync"
	"syscall"
)

// bufPool holds 64 KiB datagram buffers for the reply goroutines.
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// replyReader reads a session socket's datagrams into pooled buffers. It
// takes a buffer only once a datagram is ready, so the (many) idle sessions
// waiting for replies hold no buffer: 8192 sessions with a buffer each
// would pin 512 MiB.
type replyReader struct{ rc syscall.RawConn }

func newReplyReader(c *net.UDPConn) (*replyReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &replyReader{rc: rc}, nil
}

// read blocks until a datagram arrives or the socket is closed. On success
// the datagram is (*b)[:n] and the caller must give b back with release.
func (rr *replyReader) read() (b *[]byte, n int, err error) {
	var rerr error
	err = rr.rc.Read(func(fd uintptr) bool {
		b = bufPool.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *b)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK {
			bufPool.Put(b)
			b = nil
			return false // wait for the socket to become readable
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if b != nil {
			bufPool.Put(b)
		}
		return nil, 0, err
	}
	return b, n, nil
}

// release gives back a buffer returned by read.
func (rr *replyReader) release(b *[]byte) { bufPool.Put(b) }
