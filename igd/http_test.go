package igd

import (
	"bufio"
	"bytes"
	"github.com/berthd/berth/internal/clock"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/logtest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/ratelimit"
)

// raw sends request bytes from src on a fresh connection and reads one
// response, keeping the raw bytes.
func (h *harness) raw(t *testing.T, src netip.Addr, req string) (*http.Response, []byte) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(clock.Real{}.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(c) // every request here ends in a close
	br := bufio.NewReader(bytes.NewReader(all))
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(br, nil) // Expect: 100-continue
	}
	if err != nil {
		t.Fatalf("reading response to %q: %v (got %q)", req, err, all)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

func TestHTTP(t *testing.T) {
	h := newHarness(t, options{})
	host := "Host: " + strings.TrimPrefix(h.base, "http://") + "\r\n"
	soapBody := envelope(nsV1, "GetExternalIPAddress")
	tests := []struct {
		name, req  string
		status     int
		header     map[string]string
		bodyHas    string
		wantClosed bool
	}{
		{"root description", "GET /rootDesc.xml HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", 200,
			map[string]string{"Content-Type": `text/xml; charset="utf-8"`}, "WANIPConnection:2", true},
		{"root description for Windows is v1", "GET /rootDesc.xml HTTP/1.1\r\n" + host + "User-Agent: Microsoft-Windows/10.0 UPnP/1.0\r\nConnection: close\r\n\r\n", 200,
			nil, "WANIPConnection:1", true},
		{"HTTP/1.0 without Host", "GET /rootDesc.xml HTTP/1.0\r\n\r\n", 200, nil, "<root", true},
		{"SCPD", "GET /WANIPCn.xml HTTP/1.0\r\n" + host + "\r\n", 200, nil, "AddAnyPortMapping", true},
		{"SCPD common", "GET /WANCfg.xml HTTP/1.0\r\n" + host + "\r\n", 200, nil, "GetTotalBytesSent", true},
		{"GET on control URL", "GET /ctl/IPConn HTTP/1.0\r\n" + host + "\r\n", 405, map[string]string{"Allow": "POST"}, "", true},
		{"POST on description", "POST /rootDesc.xml HTTP/1.0\r\n" + host + "Content-Length: 0\r\n\r\n", 405, nil, "", true},
		{"unknown path", "GET /nope HTTP/1.0\r\n" + host + "\r\n", 404, nil, "", true},
		{"Host is a name", "GET /rootDesc.xml HTTP/1.1\r\nHost: router.attacker.example:5000\r\nConnection: close\r\n\r\n", 400, nil, "", true},
		{"Host is IPv6 literal", "GET /rootDesc.xml HTTP/1.1\r\nHost: [::1]:5000\r\nConnection: close\r\n\r\n", 200, nil, "<root", true},
		{"SUBSCRIBE without eventing", "SUBSCRIBE /evt/IPConn HTTP/1.1\r\n" + host + "CALLBACK: <http://127.0.0.2:9/>\r\nNT: upnp:event\r\nConnection: close\r\n\r\n", 501, nil, "", true},
		{"SOAPACTION upper case", "POST /ctl/IPConn HTTP/1.1\r\n" + host + "SOAPACTION: \"" + nsV1 + "#GetExternalIPAddress\"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(soapBody)) + "\r\n\r\n" + soapBody, 200,
			nil, "<NewExternalIPAddress>203.0.113.2</NewExternalIPAddress>", true},
		{"Soapaction, chunked body, Expect", "POST /ctl/IPConn HTTP/1.1\r\n" + host + "Soapaction: " + nsV1 + "#GetExternalIPAddress\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
			chunked(soapBody), 200, nil, "203.0.113.2", true},
		{"no action anywhere", "POST /ctl/IPConn HTTP/1.0\r\n" + host + "Content-Length: 5\r\n\r\nhello", 500, nil, "<errorCode>401</errorCode>", true},
		{"body too large", "POST /ctl/IPConn HTTP/1.0\r\n" + host + "Content-Length: 70000\r\n\r\n" + strings.Repeat("x", 70000), 413, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.raw(t, hostA, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("got status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("got %s %q, want %q", k, got, v)
				}
			}
			// COMPAT H1: always Content-Length, never chunked.
			if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
				t.Errorf("got Content-Length %d, Transfer-Encoding %v for %d body bytes", resp.ContentLength, resp.TransferEncoding, len(body))
			}
			if !strings.Contains(string(body), tt.bodyHas) {
				t.Errorf("body lacks %q: %s", tt.bodyHas, body)
			}
		})
	}
}

// TestSingleWriteSize checks that headers and body of the root description
// fit net/http's 4 KiB connection buffer, so they leave in one write
// (COMPAT H3, Apple); TestResponsesSingleWrite counts the writes.
func TestSingleWriteSize(t *testing.T) {
	h := newHarness(t, options{})
	for _, ua := range []string{"", "Microsoft-Windows/6.1 UPnP/1.0"} {
		resp, body := h.raw(t, hostA, "GET /rootDesc.xml HTTP/1.0\r\nUser-Agent: "+ua+"\r\n\r\n")
		var hdr bytes.Buffer
		resp.Header.Write(&hdr)
		if n := hdr.Len() + len(body) + 32; n > 4096 {
			t.Errorf("UA %q: root description response is %d bytes, more than one 4 KiB write", ua, n)
		}
	}
}

func TestNonLANRefused(t *testing.T) {
	h := newHarness(t, options{config: func(c *Config) { c.LAN = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")} }})
	resp, _ := h.raw(t, hostB, "GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden || !resp.Close {
		t.Errorf("got status %d close %v, want 403 and close", resp.StatusCode, resp.Close)
	}
	resp, _ = h.raw(t, hostA, "GET /rootDesc.xml HTTP/1.0\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("LAN host: got status %d, want 200", resp.StatusCode)
	}
}

func TestConnectionsPerClient(t *testing.T) {
	h := newHarness(t, options{config: func(c *Config) { c.ConnsPerClient = 2 }})
	addr := strings.TrimPrefix(h.base, "http://")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: hostA.AsSlice()}}
	var conns []net.Conn
	for range 3 {
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third is closed at once: a read sees EOF (or a reset).
	conns[2].SetReadDeadline(clock.Real{}.Now().Add(2 * time.Second))
	if n, err := conns[2].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("third connection: read %d, %v; want it closed", n, err)
	}
	// Another host is not affected.
	resp, _ := h.raw(t, hostB, "GET /rootDesc.xml HTTP/1.0\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("other host: got %d", resp.StatusCode)
	}
}

// A host over its rate of mapping changes, or of requests of any kind
// (ten times as many), gets 503 with Retry-After and a closed connection
// until its bucket refills; other hosts and reading actions are not
// affected; the operator reads one Warn line a minute per limit (DESIGN:
// requests per second per client are bounded).
func TestRequestRateLimit(t *testing.T) {
	var logs logtest.Buffer
	h := newHarness(t, options{config: func(c *Config) {
		c.Rate, c.Burst = 1, 2 // requests: 10/s, bursts of 20
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	get := func(src netip.Addr) *http.Response {
		t.Helper()
		resp, _ := h.raw(t, src, "GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		return resp
	}
	for i := range 2 * RequestsPerChange {
		if resp := get(hostA); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, resp.StatusCode)
		}
	}
	// A keep-alive request, which the server must close itself when it
	// refuses it (raw reads until the connection ends).
	resp, _ := h.raw(t, hostA, "GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !resp.Close {
		t.Fatalf("over the request limit: %d, Retry-After %q, close %t; want 503, 1, true",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close)
	}

	// Mapping changes: two in a burst, then 503; reading goes on.
	for i, port := range []int{14200, 14201} {
		if r := h.add(t, hostB, nsV1, "TCP", port, port, "0"); r.status != http.StatusOK {
			t.Fatalf("change %d within the burst: %d %s", i, r.status, r.body)
		}
	}
	if r := h.add(t, hostB, nsV1, "TCP", 14202, 14202, "0"); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
		t.Fatalf("third change: %d, Retry-After %q; want 503, 1", r.status, r.header.Get("Retry-After"))
	}
	if r := h.soapCall(t, hostB, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", "0"); r.status != http.StatusOK {
		t.Errorf("a listing after the changes ran out: %d, want 200", r.status)
	}
	h.clk.Advance(time.Second) // one change and ten requests more
	if r := h.add(t, hostB, nsV1, "TCP", 14202, 14202, "0"); r.status != http.StatusOK {
		t.Errorf("a change after a refill: %d, want 200", r.status)
	}
	if resp := get(hostA); resp.StatusCode != http.StatusOK {
		t.Errorf("a request after a refill: %d, want 200", resp.StatusCode)
	}
	if len(h.svc.List(mapping.Filter{})) != 3 {
		t.Errorf("the Service holds %d mappings, want the 3 allowed", len(h.svc.List(mapping.Filter{})))
	}

	h.clk.Advance(ratelimit.ReportInterval)
	got := logs.String()
	for _, want := range []string{"limit=requests dropped=1 ", "top=" + hostA.String(), `limit="mapping changes" dropped=1 `, "top=" + hostB.String()} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestRequestCorpus replays the captured and written client requests of
// igd/soap/testdata/requests: every one is understood (no 401/402) and
// answered with a response or a fault the client expects.
func TestRequestCorpus(t *testing.T) {
	h := newHarness(t, options{policy: func(c *policy.Config) {
		c.LAN = append(c.LAN, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16"))
		c.Insecure = true // the captures name hosts other than ours
	}})
	files, err := filepath.Glob("soap/testdata/requests/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			soapAction, body := readRequest(t, f)
			req, _ := http.NewRequest(http.MethodPost, h.base+description.WANIPConnectionControl, bytes.NewReader(body))
			if soapAction != "" {
				req.Header.Set("SOAPAction", soapAction)
			}
			r := h.do(t, h.client(hostA), req)
			switch {
			case r.status == 200:
			case r.code() == 713 || r.code() == 714:
			default:
				t.Errorf("got status %d errorCode %d: %s", r.status, r.code(), r.body)
			}
			if r.header.Get("Content-Length") == "" {
				t.Error("no Content-Length")
			}
		})
	}
}

// readRequest reads a corpus file: "#" comments and header lines, "--",
// then the body.
func readRequest(t *testing.T, path string) (soapAction string, body []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rest := raw
	for len(rest) > 0 {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		rest = after
		l := strings.TrimSuffix(string(line), "\r")
		if l == "--" {
			return soapAction, rest
		}
		if v, ok := strings.CutPrefix(l, "SOAPAction:"); ok {
			soapAction = strings.TrimPrefix(v, " ")
		}
	}
	t.Fatalf("%s: no -- line", path)
	return "", nil
}

// chunked encodes s in two chunks, as a split request body (COMPAT H4).
func chunked(s string) string {
	half := len(s) / 2
	hex := func(n int) string { return strconv.FormatInt(int64(n), 16) }
	return hex(half) + "\r\n" + s[:half] + "\r\n" + hex(len(s)-half) + "\r\n" + s[half:] + "\r\n0\r\n\r\n"
}
