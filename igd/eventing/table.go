package eventing

import (
	"errors"
	"net/netip"
	"time"
)

// Errors returned by the subscription table. ServeHTTP maps them to HTTP
// status codes: errNoSubscription to 412, errFull to 503.
var (
	errFull           = errors.New("eventing: too many subscriptions")
	errNoSubscription = errors.New("eventing: no such subscription")
)

// subscription is one GENA subscription. The table owns the bookkeeping
// fields; the sender fields (seq, inFlight, pending) are guarded by the
// Publisher's mutex like the table itself.
type subscription struct {
	sid      string     // "uuid:..."
	path     string     // event URL path of the service
	client   netip.Addr // requester's address, for the per-client cap
	callback string     // validated delivery URL (an IP literal in the LAN)
	expires  time.Time

	seq      uint32 // SEQ of the next NOTIFY
	inFlight bool   // a sender goroutine owns this subscription
	pending  bool   // variables changed while a NOTIFY was in flight
	removed  bool   // unsubscribed or expired: the sender stops
}

// nextSeq returns the SEQ that follows s: 0 is used only for the initial
// event, so after 4294967295 comes 1 (UDA 1.1 §4.3.2).
func nextSeq(s uint32) uint32 {
	if s == ^uint32(0) {
		return 1
	}
	return s + 1
}

// table holds the subscriptions. It is pure: time is passed in and it is
// not safe for concurrent use (the Publisher holds the lock).
type table struct {
	max, maxPerClient int
	subs              map[string]*subscription
	perClient         map[netip.Addr]int
}

func newTable(max, maxPerClient int) *table {
	return &table{
		max:          max,
		maxPerClient: maxPerClient,
		subs:         make(map[string]*subscription),
		perClient:    make(map[netip.Addr]int),
	}
}

// add inserts s unless a cap is reached.
func (t *table) add(s *subscription) error {
	if len(t.subs) >= t.max || t.perClient[s.client] >= t.maxPerClient {
		return errFull
	}
	t.subs[s.sid] = s
	t.perClient[s.client]++
	return nil
}

// lookup returns the live subscription sid on path.
func (t *table) lookup(sid, path string, now time.Time) (*subscription, error) {
	s, ok := t.subs[sid]
	if !ok || s.path != path || !now.Before(s.expires) {
		return nil, errNoSubscription
	}
	return s, nil
}

// renew extends the live subscription sid on path until until.
func (t *table) renew(sid, path string, now, until time.Time) (*subscription, error) {
	s, err := t.lookup(sid, path, now)
	if err != nil {
		return nil, err
	}
	s.expires = until
	return s, nil
}

// remove deletes the live subscription sid on path.
func (t *table) remove(sid, path string, now time.Time) (*subscription, error) {
	s, err := t.lookup(sid, path, now)
	if err != nil {
		return nil, err
	}
	t.delete(s)
	return s, nil
}

func (t *table) delete(s *subscription) {
	delete(t.subs, s.sid)
	s.removed = true
	if t.perClient[s.client]--; t.perClient[s.client] <= 0 {
		delete(t.perClient, s.client)
	}
}

// expire removes and returns every subscription whose time is up at now.
func (t *table) expire(now time.Time) []*subscription {
	var gone []*subscription
	for _, s := range t.subs {
		if !now.Before(s.expires) {
			gone = append(gone, s)
		}
	}
	for _, s := range gone {
		t.delete(s)
	}
	return gone
}

// nextExpiry returns the earliest expiry time, if any subscription exists.
func (t *table) nextExpiry() (time.Time, bool) {
	var at time.Time
	for _, s := range t.subs {
		if at.IsZero() || s.expires.Before(at) {
			at = s.expires
		}
	}
	return at, !at.IsZero()
}

// onPath returns the subscriptions of the service at path.
func (t *table) onPath(path string) []*subscription {
	var r []*subscription
	for _, s := range t.subs {
		if s.path == path {
			r = append(r, s)
		}
	}
	return r
}
