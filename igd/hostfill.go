package igd

import (
	"bytes"
	"net"
)

// COMPAT H5: net/http answers 400 to an HTTP/1.1 request without a Host
// header (RFC 9112 §3.2 makes it a must), and COMPAT warns that UPnP
// clients may leave it out; none of the clients the tests run does (see
// the golden vectors). hostConn gives the first request on a connection the
// connection's own address as Host when it lacks one. Such clients open a
// connection per request, as miniupnpc does, so the first request is the
// one that counts; later ones on a kept-alive connection pass unchanged,
// as parsing request bodies to find where the next head starts would put
// a second HTTP parser in front of net/http's. Browsers always send Host,
// so the DNS-rebinding check (hostIsLiteral) loses nothing: the address
// filled in is an IP literal.

// fillHost returns head, a request head up to and including its empty
// line, with "Host: host" as its last header line when the request line
// ends in HTTP/1.1 and no header line is named Host (in any case); head
// itself, unchanged, otherwise. The new line goes last, so that a folded
// continuation line keeps the header it belonged to, and ends as the
// request line does (CRLF or a bare LF, which net/http accepts).
func fillHost(head []byte, host string) []byte {
	end := headEnd(head)
	eol := bytes.IndexByte(head, '\n')
	if end < 0 || !bytes.HasSuffix(bytes.TrimSuffix(head[:eol], []byte("\r")), []byte(" HTTP/1.1")) {
		return head
	}
	// The empty line: a bare LF, or CRLF.
	empty := end - 1
	if end-2 > eol && head[end-2] == '\r' {
		empty = end - 2
	}
	for rest := head[eol+1 : empty]; len(rest) > 0; {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		if name, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Host")) {
			return head
		}
		rest = next
	}
	nl := "\n"
	if eol > 0 && head[eol-1] == '\r' {
		nl = "\r\n"
	}
	out := make([]byte, 0, len(head)+len("Host: ")+len(host)+len(nl))
	out = append(out, head[:empty]...)
	out = append(out, "Host: "...)
	out = append(out, host...)
	out = append(out, nl...)
	return append(out, head[empty:]...)
}

// headEnd returns the length of the request head at the start of b, up to
// and including the first empty line (CRLF or bare LF), or -1 when b does
// not hold a whole head yet.
func headEnd(b []byte) int {
	end, _ := scanHead(b, 0)
	return end
}

// scanHead is headEnd for a b whose lines before from (a line start) are
// known not to end the head; next is where the next scan may start, so
// that a head read a byte at a time is scanned once, not once per byte.
func scanHead(b []byte, from int) (end, next int) {
	for start := from; ; {
		i := bytes.IndexByte(b[start:], '\n')
		if i < 0 {
			return -1, start
		}
		line := b[start : start+i]
		if start > 0 && (len(line) == 0 || (len(line) == 1 && line[0] == '\r')) {
			return start + i + 1, start + i + 1
		}
		start += i + 1
	}
}

// hostConn is a connection whose first request head passes through
// fillHost. Only net/http's serving goroutine reads it.
type hostConn struct {
	net.Conn
	host    string
	first   bool   // the first head is still being gathered
	head    []byte // what has been read of it
	pending []byte // bytes read from Conn and due to the reader
	err     error  // the read error that ended the gathering, due after pending
}

func newHostConn(c net.Conn) *hostConn {
	return &hostConn{Conn: c, host: c.LocalAddr().String(), first: true}
}

func (c *hostConn) Read(p []byte) (int, error) {
	if c.first {
		c.gather()
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil // not kept for the connection's life
		}
		return n, nil
	}
	if c.err != nil {
		err := c.err
		c.err = nil
		return 0, err
	}
	return c.Conn.Read(p)
}

// headLimit is the longest head net/http reads (MaxHeaderBytes and the
// 4 KiB it allows on top): hostConn gives up on a longer one and leaves it
// to net/http, which answers 431.
const headLimit = maxHeaderBytes + 4096

// gather reads until the first head is whole (then fills its Host), the
// head outgrows headLimit, or the read fails; in the last two cases what
// was read goes on unchanged, for net/http to judge.
func (c *hostConn) gather() {
	var buf [512]byte
	from := 0
	for {
		end, next := scanHead(c.head, from)
		if end >= 0 {
			c.pending = append(fillHost(c.head[:end], c.host), c.head[end:]...)
			break
		}
		from = next
		if len(c.head) > headLimit {
			c.pending = c.head
			break
		}
		n, err := c.Conn.Read(buf[:])
		c.head = append(c.head, buf[:n]...)
		if err != nil {
			c.pending, c.err = c.head, err
			break
		}
	}
	c.first, c.head = false, nil
}
