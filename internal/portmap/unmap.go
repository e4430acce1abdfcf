package portmap

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/store"
)

// Unmap deletes mappings r.Client owns; see mapping.Mapper.
//
// The mappings leave the table at once and their backend change is
// queued without holding the lock, so that deletions from many clients
// share a backend batch as new mappings do. The client hears once the
// backend and the disk have both caught up; if the backend refuses, the
// mappings are put back where nothing took their place meanwhile, and
// the client is told of the failure with its mappings as they were.
func (s *Service) Unmap(ctx context.Context, r mapping.Request) error {
	if !r.Client.IsValid() {
		return fmt.Errorf("portmap: no client address: %w", mapping.ErrInvalid)
	}
	if !r.Proto.Valid() {
		return fmt.Errorf("portmap: protocol %v: %w", r.Proto, mapping.ErrUnsupported)
	}
	s.mu.Lock()
	u, err := s.unmapLocked(ctx, r)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	<-u.t.done
	if err := u.t.err; err != nil {
		// The client is told its mappings are still there: they must be
		// in the backend and their leases on disk again before it hears so.
		seq, back := s.restore(u)
		for _, t := range back {
			if <-t.done; t.err != nil {
				s.mu.Lock()
				s.log.Error("backend refused a mapping put back after a refused deletion; will reconcile", "key", t.track, "err", t.err)
				s.scheduleSync()
				s.mu.Unlock()
			}
		}
		_ = s.settle(ctx, seq, false)
		return fmt.Errorf("portmap: backend: %w: %w", mapping.ErrNetworkFailure, err)
	}
	s.removed(ctx, u.victims, r)
	// Gone from disk too before the client is told: a restart must not
	// bring back a port the client closed. Not lazily, even for NAT-PMP
	// and PCP: a new epoch makes clients map again, never delete again.
	return s.settle(ctx, u.seq, false)
}

// unmapping is a deletion on its way to the backend.
type unmapping struct {
	victims []mapping.Mapping
	t       *ticket
	seq     store.Seq // the leases' removal
	// unsure marks the victims that were still on their way into the
	// backend: a refused deletion says nothing about whether it holds them.
	unsure []bool
	syncs  uint64 // Service.syncs when the mappings left the table
}

// unmapLocked does Unmap's work with mu held: it takes the mappings out
// of the table and the store and queues their removal from the backend.
func (s *Service) unmapLocked(ctx context.Context, r mapping.Request) (unmapping, error) {
	if s.closed {
		return unmapping{}, fmt.Errorf("portmap: closed: %w", mapping.ErrNetworkFailure)
	}
	var victims []mapping.Mapping
	switch {
	case r.Suggest.Port() != 0:
		k := mapping.Key{Proto: r.Proto, External: netip.AddrPortFrom(s.ext, r.Suggest.Port()), Remote: r.Remote}
		m, ok := s.onExternalPort(k, r.Client)
		if !ok {
			return unmapping{}, fmt.Errorf("portmap: %v port %d: %w", r.Proto, r.Suggest.Port(), mapping.ErrNotFound)
		}
		if m.Origin.Kind == mapping.KindStatic {
			return unmapping{}, fmt.Errorf("portmap: %v is a static forward: %w", m.Key, mapping.ErrNotAuthorized)
		}
		if m.Client != r.Client && s.pol.SecureMode() {
			return unmapping{}, fmt.Errorf("portmap: %v belongs to %v: %w", m.Key, m.Client, mapping.ErrNotAuthorized)
		}
		victims = []mapping.Mapping{m}
	case r.Internal.Port() != 0:
		for _, m := range s.table.Internal(r.Client, r.Proto, r.Internal) {
			if m.Remote == r.Remote {
				victims = append(victims, m)
			}
		}
	default:
		// "Delete all" (NAT-PMP internal port 0) is about the mappings the
		// client made with the same protocol, not its UPnP ones.
		for _, m := range s.table.Client(r.Client, r.Proto) {
			if m.Origin.Kind == r.Origin.Kind {
				victims = append(victims, m)
			}
		}
	}
	if len(victims) == 0 {
		return unmapping{}, fmt.Errorf("portmap: %v mappings of %v on %v: %w", r.Proto, r.Client, r.Internal, mapping.ErrNotFound)
	}
	if err := ctx.Err(); err != nil {
		return unmapping{}, fmt.Errorf("portmap: %w: %w", mapping.ErrNetworkFailure, err)
	}
	u := unmapping{victims: victims, unsure: make([]bool, len(victims)), syncs: s.syncs}
	t := &ticket{changes: make([]backend.Change, len(victims))}
	for i, m := range victims {
		t.changes[i] = backend.Change{Op: backend.Delete, Mapping: m}
		u.unsure[i] = s.ap.pending(m.Key) != nil
		s.table.Delete(m.Key)
		u.seq = max(u.seq, s.forget(m, true))
	}
	u.t = s.ap.submit(t)
	s.gen++
	return u, nil
}

// onExternalPort returns the mapping with key k. While the WAN has no
// address (k's is zero) the mappings stay on the one they had
// (SetExternalAddr), so it looks for k's protocol, port and remote host on
// any address, the client's own mapping first: a UPnP client can still
// delete its mapping while the WAN is down. Called with mu held.
func (s *Service) onExternalPort(k mapping.Key, client netip.Addr) (mapping.Mapping, bool) {
	if k.External.Addr().IsValid() {
		return s.table.Get(k)
	}
	var found mapping.Mapping
	ok := false
	for _, m := range s.table.OnPort(k.Proto, k.External.Port()) {
		if m.Remote == k.Remote && (!ok || m.Client == client) {
			found, ok = m, true
		}
	}
	return found, ok
}

// removed announces mappings Unmap took out of the backend.
func (s *Service) removed(ctx context.Context, victims []mapping.Mapping, r mapping.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.log.Enabled(ctx, slog.LevelInfo) // with mu held: box nothing for a line that is off
	for _, m := range victims {
		s.publish(Event{Kind: Removed, Mapping: m})
		if info {
			s.log.Info("mapping deleted", "key", m.Key, "internal", m.Internal, "client", r.Client, "origin", r.Origin.Kind)
		}
	}
}

// restore puts back the mappings of a deletion the backend refused,
// which it therefore still holds, unless their key or port was taken
// meanwhile; when one could not be put back, the backend is then
// reconciled with the table. A mapping whose external address changed
// meanwhile (SetExternalAddr moved the table without it) comes back on the
// new one. It returns the store sequence number of the leases written
// again, and the tickets that put mappings back into the backend.
func (s *Service) restore(u unmapping) (store.Seq, []*ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	back := make([]bool, len(u.victims))
	to := make([]mapping.Mapping, len(u.victims))
	lost := false
	for i, m := range u.victims { // all checked before any is put back
		to[i] = m
		if s.ext.IsValid() && m.External.Addr() != s.ext {
			to[i].External = netip.AddrPortFrom(s.ext, m.External.Port())
		}
		back[i] = !s.closed && !u.unsure[i] && !s.taken(to[i])
		lost = lost || !back[i]
	}
	// A Sync queued since they left the table makes the backend hold the
	// table without them (nft flush ruleset while the deletion was on its
	// way): they go back into the backend too, behind that Sync, and a
	// renewal meanwhile waits for them. Otherwise the backend still holds
	// them where they were, and only a moved one needs a change.
	resync := s.syncs != u.syncs
	var seq store.Seq
	var tickets []*ticket
	for i, m := range u.victims {
		if !back[i] {
			continue
		}
		n := to[i]
		s.table.Put(n)
		seq = max(seq, s.persist(n, 0))
		switch {
		case resync:
			tickets = append(tickets, s.ap.submit(newAddTicket(n)))
		case n.Key != m.Key:
			t := &ticket{track: n.Key, changes: []backend.Change{{Op: backend.Delete, Mapping: m}, {Op: backend.Add, Mapping: n}}}
			tickets = append(tickets, s.ap.submit(t))
		}
	}
	s.gen++
	s.schedule()
	if lost {
		s.log.Warn("backend refused a deletion; will reconcile", "client", u.victims[0].Client, "mappings", len(u.victims))
		s.scheduleSync()
	}
	if len(tickets) > 0 {
		s.log.Warn("backend refused a deletion after a reconciliation or an address change; the mappings go back", "client", u.victims[0].Client, "mappings", len(tickets))
	}
	return seq, tickets
}

// taken reports whether the table holds a mapping on m's external port,
// or another of m's client for the same internal address, port and
// remote host: m, once deleted, cannot come back. Called with mu held.
func (s *Service) taken(m mapping.Mapping) bool {
	if len(s.table.OnPort(m.Proto, m.External.Port())) > 0 {
		return true
	}
	for _, o := range s.table.Internal(m.Client, m.Proto, m.Internal) {
		if o.Remote == m.Remote {
			return true
		}
	}
	return false
}
