package igd

import (
	"bufio"
	"encoding/xml"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/clock"
)

// dialFrom opens a TCP connection from src to the harness's server.
func (h *harness) dialFrom(t *testing.T, src netip.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(clock.Real{}.Now().Add(5 * time.Second))
	return c
}

// exchange writes req on c and reads one response with its body.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("writing %q: %v", req, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", req, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// wantEOF checks that the server closed c.
func wantEOF(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(clock.Real{}.Now().Add(2 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("connection still open after the response: read %d, %v", n, err)
	}
}

// COMPAT H2: keep-alive for HTTP/1.1 (Go, libtorrent): two requests on one
// connection are both answered.
func TestKeepAliveHTTP11(t *testing.T) {
	h := newHarness(t, options{})
	c := h.dialFrom(t, hostA)
	br := bufio.NewReader(c)
	host := "Host: " + strings.TrimPrefix(h.base, "http://") + "\r\n"
	for i, path := range []string{"/rootDesc.xml", "/WANIPCn.xml"} {
		resp, body := exchange(t, c, br, "GET "+path+" HTTP/1.1\r\n"+host+"\r\n")
		if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" || resp.Close {
			t.Fatalf("request %d: got %s %d close %v, want HTTP/1.1 200 kept open", i+1, resp.Proto, resp.StatusCode, resp.Close)
		}
		if !strings.Contains(body, "urn:schemas-upnp-org:") {
			t.Fatalf("request %d: body %q", i+1, body)
		}
	}
	// Connection: close on HTTP/1.1 ends it.
	resp, _ := exchange(t, c, br, "GET /rootDesc.xml HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("Connection: close: got %d close %v", resp.StatusCode, resp.Close)
	}
	wantEOF(t, c, br)
}

// COMPAT H2: an HTTP/1.0 request is answered in HTTP/1.0 and the
// connection closed after the response. (An HTTP/1.0 request that sends
// "Connection: keep-alive" is kept open by net/http, with that header in
// the response; not checked here.)
func TestHTTP10Closes(t *testing.T) {
	h := newHarness(t, options{})
	for _, path := range []string{"/rootDesc.xml", "/ctl/IPConn"} {
		c := h.dialFrom(t, hostA)
		br := bufio.NewReader(c)
		resp, _ := exchange(t, c, br, "GET "+path+" HTTP/1.0\r\n\r\n")
		if resp.Proto != "HTTP/1.0" || !resp.Close {
			t.Fatalf("%s: got %s %d close %v, want HTTP/1.0 and close", path, resp.Proto, resp.StatusCode, resp.Close)
		}
		wantEOF(t, c, br)
	}
}

// countListener records the Write calls on its connections.
type countListener struct {
	net.Listener
	mu     sync.Mutex
	writes [][]byte
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: c, l: l}, nil
}

// take returns the writes recorded since the last call.
func (l *countListener) take() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

type countConn struct {
	net.Conn
	l *countListener
}

func (c *countConn) Write(b []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, slices.Clone(b))
	c.l.mu.Unlock()
	return c.Conn.Write(b)
}

// COMPAT H3 (Apple parses after every read): headers never leave apart
// from the body. A response that fits net/http's 4 KiB connection buffer
// (the root descriptions, a control answer carrying the longest
// description a mapping can hold) leaves in a single write; a larger one
// (the WANIPConnection SCPDs, 9 and 12 KB) in writes of which the first
// holds the headers and the start of the body. On Ethernet such a body
// spans several TCP segments whatever the writes, so one write could not
// promise one read anyway.
func TestResponsesSingleWrite(t *testing.T) {
	h := newHarness(t, options{})
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countListener{Listener: l}
	go h.srv.Serve(cl)
	// Every character escaped: the answer's description is 5 × 256 bytes.
	long := strings.Repeat("&", maxDescription)
	if r := h.soapCall(t, hostA, nsV1, "AddPortMapping", "NewRemoteHost", "", "NewExternalPort", "14100",
		"NewProtocol", "TCP", "NewInternalPort", "14100", "NewInternalClient", hostA.String(), "NewEnabled", "1",
		"NewPortMappingDescription", html.EscapeString(long), "NewLeaseDuration", "0"); r.status != http.StatusOK {
		t.Fatalf("AddPortMapping: %d %s", r.status, r.body)
	}
	get := func(path, ua string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: " + l.Addr().String() + "\r\nUser-Agent: " + ua + "\r\nConnection: close\r\n\r\n"
	}
	body := envelope(nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", "0")
	for _, c := range []struct{ name, req string }{
		{"root description", get("/rootDesc.xml", "")},
		{"root description for Windows", get("/rootDesc.xml", "Microsoft-Windows/10.0 UPnP/1.0")},
		{"WANIPConnection:1 SCPD", get(description.WANIPConnectionSCPD, "Microsoft-Windows/10.0 UPnP/1.0")},
		{"WANIPConnection:2 SCPD", get(description.WANIPConnectionSCPD, "")},
		{"WANCommonInterfaceConfig SCPD", get(description.WANCommonInterfaceConfigSCPD, "")},
		{"Layer3Forwarding SCPD", get(description.Layer3ForwardingSCPD, "")},
		{"control answer with the longest description", "POST " + description.WANIPConnectionControl + " HTTP/1.1\r\nHost: " +
			l.Addr().String() + "\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"" + nsV1 +
			"#GetGenericPortMappingEntry\"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body},
	} {
		cl.take()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: hostA.AsSlice()}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(clock.Real{}.Now().Add(5 * time.Second))
		io.WriteString(conn, c.req)
		all, _ := io.ReadAll(conn) // until the server closes
		conn.Close()
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(all))), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", c.name, resp, err)
		}
		writes := cl.take()
		head, _, _ := strings.Cut(string(all), "\r\n\r\n")
		switch {
		case len(writes) == 0:
			t.Errorf("%s: no writes recorded", c.name)
		case len(all) <= 4096 && len(writes) != 1:
			t.Errorf("%s (%d bytes) sent in %d writes, want 1", c.name, len(all), len(writes))
		case len(writes[0]) <= len(head)+4:
			t.Errorf("%s (%d bytes): the first of %d writes holds %d bytes, the headers alone", c.name, len(all), len(writes), len(writes[0]))
		}
	}
}

// COMPAT R4: a description with control characters is stored without
// them and capped at maxDescription bytes (never splitting a UTF-8
// sequence); listings echo the cleaned string in well-formed XML.
func TestDescriptionCleaned(t *testing.T) {
	h := newHarness(t, options{})
	for i, tt := range []struct{ in, want string }{
		{"go\x01nat\x1b[0m" + strings.Repeat("x", 300), "gonat[0m" + strings.Repeat("x", maxDescription-8)},
		{"\x1b" + strings.Repeat("y", maxDescription-1) + "é<&", strings.Repeat("y", maxDescription-1)},
		{"tab\tnew\r\nline\x7f\u0085ok", "tabnewlineok"},
	} {
		ext := strconv.Itoa(40000 + i)
		wantOK(t, h.soapCall(t, hostA, nsV1, "AddPortMapping",
			"NewRemoteHost", "", "NewExternalPort", ext, "NewProtocol", "TCP",
			"NewInternalPort", ext, "NewInternalClient", hostA.String(),
			"NewEnabled", "1", "NewPortMappingDescription", xmlText(tt.in), "NewLeaseDuration", "3600"))
		r := h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry",
			"NewRemoteHost", "", "NewExternalPort", ext, "NewProtocol", "TCP")
		wantOK(t, r)
		wellFormed(t, r.body)
		var env struct {
			Desc string `xml:"Body>GetSpecificPortMappingEntryResponse>NewPortMappingDescription"`
		}
		if err := xml.Unmarshal([]byte(r.body), &env); err != nil {
			t.Fatal(err)
		}
		if lease := r.arg("NewLeaseDuration"); lease != "3600" {
			t.Errorf("case %d: lease %s, want 3600 (the argument after the description)", i, lease)
		}
		if env.Desc != tt.want {
			t.Errorf("case %d: stored description %q (%d bytes), want %q (%d bytes)", i, env.Desc, len(env.Desc), tt.want, len(tt.want))
		}
		g := h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", strconv.Itoa(i))
		wantOK(t, g)
		wellFormed(t, g.body)
	}
}

// xmlText escapes the XML metacharacters of s as miniupnpc does not, but
// leaves control characters raw, as a buggy client sends them.
func xmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// wellFormed checks that body parses as strict XML.
func wellFormed(t *testing.T, body string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(body))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("response is not well-formed XML: %v\n%q", err, body)
		}
	}
}
