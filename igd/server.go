// Package igd is berth's UPnP Internet Gateway Device responder: the HTTP
// server behind the LOCATION that igd/ssdp announces. It serves the root
// description and SCPDs (igd/description), decodes control requests
// (igd/soap) and translates the WANIPConnection:1/2,
// WANCommonInterfaceConfig:1 and Layer3Forwarding:1 actions into calls on a
// mapping.Mapper (UPnP Device Architecture 1.0 §2–§3, WANIPConnection:2).
// The rules it follows are COMPAT.md H1–H6, P1–P7, R1–R9 and M1–M5.
package igd

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/igd/soap"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/ratelimit"
)

// HTTP limits. Real clients send requests of a few hundred bytes and keep
// connections idle for seconds at most.
const (
	maxHeaderBytes    = 8 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 30 * time.Second
	// DefaultConnsPerClient bounds the open connections of one LAN host.
	DefaultConnsPerClient = 16
)

// contentType is what miniupnpd sends and every client accepts (COMPAT H1).
const contentType = `text/xml; charset="utf-8"`

// RootPathV1 always serves the IGD:1 description, whatever the user
// agent: SSDP names it in LOCATION to clients that searched for a v1 type
// (COMPAT D7 option b; goupnp IG1 users, go-nat's IG1 path), so that the
// type they searched for is in the description they fetch.
const RootPathV1 = "/IGDV1/rootDesc.xml"

// Config is what a Server needs. Mapper and LAN are required.
type Config struct {
	Mapper mapping.Mapper
	// Device is described in rootDesc.xml; its Version is ignored, the
	// version comes from Mode and the client (COMPAT D7).
	Device description.Device
	// LAN are the prefixes whose hosts may talk to the server; everything
	// else gets 403 (COMPAT Security: never answer the WAN side).
	LAN []netip.Prefix
	// Mode is "auto", "v1" or "v2": see description.Personality.
	Mode   string
	Clock  clock.Clock  // nil means clock.Real; used for lease times and uptime
	Logger *slog.Logger // nil discards
	// Stats returns the WAN interface counters for the GetTotal* actions;
	// an error, or a nil Stats, makes them fail with 501.
	Stats func() (bytesSent, bytesRecv, pktsSent, pktsRecv uint64, err error)
	// Uptime is the WAN connection's uptime for GetStatusInfo; nil means
	// the time since New.
	Uptime func() time.Duration
	// Eventing serves SUBSCRIBE/UNSUBSCRIBE on the event URLs (package
	// igd/eventing); nil answers 501 Not Implemented.
	Eventing http.Handler
	// ConnsPerClient bounds the open connections of one host; 0 means
	// DefaultConnsPerClient.
	ConnsPerClient int
	// Rate and Burst size each host's token bucket of mapping changes
	// (AddPortMapping, AddAnyPortMapping, DeletePortMapping,
	// DeletePortMappingRange: each waits for a disk sync), per second;
	// every request (descriptions, any action, eventing) counts against a
	// second bucket RequestsPerChange times as large. Rate 0 means no
	// limit, Burst 0 twice Rate. A request over either is answered 503
	// Service Unavailable with Retry-After and the connection closed;
	// refusals are summed up in a Warn line at most once a minute.
	Rate  float64
	Burst int
}

// RequestsPerChange is how many requests of any kind a host may make for
// each mapping change Config.Rate allows: listing every mapping takes one
// request per mapping and changes nothing, and miniupnpc, opening a
// connection for each, lists well under ten times Rate's default.
const RequestsPerChange = 10

// limiterClients bounds the rate limiter's table of hosts.
const limiterClients = 4096

// Server answers description and control requests. Its methods are safe
// for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	start   time.Time
	roots   [3][]byte // rendered root descriptions, by version 1 and 2
	scpds   map[string][2][]byte
	handler http.Handler
	http    *http.Server
	listing listingCache

	// changes and requests are nil when Rate is 0 (see Config.Rate).
	changes, requests *limit

	mu    sync.Mutex
	conns map[netip.Addr]int
}

// New returns a Server. It panics when Mapper or LAN is missing.
func New(c Config) *Server {
	if c.Mapper == nil || len(c.LAN) == 0 {
		panic("igd: New needs a Mapper and LAN prefixes")
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.ConnsPerClient <= 0 {
		c.ConnsPerClient = DefaultConnsPerClient
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   c,
		log:   log.With("component", "igd"),
		clk:   c.Clock,
		start: c.Clock.Now(),
		conns: make(map[netip.Addr]int),
		scpds: make(map[string][2][]byte),
	}
	s.listing.clk = c.Clock
	if c.Rate > 0 {
		burst := c.Burst
		if burst <= 0 {
			burst = max(int(2*c.Rate), 1)
		}
		s.changes = newLimit(c.Clock, s.log.With("limit", "mapping changes"), c.Rate, burst)
		s.requests = newLimit(c.Clock, s.log.With("limit", "requests"), RequestsPerChange*c.Rate, RequestsPerChange*burst)
	}
	for v := 1; v <= 2; v++ {
		d := c.Device
		d.Version = v
		s.roots[v] = description.Root(d, "")
	}
	for path, name := range map[string]string{
		description.WANIPConnectionSCPD:          description.WANIPConnection,
		description.WANCommonInterfaceConfigSCPD: description.WANCommonInterfaceConfig,
		description.Layer3ForwardingSCPD:         description.Layer3Forwarding,
	} {
		s.scpds[path] = [2][]byte{description.SCPD(name, 1), description.SCPD(name, 2)}
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.http = &http.Server{
		Handler:           s.handler,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s
}

// Handler returns the server's HTTP handler, with the LAN and Host checks
// but without the listener's connection limits.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on l until Close. It may be called for several
// listeners (one per LAN address). It returns http.ErrServerClosed after
// Close.
func (s *Server) Serve(l net.Listener) error {
	return s.http.Serve(&limitListener{Listener: l, s: s})
}

// Close closes the listeners and every connection.
func (s *Server) Close() error {
	err := s.http.Close()
	s.listing.close()
	if s.changes != nil {
		s.changes.report.Close()
		s.requests.report.Close()
	}
	return err
}

// limit is a per-host token bucket and the report of its refusals.
type limit struct {
	lim    *ratelimit.Limiter
	report *ratelimit.Report
	clk    clock.Clock
}

func newLimit(clk clock.Clock, log *slog.Logger, rate float64, burst int) *limit {
	l := ratelimit.New(rate, burst, limiterClients)
	return &limit{lim: l, report: ratelimit.NewReport(clk, log, l), clk: clk}
}

// allow takes a token of client's, or answers 503 and reports false.
// DESIGN: requests per second per client are bounded.
func (l *limit) allow(w http.ResponseWriter, client netip.Addr) bool {
	if l == nil || l.lim.Allow(client, l.clk.Now()) {
		return true
	}
	l.report.Dropped()
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	writeBody(w, http.StatusServiceUnavailable, nil)
	return false
}

// limitListener bounds the connections per client address; one over the
// bound is closed at once.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := addrOf(c.RemoteAddr())
		if !l.s.acquire(a) {
			l.s.log.Debug("too many connections", "client", a)
			c.Close()
			continue
		}
		return &limitConn{Conn: newHostConn(c), release: sync.OnceFunc(func() { l.s.release(a) })}, nil
	}
}

func (s *Server) acquire(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[a] >= s.cfg.ConnsPerClient {
		return false
	}
	s.conns[a]++
	return true
}

func (s *Server) release(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[a]--; s.conns[a] <= 0 {
		delete(s.conns, a)
	}
}

type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// inLAN reports whether a is inside one of the served prefixes.
func (s *Server) inLAN(a netip.Addr) bool {
	for _, p := range s.cfg.LAN {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostIsLiteral reports whether a Host header is an IP literal with an
// optional port. An absent Host (HTTP/1.0) passes: DNS rebinding needs a
// browser, and browsers always send one.
func hostIsLiteral(h string) bool {
	if h == "" {
		return true
	}
	if _, err := netip.ParseAddrPort(h); err == nil {
		return true
	}
	if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Zone() == ""
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	client, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !s.inLAN(client.Addr().Unmap()) {
		// COMPAT Security: only LAN hosts; say no and hang up.
		w.Header().Set("Connection", "close")
		writeBody(w, http.StatusForbidden, nil)
		return
	}
	if !s.requests.allow(w, client.Addr().Unmap()) {
		return
	}
	if !hostIsLiteral(r.Host) {
		// DNS rebinding: a page from a name that resolves to us.
		writeBody(w, http.StatusBadRequest, nil)
		return
	}
	s.log.Debug("http request", "client", client, "method", r.Method, "path", r.URL.Path)
	path := r.URL.Path
	switch path {
	case RootPathV1:
		if !allowGet(w, r) {
			return
		}
		writeBody(w, http.StatusOK, s.roots[1])
		return
	case description.RootPath:
		if !allowGet(w, r) {
			return
		}
		v := description.Personality(r.UserAgent(), false, s.cfg.Mode)
		writeBody(w, http.StatusOK, s.roots[v])
		return
	case description.WANIPConnectionControl, description.WANCommonInterfaceConfigControl, description.Layer3ForwardingControl:
		if r.Method != http.MethodPost {
			// COMPAT H6, as miniupnpd.
			w.Header().Set("Allow", http.MethodPost)
			writeBody(w, http.StatusMethodNotAllowed, nil)
			return
		}
		s.control(w, r, path, client.Addr().Unmap())
		return
	case description.WANIPConnectionEvent, description.WANCommonInterfaceConfigEvent, description.Layer3ForwardingEvent:
		if s.cfg.Eventing != nil {
			s.cfg.Eventing.ServeHTTP(w, r)
			return
		}
		writeBody(w, http.StatusNotImplemented, nil)
		return
	}
	if scpd, ok := s.scpds[path]; ok {
		if !allowGet(w, r) {
			return
		}
		v := 1
		if path == description.WANIPConnectionSCPD {
			v = description.Personality(r.UserAgent(), false, s.cfg.Mode)
		}
		writeBody(w, http.StatusOK, scpd[v-1])
		return
	}
	writeBody(w, http.StatusNotFound, nil)
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeBody(w, http.StatusMethodNotAllowed, nil)
	return false
}

// writeBody sends a complete response with Content-Length and one Write,
// never chunked (COMPAT H1, H3): net/http then puts headers and body into
// its 4 KiB connection buffer and flushes them together. Bodies only for
// 200 and 500 (SOAP faults) carry a Content-Type.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	if body != nil {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if len(body) > 0 {
		w.Write(body)
	}
}

// control decodes and answers one SOAP request.
func (s *Server) control(w http.ResponseWriter, r *http.Request, path string, client netip.Addr) {
	// Header names arrive canonicalised, so Soapaction and SOAPACTION
	// are found too (COMPAT H4).
	a, err := soap.ReadAction(r.Body, r.Header.Get("SOAPAction"))
	var buf bytes.Buffer
	var f *soap.Fault
	switch {
	case errors.Is(err, soap.ErrTooLarge):
		w.Header().Set("Connection", "close")
		writeBody(w, http.StatusRequestEntityTooLarge, nil)
		return
	case errors.As(err, &f):
		soap.WriteFault(&buf, f.Code, "")
		writeBody(w, http.StatusInternalServerError, buf.Bytes())
		return
	case err != nil:
		w.Header().Set("Connection", "close")
		writeBody(w, http.StatusBadRequest, nil)
		return
	}
	if changesMappings[a.Name] && !s.changes.allow(w, client) {
		// Each change waits for a disk sync: one host looping over them
		// would keep the disk (or the flash) busy for everyone.
		return
	}
	c := &call{ctx: r.Context(), client: client, a: a}
	service := serviceOf(path)
	c.ns = a.Namespace
	if c.ns == "" {
		// No namespace anywhere: answer in the control URL's service type.
		v := 1
		if service == description.WANIPConnection {
			v = description.Personality(r.UserAgent(), false, s.cfg.Mode)
		}
		c.ns = description.ServiceType(service, v)
	}
	c.v2 = service == description.WANIPConnection && len(c.ns) > 2 && c.ns[len(c.ns)-2:] == ":2"
	out, err := s.dispatch(c, service)
	if err != nil {
		code := faultCode(err, c.v2)
		s.log.Debug("soap fault", "client", client, "action", a.Name, "code", code, "err", err)
		soap.WriteFault(&buf, code, "")
		writeBody(w, http.StatusInternalServerError, buf.Bytes())
		return
	}
	soap.WriteResponse(&buf, c.ns, a.Name, out)
	writeBody(w, http.StatusOK, buf.Bytes())
}

// changesMappings are the actions Config.Rate limits.
var changesMappings = map[string]bool{
	"AddPortMapping": true, "AddAnyPortMapping": true, "DeletePortMapping": true, "DeletePortMappingRange": true,
}

func serviceOf(path string) string {
	switch path {
	case description.WANIPConnectionControl:
		return description.WANIPConnection
	case description.WANCommonInterfaceConfigControl:
		return description.WANCommonInterfaceConfig
	}
	return description.Layer3Forwarding
}
