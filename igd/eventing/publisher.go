// Package eventing implements GENA eventing for the IGD services (UPnP
// Device Architecture 1.1 §4): SUBSCRIBE, renewal and UNSUBSCRIBE on the
// event URLs, and NOTIFY delivery of evented state variables.
//
// Security (COMPAT.md, CallStranger CVE-2020-12695): callback URLs must be
// IP literals inside the configured LAN prefixes, the number of
// subscriptions is capped in total and per client, redirects are never
// followed and every delivery has short connect and total timeouts.
package eventing

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/internal/clock"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxSubscriptions = 64
	DefaultMaxPerClient     = 8
	DefaultMinTimeout       = 60 * time.Second
	DefaultMaxTimeout       = 1800 * time.Second
	DefaultConnectTimeout   = 2 * time.Second
	DefaultSendTimeout      = 5 * time.Second
)

// Config configures a Publisher. Zero fields take the defaults above.
type Config struct {
	// LAN lists the prefixes callback addresses must lie in. Empty means
	// every subscription is refused.
	LAN []netip.Prefix
	// MaxSubscriptions caps the subscriptions in total, MaxPerClient per
	// requester address; SUBSCRIBE beyond either gets 503.
	MaxSubscriptions, MaxPerClient int
	// MinTimeout and MaxTimeout bound the granted subscription duration.
	MinTimeout, MaxTimeout time.Duration
	// ConnectTimeout and SendTimeout bound one NOTIFY delivery: the TCP
	// connect and the whole exchange. Used only when Client is nil.
	ConnectTimeout, SendTimeout time.Duration
	// Client delivers NOTIFYs; nil means a client with the timeouts above,
	// no proxy and no keep-alive. Redirects are never followed either way.
	Client *http.Client
	// Server is the SERVER header of responses ("OS/ver UPnP/1.1 prod/ver");
	// empty omits it.
	Server string
	// Clock runs the expiry timer; nil means clock.Real.
	Clock clock.Clock
	// Logger receives debug logs of deliveries; nil discards.
	Logger *slog.Logger
}

// Var is one evented state variable and its current value.
type Var struct{ Name, Value string }

// Publisher is the GENA publisher of a set of evented services. It is an
// http.Handler for their event URLs. Its methods are safe for concurrent
// use.
type Publisher struct {
	cfg    Config
	clock  clock.Clock
	log    *slog.Logger
	client *http.Client
	ctx    context.Context // canceled by Close; aborts deliveries
	cancel context.CancelFunc

	mu        sync.Mutex
	services  map[string]func() []Var
	table     *table
	closed    bool
	stopTimer func() bool // expiry timer; nil when none is set
	timerAt   time.Time
	timerGen  uint64         // identifies the armed timer; stale firings do nothing
	wg        sync.WaitGroup // sender goroutines
}

// New returns a Publisher with no services.
func New(c Config) *Publisher {
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxPerClient <= 0 {
		c.MaxPerClient = DefaultMaxPerClient
	}
	if c.MinTimeout <= 0 {
		c.MinTimeout = DefaultMinTimeout
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = DefaultMaxTimeout
	}
	c.MinTimeout = min(c.MinTimeout, c.MaxTimeout)
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	p := &Publisher{
		cfg:      c,
		clock:    c.Clock,
		log:      c.Logger,
		services: make(map[string]func() []Var),
		table:    newTable(c.MaxSubscriptions, c.MaxPerClient),
	}
	if p.clock == nil {
		p.clock = clock.Real{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "eventing")
	p.client = newClient(c)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// newClient returns the NOTIFY client: c.Client or one with the timeouts.
func newClient(c Config) *http.Client {
	var hc http.Client
	if c.Client != nil {
		hc = *c.Client
	} else {
		d := &net.Dialer{Timeout: c.ConnectTimeout}
		hc = http.Client{
			Timeout: c.SendTimeout,
			Transport: &http.Transport{
				Proxy:                  nil, // callbacks are on the LAN
				DialContext:            d.DialContext,
				DisableKeepAlives:      true,
				ResponseHeaderTimeout:  c.SendTimeout,
				MaxResponseHeaderBytes: 4 << 10,
			},
		}
	}
	// CallStranger: a redirect could aim the NOTIFY outside the LAN.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// Service registers an evented service at the event URL path. vars returns
// the service's evented variables with their current values, in order; it
// is called from sender goroutines and must be safe for concurrent use.
// Registering a path again replaces vars.
func (p *Publisher) Service(path string, vars func() []Var) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.services[path] = vars
}

// Changed reports that evented variables of the service at path changed.
// Every subscriber gets a NOTIFY with the values current when it is sent;
// changes made while a subscriber's NOTIFY is in flight are coalesced into
// one more NOTIFY. Changed does not block.
func (p *Publisher) Changed(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	vars := p.services[path]
	for _, s := range p.table.onPath(path) {
		if s.inFlight {
			s.pending = true
			continue
		}
		s.inFlight = true
		p.wg.Add(1)
		go p.run(s, vars)
	}
}

// Close stops the expiry timer, aborts deliveries in flight and waits for
// the sender goroutines. ServeHTTP refuses subscriptions afterwards.
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	if p.stopTimer != nil {
		p.stopTimer()
		p.stopTimer = nil
	}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// ServeHTTP handles SUBSCRIBE (new and renewal) and UNSUBSCRIBE on the
// registered event paths: 404 for other paths, 405 for other methods.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	vars, ok := p.services[r.URL.Path]
	closed := p.closed
	p.mu.Unlock()
	switch {
	case !ok:
		http.NotFound(w, r)
	case r.Method == "SUBSCRIBE" && closed:
		p.fail(w, http.StatusServiceUnavailable)
	case r.Method == "SUBSCRIBE" && r.Header.Get("SID") != "":
		p.renew(w, r)
	case r.Method == "SUBSCRIBE":
		p.subscribe(w, r, vars)
	case r.Method == "UNSUBSCRIBE":
		p.unsubscribe(w, r)
	default:
		w.Header().Set("Allow", "SUBSCRIBE, UNSUBSCRIBE")
		p.fail(w, http.StatusMethodNotAllowed)
	}
}

// subscribe handles a new subscription (UDA 1.1 §4.1.2).
func (p *Publisher) subscribe(w http.ResponseWriter, r *http.Request, vars func() []Var) {
	if !strings.EqualFold(strings.TrimSpace(r.Header.Get("NT")), "upnp:event") {
		p.fail(w, http.StatusPreconditionFailed)
		return
	}
	callback, err := parseCallback(r.Header.Get("CALLBACK"), p.cfg.LAN)
	if err != nil {
		p.log.Debug("subscribe refused", "remote", r.RemoteAddr, "err", err)
		p.fail(w, http.StatusPreconditionFailed)
		return
	}
	client := remoteAddr(r)
	d := parseTimeout(r.Header.Get("TIMEOUT"), p.cfg.MinTimeout, p.cfg.MaxTimeout)

	p.mu.Lock()
	s := &subscription{
		sid:      newSID(),
		path:     r.URL.Path,
		client:   client,
		callback: callback,
		expires:  p.clock.Now().Add(d),
		inFlight: true, // the initial event below
	}
	err = p.table.add(s)
	if err == nil {
		p.wg.Add(1)
		p.scheduleLocked()
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Debug("subscribe refused", "remote", r.RemoteAddr, "err", err)
		p.fail(w, http.StatusServiceUnavailable)
		return
	}
	p.log.Debug("subscribed", "sid", s.sid, "path", s.path, "callback", callback, "timeout", d)
	p.ok(w, s.sid, d)
	// UDA: the initial event follows the response; flush it first so the
	// subscriber knows the SID before the NOTIFY arrives.
	_ = http.NewResponseController(w).Flush()
	go p.run(s, vars)
}

// renew handles a renewal: SUBSCRIBE with SID (UDA 1.1 §4.1.3).
func (p *Publisher) renew(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("NT") != "" || r.Header.Get("CALLBACK") != "" {
		p.fail(w, http.StatusBadRequest) // incompatible headers
		return
	}
	d := parseTimeout(r.Header.Get("TIMEOUT"), p.cfg.MinTimeout, p.cfg.MaxTimeout)
	sid := strings.TrimSpace(r.Header.Get("SID"))
	p.mu.Lock()
	now := p.clock.Now()
	_, err := p.table.renew(sid, r.URL.Path, now, now.Add(d))
	if err == nil {
		p.scheduleLocked()
	}
	p.mu.Unlock()
	if err != nil {
		p.fail(w, http.StatusPreconditionFailed)
		return
	}
	p.ok(w, sid, d)
}

// unsubscribe handles UNSUBSCRIBE (UDA 1.1 §4.1.4).
func (p *Publisher) unsubscribe(w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimSpace(r.Header.Get("SID"))
	if sid == "" {
		p.fail(w, http.StatusPreconditionFailed)
		return
	}
	if r.Header.Get("NT") != "" || r.Header.Get("CALLBACK") != "" {
		p.fail(w, http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	_, err := p.table.remove(sid, r.URL.Path, p.clock.Now())
	p.mu.Unlock()
	if err != nil {
		p.fail(w, http.StatusPreconditionFailed)
		return
	}
	p.log.Debug("unsubscribed", "sid", sid)
	if p.cfg.Server != "" {
		w.Header()["SERVER"] = []string{p.cfg.Server}
	}
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// ok writes a successful SUBSCRIBE response: SERVER, SID, TIMEOUT and an
// empty body (UDA 1.1 §4.1.2; DATE is added by net/http). Header names are
// set directly to keep the spec's upper case on the wire.
func (p *Publisher) ok(w http.ResponseWriter, sid string, d time.Duration) {
	h := w.Header()
	if p.cfg.Server != "" {
		h["SERVER"] = []string{p.cfg.Server}
	}
	h["SID"] = []string{sid}
	h["TIMEOUT"] = []string{formatTimeout(d)}
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// fail writes an error status with an empty body.
func (p *Publisher) fail(w http.ResponseWriter, code int) {
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(code)
}

// remoteAddr returns the requester's address (invalid if unparsable; all
// such requesters then share one per-client quota).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// scheduleLocked (re)arms the expiry timer for the earliest expiry. p.mu
// must be held.
func (p *Publisher) scheduleLocked() {
	at, ok := p.table.nextExpiry()
	if p.closed || !ok {
		return
	}
	if p.stopTimer != nil {
		if at.Equal(p.timerAt) {
			return
		}
		p.stopTimer()
	}
	p.timerAt = at
	p.timerGen++
	gen := p.timerGen
	p.stopTimer = p.clock.AfterFunc(at.Sub(p.clock.Now()), func() { p.expire(gen) })
}

// expire runs on the expiry timer armed as generation gen.
func (p *Publisher) expire(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.timerGen || p.closed {
		return // replaced by a later timer, or closed
	}
	p.stopTimer = nil
	for _, s := range p.table.expire(p.clock.Now()) {
		p.log.Debug("subscription expired", "sid", s.sid)
	}
	p.scheduleLocked()
}
