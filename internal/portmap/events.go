package portmap

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/berthd/berth/internal/mapping"
)

// EventKind says what happened.
type EventKind uint8

// Event kinds.
const (
	Added           EventKind = iota + 1 // a mapping was created (or replaced another)
	Removed                              // a mapping was deleted by its client, replaced or withdrawn
	Expired                              // a lease ended
	ExternalChanged                      // the external address changed; Addr is the new one
)

var eventNames = [...]string{"", "added", "removed", "expired", "external-changed"}

// String returns the kind's name.
func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "event(?)"
}

// Event is one change of the Service's state.
type Event struct {
	Kind    EventKind
	Mapping mapping.Mapping // Added, Removed, Expired
	Addr    netip.Addr      // ExternalChanged
}

// Subscription delivers events to one subscriber.
type Subscription struct {
	s   *Service
	sub *subscriber
}

type subscriber struct {
	ch      chan Event
	dropped atomic.Uint64
	once    sync.Once
}

func (sub *subscriber) close() { sub.once.Do(func() { close(sub.ch) }) }

// Subscribe returns a subscription whose channel buffers up to buf events.
// Events are never waited for: when the buffer is full the event is
// dropped and counted (Dropped), so a slow subscriber cannot stall
// requests. The channel is closed by Cancel or when the Service closes.
func (s *Service) Subscribe(buf int) *Subscription {
	sub := &subscriber{ch: make(chan Event, max(buf, 1))}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sub.close()
	} else {
		s.subs[sub] = struct{}{}
	}
	return &Subscription{s: s, sub: sub}
}

// C is the event channel.
func (u *Subscription) C() <-chan Event { return u.sub.ch }

// Dropped is how many events did not fit the buffer.
func (u *Subscription) Dropped() uint64 { return u.sub.dropped.Load() }

// Cancel stops delivery and closes the channel. It is idempotent.
func (u *Subscription) Cancel() {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	delete(u.s.subs, u.sub)
	u.sub.close()
}

// publish delivers e to every subscriber without blocking. Called with mu
// held, which also orders events.
func (s *Service) publish(e Event) {
	for sub := range s.subs {
		select {
		case sub.ch <- e:
		default:
			sub.dropped.Add(1)
		}
	}
}
