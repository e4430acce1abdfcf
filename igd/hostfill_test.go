package igd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock"
)

const fillAddr = "192.168.77.1:5000"

// Golden vectors of fillHost: what real clients send passes unchanged; an
// HTTP/1.1 head without Host gets the connection's address.
func TestFillHost(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"miniupnpc 2.2.4 (captured from Debian's upnpc -s)",
			"GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:47123\r\nConnection: Close\r\nUser-Agent: Debian/bookworm/sid, UPnP/1.1, MiniUPnPc/2.2.4\r\n\r\n",
			"GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:47123\r\nConnection: Close\r\nUser-Agent: Debian/bookworm/sid, UPnP/1.1, MiniUPnPc/2.2.4\r\n\r\n"},
		{"HTTP/1.1 without Host",
			"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"x#y\"\r\nContent-Length: 3\r\n\r\n",
			"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"x#y\"\r\nContent-Length: 3\r\nHost: " + fillAddr + "\r\n\r\n"},
		{"no header at all", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: " + fillAddr + "\r\n\r\n"},
		{"bare LF line ends", "GET / HTTP/1.1\nUser-Agent: x\n\n", "GET / HTTP/1.1\nUser-Agent: x\nHost: " + fillAddr + "\n\n"},
		{"a folded line keeps its header", "GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\n\r\n", "GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\nHost: " + fillAddr + "\r\n\r\n"},
		{"Host in another case", "GET / HTTP/1.1\r\nHOST: 10.0.0.1\r\n\r\n", "GET / HTTP/1.1\r\nHOST: 10.0.0.1\r\n\r\n"},
		{"empty Host value", "GET / HTTP/1.1\r\nhost:\r\n\r\n", "GET / HTTP/1.1\r\nhost:\r\n\r\n"},
		{"HTTP/1.0 needs none", "GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"},
		{"Host-ish names are not Host", "GET / HTTP/1.1\r\nX-Host: a\r\nHostname: b\r\n\r\n",
			"GET / HTTP/1.1\r\nX-Host: a\r\nHostname: b\r\nHost: " + fillAddr + "\r\n\r\n"},
		{"a Host line after the empty line is not a header", "GET / HTTP/1.1\r\n\r\nHost: x\r\n",
			"GET / HTTP/1.1\r\nHost: " + fillAddr + "\r\n\r\nHost: x\r\n"},
		{"not a request line", "garbage\r\n\r\n", "garbage\r\n\r\n"},
		{"no line end", "GET / HTTP/1.1", "GET / HTTP/1.1"},
		{"empty", "", ""},
	} {
		if got := string(fillHost([]byte(c.in), fillAddr)); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestHeadEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\nbody", 18},
		{"GET / HTTP/1.1\nA: b\n\nbody", 21},
		{"GET / HTTP/1.1\r\nA: b\r\n", -1},
		{"\r\nGET / HTTP/1.1\r\n\r\n", 20}, // a leading empty line is not the end
		{"", -1},
	} {
		if got := headEnd([]byte(c.in)); got != c.want {
			t.Errorf("headEnd(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// FuzzFillHost: fillHost never loses or reorders a byte; it inserts at
// most one Host line, inside the head, only once (a second pass changes
// nothing), and net/http's parser then reads the Host it added.
func FuzzFillHost(f *testing.F) {
	f.Add([]byte("GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:47123\r\nConnection: Close\r\nUser-Agent: Debian/bookworm/sid, UPnP/1.1, MiniUPnPc/2.2.4\r\n\r\n"))
	f.Add([]byte("POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"x#y\"\r\nContent-Length: 3\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nUser-Agent: x\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := fillHost(in, fillAddr)
		if bytes.Equal(out, in) {
			return
		}
		extra := len(out) - len(in)
		k := 0
		for k < len(in) && out[k] == in[k] {
			k++
		}
		if extra <= 0 || !bytes.Equal(out[k+extra:], in[k:]) {
			t.Fatalf("%q became %q: not one insertion", in, out)
		}
		if !bytes.Contains(out[max(k-2, 0):min(k+extra+2, len(out))], []byte("Host: "+fillAddr)) {
			t.Fatalf("%q became %q: the insertion is not the Host line", in, out)
		}
		if n, m := headEnd(in), headEnd(out); n < 0 || m != n+extra {
			t.Fatalf("%q became %q: the head ended at %d, now at %d", in, out, n, m)
		}
		if !bytes.Equal(fillHost(out, fillAddr), out) {
			t.Fatalf("%q: a second pass changed %q", in, out)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out[:headEnd(out)])))
		if err == nil && !req.URL.IsAbs() && req.Host != fillAddr {
			t.Fatalf("%q: net/http reads Host %q from %q", in, req.Host, out)
		}
	})
}

// An HTTP/1.1 request without Host is answered (COMPAT H5), where
// net/http alone says 400; a later request on the kept-alive connection
// passes unchanged.
func TestRequestWithoutHost(t *testing.T) {
	h := newHarness(t, options{})
	c := h.dialFrom(t, hostA)
	defer c.Close()
	c.SetDeadline(clock.Real{}.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /rootDesc.xml HTTP/1.1\r\nUser-Agent: old\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.1 without Host: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	io.WriteString(c, "GET /rootDesc.xml HTTP/1.1\r\nConnection: close\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a second request without Host on the connection: %v %v, want net/http's 400", resp, err)
	}
	// A head longer than net/http reads still gets its 431.
	resp, _ = h.raw(t, hostA, "GET /rootDesc.xml HTTP/1.1\r\nX: "+strings.Repeat("a", headLimit)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a head of %d bytes without Host: %d, want 431", headLimit, resp.StatusCode)
	}
}

// hostConn gathers a head that arrives in pieces, fills its Host, and
// passes what follows, and a read error after a partial head, unchanged.
func TestHostConnPieces(t *testing.T) {
	for _, c := range []struct {
		name   string
		pieces []string
		want   string
	}{
		{"head in pieces, then a body", []string{"POST /x HT", "TP/1.1\r\nContent-Length: 4", "\r\n", "\r\nbo", "dy"},
			"POST /x HTTP/1.1\r\nContent-Length: 4\r\nHost: " + fillAddr + "\r\n\r\nbody"},
		{"head and next request at once", []string{"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"},
			"GET / HTTP/1.1\r\nHost: " + fillAddr + "\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"},
		{"cut short", []string{"GET / HTTP/1.1\r\nUser-"}, "GET / HTTP/1.1\r\nUser-"},
		{"a byte at a time", strings.Split("GET / HTTP/1.1\r\nA: b\r\n\r\n", ""),
			"GET / HTTP/1.1\r\nA: b\r\nHost: " + fillAddr + "\r\n\r\n"},
		// Longer than net/http reads: passed on as it is, for its 431.
		{"no end within the limit", []string{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", headLimit) + "\r\n"},
			"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", headLimit) + "\r\n"},
	} {
		client, server := net.Pipe()
		hc := &hostConn{Conn: server, host: fillAddr, first: true}
		go func() {
			for _, p := range c.pieces {
				client.Write([]byte(p))
			}
			client.Close()
		}()
		got, err := io.ReadAll(hc)
		server.Close()
		if err != nil || string(got) != c.want {
			t.Errorf("%s: read %.80q (%d bytes), %v; want %.80q (%d bytes)", c.name, got, len(got), err, c.want, len(c.want))
		}
	}
}
