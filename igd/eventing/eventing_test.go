package eventing

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/clock/clocktest"
)

const (
	path = description.WANIPConnectionEvent
	wait = 5 * time.Second // bound on every wait for a NOTIFY
)

var lan = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// notification is one NOTIFY received by a callback server.
type notification struct {
	header http.Header
	body   string
}

// callback is a fake subscriber: an httptest server that records NOTIFYs.
// While gate is non-nil each NOTIFY waits for a value on it.
type callback struct {
	srv  *httptest.Server
	got  chan notification
	gate chan struct{}
}

func newCallback(t *testing.T, gated bool) *callback {
	t.Helper()
	c := &callback{got: make(chan notification, 100)}
	if gated {
		c.gate = make(chan struct{})
	}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.got <- notification{r.Header.Clone(), string(b)}
		if c.gate != nil {
			select {
			case <-c.gate:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *callback) url() string { return "<" + c.srv.URL + "/cb>" }

// next returns the next NOTIFY, failing after wait.
func (c *callback) next(t *testing.T) notification {
	t.Helper()
	select {
	case n := <-c.got:
		return n
	case <-time.After(wait):
		t.Fatal("no NOTIFY within", wait)
		return notification{}
	}
}

// none checks that no NOTIFY arrives within a short while.
func (c *callback) none(t *testing.T) {
	t.Helper()
	select {
	case n := <-c.got:
		t.Fatalf("unexpected NOTIFY SEQ %s: %s", n.header.Get("SEQ"), n.body)
	case <-time.After(200 * time.Millisecond):
	}
}

// vars is a goroutine-safe evented variable set for WANIPConnection.
type vars struct {
	mu sync.Mutex
	n  int
}

func (v *vars) set(n int) { v.mu.Lock(); v.n = n; v.mu.Unlock() }

func (v *vars) get() []Var {
	v.mu.Lock()
	defer v.mu.Unlock()
	return []Var{
		{"SystemUpdateID", "7"},
		{"ExternalIPAddress", "203.0.113.5"},
		{"PortMappingNumberOfEntries", strconv.Itoa(v.n)},
		{"ConnectionStatus", "Connected"},
	}
}

func body(n int) string {
	return `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0">` +
		`<e:property><SystemUpdateID>7</SystemUpdateID></e:property>` +
		`<e:property><ExternalIPAddress>203.0.113.5</ExternalIPAddress></e:property>` +
		`<e:property><PortMappingNumberOfEntries>` + strconv.Itoa(n) + `</PortMappingNumberOfEntries></e:property>` +
		`<e:property><ConnectionStatus>Connected</ConnectionStatus></e:property>` +
		`</e:propertyset>`
}

type fixture struct {
	p     *Publisher
	clock *clocktest.Fake
	vars  *vars
	url   string
}

func newFixture(t *testing.T, c Config) *fixture {
	t.Helper()
	f := &fixture{clock: clocktest.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), vars: &vars{}}
	if c.LAN == nil {
		c.LAN = lan
	}
	c.Clock = f.clock
	c.Server = "Linux/6 UPnP/1.1 berth/0"
	f.p = New(c)
	f.p.Service(path, f.vars.get)
	srv := httptest.NewServer(f.p)
	t.Cleanup(srv.Close)
	t.Cleanup(f.p.Close)
	f.url = srv.URL
	return f
}

// do sends a GENA request and returns the response.
func (f *fixture) do(t *testing.T, method, p string, h map[string]string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.url+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (f *fixture) subscribe(t *testing.T, cb string, timeout string) *http.Response {
	t.Helper()
	return f.do(t, "SUBSCRIBE", path, map[string]string{"CALLBACK": cb, "NT": "upnp:event", "TIMEOUT": timeout})
}

func (f *fixture) mustSubscribe(t *testing.T, cb string) string {
	t.Helper()
	resp := f.subscribe(t, cb, "Second-1800")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SUBSCRIBE: got %d, want 200", resp.StatusCode)
	}
	return resp.Header.Get("SID")
}

func (f *fixture) count() int {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	return len(f.p.table.subs)
}

func TestSubscribeNotify(t *testing.T) {
	f := newFixture(t, Config{})
	cb := newCallback(t, false)
	f.vars.set(3)
	resp := f.subscribe(t, cb.url(), "Second-300")
	sid := resp.Header.Get("SID")
	if resp.StatusCode != 200 || !strings.HasPrefix(sid, "uuid:") || len(sid) != len("uuid:")+36 {
		t.Fatalf("got %d SID %q, want 200 and uuid:...", resp.StatusCode, sid)
	}
	if got := resp.Header.Get("TIMEOUT"); got != "Second-300" {
		t.Errorf("TIMEOUT %q, want Second-300", got)
	}
	if resp.ContentLength != 0 || resp.Header.Get("SERVER") == "" || resp.Header.Get("Date") == "" {
		t.Errorf("Content-Length %d, SERVER %q, DATE %q", resp.ContentLength, resp.Header.Get("SERVER"), resp.Header.Get("Date"))
	}

	n := cb.next(t)
	want := map[string]string{"NT": "upnp:event", "NTS": "upnp:propchange", "SID": sid, "SEQ": "0",
		"Content-Type": `text/xml; charset="utf-8"`}
	for k, v := range want {
		if got := n.header.Get(k); got != v {
			t.Errorf("initial NOTIFY %s: got %q, want %q", k, got, v)
		}
	}
	if n.body != body(3) {
		t.Errorf("initial body:\ngot  %s\nwant %s", n.body, body(3))
	}

	f.vars.set(4)
	f.p.Changed(path)
	n = cb.next(t)
	if n.header.Get("SEQ") != "1" || n.body != body(4) {
		t.Errorf("got SEQ %s body %s, want SEQ 1 with 4 entries", n.header.Get("SEQ"), n.body)
	}
	f.p.Changed(description.WANCommonInterfaceConfigEvent) // no subscribers there
	cb.none(t)
}

func TestCoalescing(t *testing.T) {
	f := newFixture(t, Config{})
	cb := newCallback(t, true)
	f.mustSubscribe(t, cb.url())
	if n := cb.next(t); n.header.Get("SEQ") != "0" { // blocked in the gate now
		t.Fatalf("SEQ %s, want 0", n.header.Get("SEQ"))
	}
	for i := 1; i <= 5; i++ {
		f.vars.set(i)
		f.p.Changed(path)
	}
	cb.none(t) // nothing while the first NOTIFY is in flight
	cb.gate <- struct{}{}
	n := cb.next(t)
	if n.header.Get("SEQ") != "1" || n.body != body(5) {
		t.Errorf("got SEQ %s body %s, want SEQ 1 with the latest value 5", n.header.Get("SEQ"), n.body)
	}
	close(cb.gate)
	cb.none(t)
}

func TestRenewUnsubscribe(t *testing.T) {
	f := newFixture(t, Config{})
	cb := newCallback(t, false)
	sid := f.mustSubscribe(t, cb.url())
	cb.next(t)

	f.clock.Advance(1000 * time.Second)
	resp := f.do(t, "SUBSCRIBE", path, map[string]string{"SID": sid, "TIMEOUT": "Second-infinite"})
	if resp.StatusCode != 200 || resp.Header.Get("SID") != sid || resp.Header.Get("TIMEOUT") != "Second-1800" {
		t.Fatalf("renew: got %d SID %q TIMEOUT %q", resp.StatusCode, resp.Header.Get("SID"), resp.Header.Get("TIMEOUT"))
	}
	f.clock.Advance(1000 * time.Second) // past the first expiry, within the renewed one
	if f.count() != 1 {
		t.Fatal("renewed subscription expired")
	}
	for _, tc := range []struct {
		name   string
		method string
		h      map[string]string
		want   int
	}{
		{"renew with NT", "SUBSCRIBE", map[string]string{"SID": sid, "NT": "upnp:event"}, 400},
		{"renew unknown", "SUBSCRIBE", map[string]string{"SID": "uuid:nope"}, 412},
		{"unsubscribe without SID", "UNSUBSCRIBE", nil, 412},
		{"unsubscribe with CALLBACK", "UNSUBSCRIBE", map[string]string{"SID": sid, "CALLBACK": cb.url()}, 400},
		{"GET", "GET", nil, 405},
	} {
		if got := f.do(t, tc.method, path, tc.h).StatusCode; got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := f.do(t, "SUBSCRIBE", "/evt/none", map[string]string{"SID": sid}).StatusCode; got != 404 {
		t.Errorf("unknown path: got %d, want 404", got)
	}

	if got := f.do(t, "UNSUBSCRIBE", path, map[string]string{"SID": sid}).StatusCode; got != 200 {
		t.Fatalf("UNSUBSCRIBE: got %d, want 200", got)
	}
	f.p.Changed(path)
	cb.none(t)
	if got := f.do(t, "UNSUBSCRIBE", path, map[string]string{"SID": sid}).StatusCode; got != 412 {
		t.Errorf("second UNSUBSCRIBE: got %d, want 412", got)
	}
}

func TestCallbackRefused(t *testing.T) {
	var dials atomic.Int32
	d := &net.Dialer{Timeout: time.Second}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, n, a)
	}}}
	f := newFixture(t, Config{Client: client})
	for _, tc := range []struct{ name, cb, nt string }{
		{"outside LAN", "<http://198.51.100.1/>", "upnp:event"},
		{"hostname", "<http://example.invalid/>", "upnp:event"},
		{"localhost name", "<http://localhost:1/>", "upnp:event"},
		{"one of two outside", "<http://127.0.0.1:1/><http://198.51.100.1/>", "upnp:event"},
		{"https", "<https://127.0.0.1/>", "upnp:event"},
		{"no brackets", "http://127.0.0.1/", "upnp:event"},
		{"missing", "", "upnp:event"},
		{"bad NT", "<http://127.0.0.1/>", "upnp:propchange"},
	} {
		resp := f.do(t, "SUBSCRIBE", path, map[string]string{"CALLBACK": tc.cb, "NT": tc.nt})
		if resp.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("%s: got %d, want 412", tc.name, resp.StatusCode)
		}
	}
	f.p.Close() // waits for any sender
	if n := dials.Load(); n != 0 || f.count() != 0 {
		t.Errorf("%d connection attempts and %d subscriptions, want none", n, f.count())
	}
}

func TestCaps(t *testing.T) {
	f := newFixture(t, Config{MaxPerClient: 2})
	cb := newCallback(t, false)
	sid := f.mustSubscribe(t, cb.url())
	f.mustSubscribe(t, cb.url())
	if got := f.subscribe(t, cb.url(), "").StatusCode; got != http.StatusServiceUnavailable {
		t.Fatalf("third subscription of a client: got %d, want 503", got)
	}
	f.do(t, "UNSUBSCRIBE", path, map[string]string{"SID": sid})
	f.mustSubscribe(t, cb.url()) // a slot was freed

	tb := newTable(2, 5)
	now := time.Unix(0, 0)
	for i, want := range []error{nil, nil, errFull} {
		s := &subscription{sid: strconv.Itoa(i), client: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), expires: now.Add(time.Minute)}
		if got := tb.add(s); got != want {
			t.Errorf("global cap, add %d: got %v, want %v", i, got, want)
		}
	}
}

func TestExpiry(t *testing.T) {
	f := newFixture(t, Config{})
	cb := newCallback(t, false)
	resp := f.subscribe(t, cb.url(), "Second-5") // clamped up to 60
	if got := resp.Header.Get("TIMEOUT"); got != "Second-60" {
		t.Fatalf("TIMEOUT %q, want Second-60", got)
	}
	sid := resp.Header.Get("SID")
	cb.next(t)
	f.clock.Advance(59 * time.Second)
	if f.count() != 1 {
		t.Fatal("expired early")
	}
	f.clock.Advance(time.Second)
	if f.count() != 0 {
		t.Fatal("not expired after 60 s")
	}
	if f.clock.Pending() != 0 {
		t.Errorf("%d timers left, want 0", f.clock.Pending())
	}
	f.p.Changed(path)
	cb.none(t)
	if got := f.do(t, "SUBSCRIBE", path, map[string]string{"SID": sid}).StatusCode; got != 412 {
		t.Errorf("renew after expiry: got %d, want 412", got)
	}
}

func TestHungCallbackDoesNotBlockOthers(t *testing.T) {
	f := newFixture(t, Config{SendTimeout: 300 * time.Millisecond, ConnectTimeout: 300 * time.Millisecond})
	hung := newCallback(t, true) // never released: answers only when the client gives up
	good := newCallback(t, false)
	f.mustSubscribe(t, hung.url())
	hung.next(t)
	f.mustSubscribe(t, good.url())
	good.next(t)
	f.p.Changed(path)
	if n := good.next(t); n.header.Get("SEQ") != "1" {
		t.Errorf("SEQ %s, want 1", n.header.Get("SEQ"))
	}
	// The hung delivery times out, then the coalesced change goes out.
	if n := hung.next(t); n.header.Get("SEQ") != "1" {
		t.Errorf("hung subscriber: SEQ %s, want 1", n.header.Get("SEQ"))
	}
	// Close cancels the deliveries in flight: it must return, not hang on
	// the subscriber that never answers (a bound, not a speed assertion).
	closed := make(chan struct{})
	go func() { f.p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a delivery in flight")
	}
}
