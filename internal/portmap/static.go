package portmap

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// Forward is a static forward ("virtual server") from the configuration:
// a permanent mapping that LAN clients can neither delete nor take.
type Forward struct {
	Name     string
	Proto    mapping.Protocol
	External uint16
	Internal netip.AddrPort
	Remote   netip.Addr // zero: any remote host
}

func (f Forward) mapping(ext netip.Addr) mapping.Mapping {
	return mapping.Mapping{
		Key:      mapping.Key{Proto: f.Proto, External: netip.AddrPortFrom(ext, f.External), Remote: f.Remote},
		Internal: f.Internal,
		Origin:   mapping.Origin{Kind: mapping.KindStatic, Description: f.Name},
	}
}

// SetStatic makes the static forwards exactly fs, in one backend batch:
// forwards no longer configured are removed, new and changed ones are
// installed. A dynamic mapping on a forward's external port is withdrawn
// (the configuration wins) and a Removed event tells its responder. On
// error nothing changes. While the external address is unknown the
// forwards are kept and installed when SetExternalAddr gives one.
func (s *Service) SetStatic(ctx context.Context, fs []Forward) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("portmap: static forwards: closed: %w", mapping.ErrNetworkFailure)
	}
	for _, f := range fs {
		if !f.Proto.Valid() || f.External == 0 || !f.Internal.IsValid() || f.Internal.Port() == 0 {
			return fmt.Errorf("portmap: static forward %q: %w", f.Name, mapping.ErrInvalid)
		}
	}
	if !s.ext.IsValid() {
		s.static = slices.Clone(fs)
		if len(fs) > 0 {
			s.log.Warn("static forwards wait for an external address", "count", len(fs))
		}
		return nil
	}
	if err := s.installStatic(ctx, fs); err != nil {
		return err
	}
	s.static = slices.Clone(fs)
	return nil
}

// installStatic does SetStatic's work on the current external address.
// Called with mu held.
func (s *Service) installStatic(ctx context.Context, fs []Forward) error {
	want := make(map[mapping.Key]mapping.Mapping, len(fs))
	for _, f := range fs {
		m := f.mapping(s.ext)
		if _, dup := want[m.Key]; dup {
			return fmt.Errorf("portmap: static forward %q: %v declared twice: %w", f.Name, m.Key, mapping.ErrConflict)
		}
		want[m.Key] = m
	}
	var batch []backend.Change
	var removed, added []mapping.Mapping
	for m := range s.table.All() {
		w, keep := want[m.Key]
		switch {
		case m.Origin.Kind == mapping.KindStatic && keep && w == m:
			delete(want, m.Key) // unchanged
		case m.Origin.Kind == mapping.KindStatic && !keep:
			removed = append(removed, m)
		}
	}
	for _, w := range want {
		// Anything on the forward's port that is not exactly w goes: an
		// old version of the forward or a dynamic mapping.
		for _, m := range s.table.OnPort(w.Proto, w.External.Port()) {
			if m.External.Addr() == w.External.Addr() && (m.Key == w.Key || m.Origin.Kind != mapping.KindStatic) {
				removed = append(removed, m)
			}
		}
		added = append(added, w)
	}
	removed = uniqueByKey(removed)
	for _, m := range removed {
		batch = append(batch, backend.Change{Op: backend.Delete, Mapping: m})
	}
	for _, m := range added {
		batch = append(batch, backend.Change{Op: backend.Add, Mapping: m})
	}
	if len(batch) == 0 {
		return nil
	}
	if err := s.ap.apply(ctx, batch); err != nil {
		return fmt.Errorf("portmap: static forwards: %w", err)
	}
	for _, m := range removed {
		s.table.Delete(m.Key)
		s.forget(m, false)
		s.publish(Event{Kind: Removed, Mapping: m})
		if m.Origin.Kind != mapping.KindStatic {
			s.log.Warn("mapping withdrawn for a static forward", "key", m.Key, "client", m.Client, "origin", m.Origin.Kind)
		}
	}
	for _, m := range added {
		s.table.Put(m)
		s.publish(Event{Kind: Added, Mapping: m})
		s.log.Info("static forward installed", "name", m.Origin.Description, "key", m.Key, "internal", m.Internal)
	}
	s.gen++
	return nil
}

// SetExternalAddr moves every mapping to a new external address, in one
// backend batch, and announces the change. A zero a records that the WAN
// is down: mappings stay where they are and new ones fail until an address
// returns.
func (s *Service) SetExternalAddr(ctx context.Context, a netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a == s.ext || s.closed {
		return nil
	}
	if a.IsValid() {
		var batch []backend.Change
		var olds, moved, dropped []mapping.Mapping
		for m := range s.table.All() {
			if m.External.Addr() == a {
				continue
			}
			n := m
			n.External = netip.AddrPortFrom(a, m.External.Port())
			batch = append(batch, backend.Change{Op: backend.Delete, Mapping: m})
			olds, moved = append(olds, m), append(moved, n)
		}
		// Leases restored while the WAN had no address keep the address
		// they were stored with, and two of them may hold one port on two
		// addresses: on a, one port holds one mapping, the first.
		seen := make(map[mapping.Key]bool, len(moved))
		keep := 0
		for i, n := range moved {
			if _, on := s.table.Get(n.Key); on || seen[n.Key] {
				dropped = append(dropped, olds[i])
				continue
			}
			seen[n.Key] = true
			olds[keep], moved[keep] = olds[i], n
			keep++
			batch = append(batch, backend.Change{Op: backend.Add, Mapping: n})
		}
		olds, moved = olds[:keep], moved[:keep]
		if len(batch) > 0 {
			if err := s.ap.apply(ctx, batch); err != nil {
				return fmt.Errorf("portmap: move mappings to %v: %w: %w", a, mapping.ErrNetworkFailure, err)
			}
		}
		for i, n := range moved {
			s.table.Delete(olds[i].Key)
			s.table.Put(n)
			// Not waited for: a restart moves stored leases to the
			// address of the day anyway.
			s.forget(olds[i], false)
			s.persist(n, 0)
		}
		for _, m := range dropped {
			s.table.Delete(m.Key)
			s.forget(m, false)
			s.publish(Event{Kind: Removed, Mapping: m})
			s.log.Warn("mapping withdrawn: another holds its port on the new external address", "key", m.Key,
				"internal", m.Internal, "client", m.Client, "origin", m.Origin.Kind)
		}
		s.gen++
	}
	s.log.Info("external address changed", "from", s.ext, "to", a)
	s.ext = a
	s.publish(Event{Kind: ExternalChanged, Addr: a})
	if a.IsValid() && len(s.static) > 0 {
		// Forwards configured while the address was unknown; installing
		// the same set again is a no-op.
		if err := s.installStatic(ctx, s.static); err != nil {
			s.log.Error("static forwards not installed", "err", err)
		}
	}
	return nil
}

func uniqueByKey(ms []mapping.Mapping) []mapping.Mapping {
	seen := make(map[mapping.Key]bool, len(ms))
	out := ms[:0]
	for _, m := range ms {
		if !seen[m.Key] {
			seen[m.Key] = true
			out = append(out, m)
		}
	}
	return out
}
