package portmap

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// backendTimeout bounds backend calls the Service makes on its own
// (expiry, reconciliation), where no request context exists.
const backendTimeout = 10 * time.Second

// schedule arms the expiry timer for the table's earliest deadline. A
// timer that is already due no later than that deadline is kept: it fires,
// finds nothing or less than expected, and schedules again. So renewals,
// which only push deadlines later, never touch the timer. Called with mu
// held.
func (s *Service) schedule() {
	next, ok := s.table.NextExpiry()
	if !ok || s.closed {
		return
	}
	if s.stop != nil && !s.timerAt.After(next) {
		return
	}
	if s.stop != nil {
		s.stop()
	}
	s.timerID++
	id := s.timerID
	s.timerAt = next
	s.stop = s.clk.AfterFunc(max(next.Sub(s.clk.Now()), 0), func() { s.expire(id) })
}

// expire removes every lease that has ended and tells the backend. id
// tells a timer that was replaced (but had already fired) from the armed
// one; a stale one does nothing, the armed one will run.
func (s *Service) expire(id uint64) {
	s.mu.Lock()
	wait := s.expireLocked(id)
	s.mu.Unlock()
	wait()
}

// expireLocked is expire's work with mu held; it returns the wait for the
// backend (retire).
func (s *Service) expireLocked(id uint64) func() {
	if s.closed || id != s.timerID {
		return func() {}
	}
	s.stop = nil
	now := s.clk.Now()
	gone := s.table.Expire(now)
	s.schedule()
	if len(gone) == 0 {
		return func() {}
	}
	for _, m := range gone {
		s.log.Info("mapping expired", "key", m.Key, "internal", m.Internal, "client", m.Client, "origin", m.Origin.Kind)
	}
	return s.retire(gone, Expired)
}

// retire tells the store, the subscribers (an event of kind each) and the
// backend, in one batch, that mappings already out of the table are gone.
// Their leases are over whatever the backend says: if it fails to remove
// them, a Sync makes it match the table again soon. Called with mu held,
// it queues the backend's change and returns the wait for it, to be
// called without mu: an expiry of thousands of leases holds no request up
// while the kernel removes them, and shares its batch with the requests'.
func (s *Service) retire(gone []mapping.Mapping, kind EventKind) (wait func()) {
	s.gen++
	t := &ticket{changes: make([]backend.Change, len(gone))}
	for i, m := range gone {
		t.changes[i] = backend.Change{Op: backend.Delete, Mapping: m}
		s.forget(m, false) // not waited for: a restart checks the lease again anyway
		s.publish(Event{Kind: kind, Mapping: m})
	}
	s.ap.submit(t)
	return func() {
		<-t.done
		if t.err == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.log.Error("backend failed to remove mappings; will reconcile", "count", len(gone), "event", kind, "err", t.err)
		s.scheduleSync()
	}
}

// scheduleSync arranges a Sync of the backend with the table. Called with
// mu held.
func (s *Service) scheduleSync() {
	if s.retry != nil || s.closed {
		return
	}
	s.retry = s.clk.AfterFunc(s.syncRetry, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.retry = nil
		if s.closed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
		defer cancel()
		if err := s.syncLocked(ctx); err != nil {
			s.log.Error("backend reconciliation failed; will retry", "err", err)
			s.scheduleSync()
			return
		}
		s.log.Info("backend reconciled", "mappings", s.table.Len())
	})
}

// Sync makes the backend hold exactly the table's mappings, for start-up
// and after a firewall reload. When it fails, the Service tries again
// after Config.SyncRetry.
func (s *Service) Sync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.syncLocked(ctx)
	if err != nil {
		s.scheduleSync()
	}
	return err
}

// syncLocked is Sync with mu held.
func (s *Service) syncLocked(ctx context.Context) error {
	if s.closed {
		return fmt.Errorf("portmap: closed: %w", mapping.ErrNetworkFailure)
	}
	s.syncs++
	return s.ap.sync(ctx, slices.AppendSeq(make([]mapping.Mapping, 0, s.table.Len()), s.table.All()))
}

// Close stops expiry and removes every mapping from the backend (the
// graceful stop). Further requests fail with ErrNetworkFailure. It is
// idempotent.
func (s *Service) Close() error { return s.close(false) }

// Detach is Close but leaves the mappings in the forwarding plane when the
// backend can (backend.Releaser), for a restart that restores them from
// the store. It reports whether they were left.
func (s *Service) Detach() (bool, error) {
	if _, ok := s.be.(backend.Releaser); !ok {
		return false, s.Close()
	}
	return true, s.close(true)
}

func (s *Service) close(keep bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
	if s.retry != nil {
		s.retry()
		s.retry = nil
	}
	for sub := range s.subs {
		sub.close()
	}
	clear(s.subs)
	s.ap.drain() // no request is left waiting for the backend
	if keep {
		return s.be.(backend.Releaser).Release()
	}
	return s.be.Close()
}

func sortByKey(ms []mapping.Mapping) {
	slices.SortFunc(ms, func(a, b mapping.Mapping) int { return a.Key.Compare(b.Key) })
}
