//go:build !unix

package relay

import "net"

// replyReader reads a session socket's datagrams into the session's own
// 64 KiB buffer (the pooled variant needs unix raw reads).
type replyReader struct {
	c   *net.UDPConn
	buf []byte
}

func newReplyReader(c *net.UDPConn) (*replyReader, error) {
	return &replyReader{c: c, buf: make([]byte, bufSize)}, nil
}

// read blocks until a datagram arrives or the socket is closed. On success
// the datagram is (*b)[:n]; release must be called before the next read.
func (rr *replyReader) read() (b *[]byte, n int, err error) {
	n, err = rr.c.Read(rr.buf)
	if err != nil {
		return nil, 0, err
	}
	return &rr.buf, n, nil
}

// release is a no-op: the buffer is the session's.
func (rr *replyReader) release(*[]byte) {}
