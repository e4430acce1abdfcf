package portmap

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/lease"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/store"
)

// Store keeps the leases the Service acknowledges (internal/store.Store).
// The Service calls Put and Delete with its lock held, in the order the
// changes happen, and waits for durability after releasing it, so that
// concurrent requests share one disk sync.
//
// New and renewed NAT-PMP and PCP leases go in with PutLazy, and their
// clients are answered once the lease is written (WaitWritten), before it
// is synced: their clients learn of lost state from the epoch, which
// restarts when the machine stopped before the sync (store.Loaded.Unclean).
// A deletion a client asked for is synced before the answer, whatever the
// protocol: a new epoch makes clients map again, never delete again.
// Deletions nobody waits for (expiry, a static forward) are lazy.
// A disk sync per batch of requests cost as much CPU as the requests
// themselves (BENCHMARKS.md).
type Store interface {
	Put(m mapping.Mapping) store.Seq
	Delete(k mapping.Key) store.Seq
	PutLazy(m mapping.Mapping) store.Seq
	DeleteLazy(k mapping.Key) store.Seq
	Wait(ctx context.Context, seq store.Seq) error
	WaitWritten(ctx context.Context, seq store.Seq) error
	Last() store.Seq
}

// lazy reports whether leases of kind k are stored lazily (see Store):
// their clients learn of lost state from the NAT-PMP/PCP epoch.
func lazy(k mapping.Kind) bool {
	return k == mapping.KindNATPMP || k == mapping.KindPCP
}

// durable reports whether m belongs in the store: every lease a client
// asked for. Static forwards come from the configuration at every start.
func durable(m mapping.Mapping) bool {
	return m.Origin.Kind != mapping.KindStatic && m.Origin.Kind != mapping.KindNone
}

// storeSlack bounds how far beyond the lease a client was granted the
// stored lease may end (see persist).
const storeSlack = time.Hour

// persist records m, which the table holds, in the store; 0 when there is
// nothing to wait for. Called with mu held.
//
// The stored lease ends slack later than the one granted (slack is at
// most storeSlack), so that a renewal ending no later than the stored
// lease needs no write: with a lifetime L, a client that renews every L/2
// writes every other renewal, retransmissions and immediate renewals
// never, and a renewal costs no disk sync. The promise to the client
// holds, since a restart restores at least the lease it was granted; a
// lease may outlive a crash by up to slack.
func (s *Service) persist(m mapping.Mapping, slack time.Duration) store.Seq {
	if s.store == nil || !durable(m) {
		return 0
	}
	if !m.Permanent() {
		m.Expires = m.Expires.Add(min(max(slack, 0), storeSlack))
	}
	s.table.SetStoredUntil(m.Key, m.Expires)
	if lazy(m.Origin.Kind) {
		return s.store.PutLazy(m)
	}
	return s.store.Put(m)
}

// persistRenewal records a renewal p (lease life) unless the store
// already holds a lease for it that ends no earlier and says the same;
// the sequence number returned then covers the earlier write, which may
// still be on its way to disk. Called with mu held.
func (s *Service) persistRenewal(p lease.Plan, life time.Duration) store.Seq {
	m := p.Mapping
	if s.store == nil || !durable(m) {
		return 0
	}
	if !m.Permanent() && p.Old.Origin == m.Origin && p.Old.Peers.Equal(m.Peers) {
		if end := s.table.StoredUntil(m.Key); !end.IsZero() && !m.Expires.After(end) {
			return s.store.Last()
		}
	}
	return s.persist(m, life)
}

// forget removes m from the store, lazily for a NAT-PMP or PCP lease unless
// now. Called with mu held.
func (s *Service) forget(m mapping.Mapping, now bool) store.Seq {
	if s.store == nil || !durable(m) {
		return 0
	}
	if !now && lazy(m.Origin.Kind) {
		return s.store.DeleteLazy(m.Key)
	}
	return s.store.Delete(m.Key)
}

// settle waits until the changes up to seq are on disk, or only written
// when written is set (a NAT-PMP or PCP lease: see Store). A failure is
// ErrNetworkFailure: the protocols' answer for "the gateway could not do
// it now" (UPnP 501, NAT-PMP 3, PCP NETWORK_FAILURE).
func (s *Service) settle(ctx context.Context, seq store.Seq, written bool) error {
	if seq == 0 {
		return nil
	}
	wait := s.store.Wait
	if written {
		wait = s.store.WaitWritten
	}
	if err := wait(ctx, seq); err != nil {
		return fmt.Errorf("portmap: lease store: %w: %w", mapping.ErrNetworkFailure, err)
	}
	return nil
}

// undo withdraws a new mapping that the client will not be told of: its
// lease could not be stored (a client must not hold a port that a restart
// would silently take away), or the backend refused it. It does nothing
// when m has changed (new filters too) or gone meanwhile. installed,
// called with mu held, says whether the backend may hold m; nil means it
// does. It returns the store sequence number of the lease's removal.
func (s *Service) undo(m mapping.Mapping, why string, installed func() bool) store.Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.table.Get(m.Key)
	if s.closed || !ok || cur.Client != m.Client || cur.Internal != m.Internal || !cur.Peers.Equal(m.Peers) {
		return 0
	}
	if installed == nil || installed() {
		ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
		defer cancel()
		if err := s.ap.apply(ctx, []backend.Change{{Op: backend.Delete, Mapping: cur}}); err != nil {
			s.log.Error("backend failed to withdraw a mapping; will reconcile", "key", m.Key, "err", err)
			s.scheduleSync()
		}
	}
	s.table.Delete(m.Key)
	// On disk before the client hears of the failure, whatever the kind.
	seq := s.forget(cur, true)
	s.gen++
	if installed == nil {
		// Added was published; a mapping the backend refused never was.
		s.publish(Event{Kind: Removed, Mapping: cur})
	}
	s.log.Warn("mapping withdrawn: "+why, "key", m.Key, "client", m.Client)
	return seq
}

// revert puts back old, the mapping that the replacement m took the place
// of, when m's lease could not be stored: the client hears that its
// request failed and keeps what it had, as after a failed renewal. old's
// lease is written again, since m's may have overwritten it. It reports
// false, having done nothing, when m has changed or gone meanwhile or
// another mapping took old's key; the caller then withdraws m (undo).
func (s *Service) revert(m, old mapping.Mapping) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.table.Get(m.Key)
	if s.closed || !ok || cur.Client != m.Client || cur.Internal != m.Internal || !cur.Peers.Equal(m.Peers) {
		return false
	}
	if _, taken := s.table.Get(old.Key); taken && old.Key != m.Key {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	if err := s.ap.apply(ctx, []backend.Change{{Op: backend.Delete, Mapping: cur}, {Op: backend.Add, Mapping: old}}); err != nil {
		// The kernel may no longer let old in (its port taken): withdraw
		// m as before.
		s.log.Warn("backend refused to put back a replaced mapping", "key", old.Key, "err", err)
		return false
	}
	s.table.Delete(m.Key)
	s.table.Put(old)
	s.gen++
	s.schedule()
	if old.Key != m.Key {
		s.forget(cur, true)
	}
	s.persist(old, 0)
	s.publish(Event{Kind: Removed, Mapping: cur})
	s.publish(Event{Kind: Added, Mapping: old})
	s.log.Warn("replacement withdrawn: its lease could not be stored; the mapping it replaced is back", "key", m.Key, "client", m.Client)
	return true
}

// Restored is what Restore did with the stored leases.
type Restored struct {
	Restored int // in the table and the backend again
	Expired  int // ended while berthd was not running
	Refused  int // the current policy, a static forward or another lease holds the port
	// Kept are the leases RestoreKeeping did not restore because the
	// policy refused them: still in the store.
	Kept int
}

// Restore puts leases loaded from the store back: each one still running,
// still allowed by the current policy and not in conflict with a mapping
// already in the table, moved to the current external address when that
// changed. Dropped leases are removed from the store. The backend is then
// reconciled with the whole table in one Sync. Call it once, before the
// responders serve and before SetStatic (whose forwards then win any
// conflict).
func (s *Service) Restore(ctx context.Context, ms []mapping.Mapping) (Restored, error) {
	r, _, err := s.restoreLeases(ctx, ms, false, false)
	return r, err
}

// RestoreKeeping is Restore that keeps the leases of hosts outside every
// LAN prefix served now (a LAN without an address yet, berthd serving its
// WAN meanwhile): they stay in the store and are returned, for Readmit
// once their LAN may be served.
func (s *Service) RestoreKeeping(ctx context.Context, ms []mapping.Mapping) (Restored, []mapping.Mapping, error) {
	return s.restoreLeases(ctx, ms, true, false)
}

// Readmit puts back leases RestoreKeeping kept, while berthd serves: those
// the policy allows now come back and are written to the store again
// (the entry may have been replaced meanwhile), those still outside every
// LAN prefix are returned to wait on, and the rest are dropped. A lease
// whose port another mapping took meanwhile is dropped; that mapping's
// stored lease stays.
func (s *Service) Readmit(ctx context.Context, ms []mapping.Mapping) (Restored, []mapping.Mapping, error) {
	return s.restoreLeases(ctx, ms, true, true)
}

func (s *Service) restoreLeases(ctx context.Context, ms []mapping.Mapping, keep, rewrite bool) (Restored, []mapping.Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r Restored
	var kept []mapping.Mapping
	now := s.clk.Now()
	s.table.Grow(len(ms))
	for _, m := range ms {
		if !m.Permanent() && !m.Expires.After(now) {
			r.Expired++
			s.forget(m, false)
			continue
		}
		stored, old, orig := m, m.Key, m.Expires
		if s.ext.IsValid() {
			m.External = netip.AddrPortFrom(s.ext, m.External.Port())
		}
		m, why, outside := s.admit(m, now)
		if keep && outside {
			r.Kept++
			kept = append(kept, stored)
			continue
		}
		if why != "" {
			r.Refused++
			// A durable mapping on the same key owns the stored entry now.
			if cur, held := s.table.Get(old); !held || !durable(cur) {
				s.forget(mapping.Mapping{Key: old, Origin: m.Origin}, false)
			}
			s.log.Info("stored lease not restored", "key", old, "client", m.Client, "why", why)
			continue
		}
		s.table.Put(m)
		if rewrite || old != m.Key || m.Expires != orig {
			if old != m.Key {
				s.forget(mapping.Mapping{Key: old, Origin: m.Origin}, false)
			}
			s.persist(m, 0)
		} else {
			s.table.SetStoredUntil(m.Key, m.Expires)
		}
		r.Restored++
	}
	if r.Restored > 0 {
		s.gen++
		s.schedule()
	}
	if rewrite && r.Restored == 0 {
		return r, kept, nil // nothing new for the backend
	}
	if err := s.syncLocked(ctx); err != nil {
		s.scheduleSync() // the table is the truth; the backend catches up
		return r, kept, fmt.Errorf("portmap: restore: %w: %w", mapping.ErrNetworkFailure, err)
	}
	return r, kept, nil
}

// admit says why a stored lease m cannot come back, or "" when it can, and
// whether only its host being outside every LAN prefix is why; it returns
// m with its lease shortened to what the current policy grants. Called
// with mu held.
func (s *Service) admit(m mapping.Mapping, now time.Time) (mapping.Mapping, string, bool) {
	if !m.Proto.Valid() || !m.Client.IsValid() || !m.Internal.IsValid() || m.Internal.Port() == 0 || !durable(m) {
		return m, "malformed", false
	}
	if cur, ok := s.table.Get(m.Key); ok {
		return m, fmt.Sprintf("port held by %v", cur.Client), false
	}
	r := mapping.Request{
		Client: m.Client, Proto: m.Proto, Internal: m.Internal, Suggest: m.External, Exact: true,
		Remote: m.Remote, Lifetime: m.Expires.Sub(now), Origin: m.Origin, Peers: m.Peers,
	}
	if m.Permanent() {
		r.Lifetime = 0
	}
	d := s.pol.Decide(r, policy.Usage{Client: s.table.ClientCount(m.Client), Total: s.table.Len()})
	if !d.Allow {
		return m, fmt.Sprintf("policy: %v (%s)", d.Err, d.Rule), d.OutsideLAN()
	}
	// The stored lease may end up to a slack after the one granted
	// (persist); only a lease beyond what the policy grants now, slack
	// included, is cut: the cap was lowered meanwhile.
	if d.Lifetime > 0 {
		limit := d.Lifetime + min(d.Lifetime, storeSlack)
		if m.Permanent() || m.Expires.Sub(now) > limit {
			m.Expires = now.Add(limit)
		}
	}
	return m, "", false
}
