package igd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
)

const (
	nsV1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
	nsV2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
)

var (
	t0      = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	extAddr = netip.MustParseAddr("203.0.113.2")
	lan     = netip.MustParsePrefix("127.0.0.0/8")
	// The server listens on 127.0.0.1, the router's own address; clients
	// dial from other loopback addresses.
	routerAddr = netip.MustParseAddr("127.0.0.1")
	hostA      = netip.MustParseAddr("127.0.0.2")
	hostB      = netip.MustParseAddr("127.0.0.3")
)

var testDevice = description.Device{
	UDNs:         [3]string{"uuid:00000000-0000-0000-0000-000000000001", "uuid:00000000-0000-0000-0000-000000000002", "uuid:00000000-0000-0000-0000-000000000003"},
	FriendlyName: "berth test", Manufacturer: "berth", ModelName: "berth",
}

type harness struct {
	srv  *Server
	svc  *portmap.Service
	be   *fake.Backend
	clk  *clocktest.Fake
	base string // http://127.0.0.1:port

	mu      sync.Mutex
	clients map[netip.Addr]*http.Client
}

// client returns the harness's keep-alive client for src.
func (h *harness) client(src netip.Addr) *http.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients == nil {
		h.clients = make(map[netip.Addr]*http.Client)
	}
	c, ok := h.clients[src]
	if !ok {
		c = clientFrom(src)
		h.clients[src] = c
	}
	return c
}

type options struct {
	policy func(*policy.Config)
	config func(*Config)
}

func newHarness(t testing.TB, o options) *harness {
	t.Helper()
	pc := policy.Config{
		LAN:    []netip.Prefix{lan},
		Router: []netip.Addr{routerAddr},
		Lifetime: map[mapping.Kind]policy.Lifetimes{
			mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour},
		},
	}
	if o.policy != nil {
		o.policy(&pc)
	}
	pol, err := policy.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{be: &fake.Backend{}, clk: clocktest.NewFake(t0)}
	h.svc = portmap.New(portmap.Config{Backend: h.be, Policy: pol, Clock: h.clk, External: extAddr})
	cfg := Config{Mapper: h.svc, Device: testDevice, LAN: []netip.Prefix{lan}, Mode: "auto", Clock: h.clk}
	if o.config != nil {
		o.config(&cfg)
	}
	h.srv = New(cfg)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + l.Addr().String()
	go h.srv.Serve(l)
	t.Cleanup(func() {
		h.srv.Close()
		h.svc.Close()
		for _, c := range h.clients {
			c.CloseIdleConnections()
		}
	})
	return h
}

// clientFrom returns an HTTP client whose connections come from src.
func clientFrom(src netip.Addr) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, DisableCompression: true},
		Timeout:   10 * time.Second,
	}
}

// envelope builds a control request body the way miniupnpc does.
func envelope(ns, action string, args ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\r\n" + `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`)
	fmt.Fprintf(&b, `<u:%s xmlns:u="%s">`, action, ns)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&b, "<%s>%s</%s>", args[i], args[i+1], args[i])
	}
	fmt.Fprintf(&b, "</u:%s></s:Body></s:Envelope>\r\n", action)
	return b.String()
}

type reply struct {
	status int
	header http.Header
	body   string
}

// code returns the errorCode of a fault reply, 0 for none.
func (r reply) code() int {
	m := regexp.MustCompile(`<errorCode>(\d+)</errorCode>`).FindStringSubmatch(r.body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// arg returns an out-argument of a success reply.
func (r reply) arg(name string) string {
	m := regexp.MustCompile(`<` + name + `>([^<]*)</` + name + `>`).FindStringSubmatch(r.body)
	if m == nil {
		return "<missing>"
	}
	return m[1]
}

func (h *harness) do(t testing.TB, c *http.Client, req *http.Request) reply {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// soapCall posts action with args (name, value, ...) to the
// WANIPConnection control URL from src.
func (h *harness) soapCall(t testing.TB, src netip.Addr, ns, action string, args ...string) reply {
	t.Helper()
	return h.soapTo(t, src, description.WANIPConnectionControl, ns, action, args...)
}

func (h *harness) soapTo(t testing.TB, src netip.Addr, path, ns, action string, args ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.base+path, bytes.NewBufferString(envelope(ns, action, args...)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	req.Header.Set("SOAPAction", `"`+ns+"#"+action+`"`)
	return h.do(t, h.client(src), req)
}

// add maps ext → src:internal over UPnP.
func (h *harness) add(t testing.TB, src netip.Addr, ns string, proto string, ext, internal int, lease string) reply {
	t.Helper()
	return h.soapCall(t, src, ns, "AddPortMapping",
		"NewRemoteHost", "", "NewExternalPort", strconv.Itoa(ext), "NewProtocol", proto,
		"NewInternalPort", strconv.Itoa(internal), "NewInternalClient", src.String(),
		"NewEnabled", "1", "NewPortMappingDescription", "test", "NewLeaseDuration", lease)
}

func wantOK(t testing.TB, r reply) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("got status %d (errorCode %d), want 200; body %s", r.status, r.code(), r.body)
	}
}

func wantFault(t testing.TB, r reply, code int) {
	t.Helper()
	if r.status != http.StatusInternalServerError || r.code() != code {
		t.Fatalf("got status %d errorCode %d, want 500 errorCode %d; body %s", r.status, r.code(), code, r.body)
	}
}
