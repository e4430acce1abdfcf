// Package portmap holds the Service, the single owner of berth's mapping
// state. It implements mapping.Mapper for the UPnP IGD, NAT-PMP (RFC 6886)
// and PCP (RFC 6887) responders: every request goes policy → lease table →
// backend, all or nothing. Decisions and the table are under one lock; the
// backend changes of concurrent new mappings share one batch (applier.go),
// and a mapping the backend refuses is withdrawn before its client hears
// of it. The Service also expires leases
// from the table's min-heap on an injected clock, keeps the NAT-PMP/PCP
// epoch, owns the static forwards and publishes change events.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/lease"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/store"
)

// maxPortRetries bounds how many other ports Map tries when the backend
// cannot take the one the allocator chose (a router process holds it).
const maxPortRetries = 8

// Config is what a Service needs. Backend, Policy and Clock are required.
type Config struct {
	Backend backend.Backend
	Policy  *policy.Policy
	Clock   clock.Clock
	Logger  *slog.Logger // nil discards
	// External is the initial external address; the zero Addr means
	// unknown (Map fails with ErrNetworkFailure until SetExternalAddr).
	External netip.Addr
	// SyncRetry is how long after a failed backend change during expiry
	// the Service tries to reconcile the backend with Sync; default 5s.
	SyncRetry time.Duration
	// Store, if not nil, keeps every lease a client asked for: Map and
	// Unmap return only once the change is on disk.
	Store Store
	// EpochBase is when the NAT-PMP/PCP epoch began, from the store of an
	// earlier run that lost no state; zero starts a new epoch now.
	EpochBase time.Time
}

// Service implements mapping.Mapper. All methods are safe for concurrent
// use.
type Service struct {
	be        backend.Backend
	ap        *applier // makes every backend call but Close and Release
	store     Store
	clk       clock.Clock
	log       *slog.Logger
	start     time.Time
	syncRetry time.Duration

	mu      sync.Mutex
	pol     *policy.Policy
	table   *lease.Table
	ext     netip.Addr
	closed  bool
	gen     uint64 // bumped on every change of the table's contents
	syncs   uint64 // Syncs queued (a Sync installs the whole table)
	timerAt time.Time
	stop    func() bool
	retry   func() bool // pending backend reconciliation
	subs    map[*subscriber]struct{}
	static  []Forward // the configured forwards, kept for a later address
	timerID uint64    // identifies the armed expiry timer
}

// New returns a Service with an empty table. It panics when a required
// dependency is missing.
func New(c Config) *Service {
	if c.Backend == nil || c.Policy == nil || c.Clock == nil {
		panic("portmap: New needs a Backend, a Policy and a Clock")
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	retry := c.SyncRetry
	if retry <= 0 {
		retry = 5 * time.Second
	}
	return &Service{
		be:        c.Backend,
		ap:        newApplier(c.Backend),
		store:     c.Store,
		clk:       c.Clock,
		log:       log.With("component", "portmap"),
		start:     epochStart(c.Clock.Now(), c.EpochBase),
		syncRetry: retry,
		pol:       c.Policy,
		table:     lease.New(),
		ext:       c.External,
		subs:      make(map[*subscriber]struct{}),
	}
}

// Interface guard.
var _ mapping.Mapper = (*Service)(nil)

// Epoch is the NAT-PMP/PCP epoch: whole seconds since the epoch began,
// from the clock's monotonic reading (RFC 6886 §3.6, RFC 6887 §8.5). It
// begins when the Service starts, or earlier when Config.EpochBase says
// an earlier run's state survived in the store.
func (s *Service) Epoch() uint32 {
	return uint32(max(s.clk.Now().Sub(s.start), 0) / time.Second)
}

// EpochStart is when the current epoch began (wall clock), for the store.
func (s *Service) EpochStart() time.Time { return s.start.Round(0) }

// epochStart is the start of the epoch: base carried over from the store,
// expressed on now's monotonic clock so that later wall-clock steps do not
// move it; now itself when base is zero or in the future (the wall clock
// went back: the old epoch cannot be trusted).
func epochStart(now, base time.Time) time.Time {
	if base.IsZero() {
		return now
	}
	elapsed := now.Round(0).Sub(base)
	if elapsed < 0 || elapsed >= (1<<32-1)*time.Second {
		return now
	}
	return now.Add(-elapsed)
}

// ExternalAddr returns the current external address.
func (s *Service) ExternalAddr() netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ext
}

// SetPolicy replaces the policy (SIGHUP) and withdraws the dynamic
// mappings it no longer allows: their port or internal host is now
// denied or reserved, or secure mode now forbids a mapping made for
// another host. It returns them. Quotas and lifetime bounds apply from
// the next request: no mapping is taken away because its client holds
// more than a lowered quota. Static forwards belong to the configuration
// (SetStatic). The new policy is in force whatever the backend says; if
// it fails to remove a withdrawn mapping, a Sync follows, as after an
// expiry.
func (s *Service) SetPolicy(p *policy.Policy) []mapping.Mapping {
	s.mu.Lock()
	gone, wait := s.setPolicyLocked(p)
	s.mu.Unlock()
	wait()
	return gone
}

// setPolicyLocked is SetPolicy's work with mu held; it returns the
// mappings withdrawn and the wait for the backend (retire).
func (s *Service) setPolicyLocked(p *policy.Policy) ([]mapping.Mapping, func()) {
	s.pol = p
	if s.closed {
		return nil, func() {}
	}
	var gone []mapping.Mapping
	for m := range s.table.All() {
		if m.Origin.Kind == mapping.KindStatic {
			continue
		}
		d := p.Decide(mapping.Request{Client: m.Client, Proto: m.Proto, Internal: m.Internal, Suggest: m.External,
			Exact: true, Remote: m.Remote, Origin: m.Origin}, policy.Usage{})
		if !d.Allow {
			gone = append(gone, m)
			s.log.Info("mapping withdrawn: the new policy denies it", "key", m.Key, "internal", m.Internal,
				"client", m.Client, "origin", m.Origin.Kind, "rule", d.Rule)
		}
	}
	if len(gone) == 0 {
		return nil, func() {}
	}
	for _, m := range gone {
		s.table.Delete(m.Key)
	}
	return gone, s.retire(gone, Removed)
}

// Len is the number of live mappings.
func (s *Service) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table.Len()
}

// Generation changes whenever the set of mappings or any of their
// attributes but the lease changes. Listings taken at the same generation
// are identical apart from lease times.
func (s *Service) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// Keys returns the key of every mapping, in List's order: the listing
// GetGenericPortMappingEntry indexes, without a copy of every Mapping.
func (s *Service) Keys() []mapping.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.AppendSeq(make([]mapping.Key, 0, s.table.Len()), s.table.Keys())
}

// portIndexSpan is the widest external port range List looks up port by
// port in the table's port index rather than walking a client's or every
// mapping.
const portIndexSpan = 256

// List returns the mappings that pass f, sorted by key. A filter on a few
// external ports (GetSpecificPortMappingEntry, the listing's lease
// refresh) costs the mappings on those ports, not the table.
func (s *Service) List(f mapping.Filter) []mapping.Mapping {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mapping.Mapping
	if f.Ports != (mapping.PortRange{}) && int(f.Ports.Hi)-int(f.Ports.Lo) < portIndexSpan {
		protos := []mapping.Protocol{mapping.TCP, mapping.UDP}
		if f.Proto != 0 {
			protos = []mapping.Protocol{f.Proto}
		}
		for _, p := range protos {
			for port := int(f.Ports.Lo); port <= int(f.Ports.Hi); port++ {
				out = append(out, s.table.OnPort(p, uint16(port))...)
			}
		}
		return filterSorted(out, f)
	}
	if f.Client.IsValid() {
		out = s.table.Client(f.Client, f.Proto)
		out = filterSorted(out, f)
		return out
	}
	for m := range s.table.All() {
		if f.Match(m) {
			out = append(out, m)
		}
	}
	return out
}

func validate(r mapping.Request) error {
	switch {
	case !r.Client.IsValid():
		return fmt.Errorf("portmap: no client address: %w", mapping.ErrInvalid)
	case !r.Proto.Valid():
		return fmt.Errorf("portmap: protocol %v: %w", r.Proto, mapping.ErrUnsupported)
	case r.Lifetime < 0:
		return fmt.Errorf("portmap: negative lifetime: %w", mapping.ErrInvalid)
	case r.Origin.Kind == mapping.KindStatic || r.Origin.Kind == mapping.KindNone:
		return fmt.Errorf("portmap: origin %v cannot map: %w", r.Origin.Kind, mapping.ErrInvalid)
	}
	return nil
}

// Map creates or renews a mapping; see mapping.Mapper.
func (s *Service) Map(ctx context.Context, r mapping.Request) (mapping.Mapping, error) {
	if err := validate(r); err != nil {
		return mapping.Mapping{}, err
	}
	if !r.Internal.Addr().IsValid() || r.Internal.Port() == 0 {
		return mapping.Mapping{}, fmt.Errorf("portmap: internal %v: %w", r.Internal, mapping.ErrInvalid)
	}
	var avoid []uint16 // ports the backend refused
	for {
		s.mu.Lock()
		res, err := s.mapLocked(ctx, r, avoid)
		s.mu.Unlock()
		if err != nil {
			return mapping.Mapping{}, err
		}
		if res.wait != nil {
			// The mapping is in the table; its backend change shares a
			// batch with the other requests' (applier.go) and the disk
			// sync runs meanwhile.
			<-res.wait.done
			if err := res.wait.err; err != nil {
				if !res.fresh {
					// A retransmission of a request whose mapping the
					// backend refused: the first one withdraws it.
					return mapping.Mapping{}, fmt.Errorf("portmap: backend: %w: %w", mapping.ErrNetworkFailure, err)
				}
				// Not in the backend, unless a Sync queued since put it
				// there from the table.
				// The client hears of the failure only once the lease is
				// gone from disk too: a restart must not bring back a
				// mapping it was told it does not have. The request fails
				// whatever the store says.
				_ = s.settle(ctx, s.undo(res.m, "the backend refused it", func() bool { return s.syncs != res.syncs }), false)
				if errors.Is(err, backend.ErrPortUnavailable) && !r.Exact && len(avoid) < maxPortRetries {
					// Something else on the router holds the port: try another.
					s.log.Warn("backend refused port, trying another", "key", res.m.Key, "err", err)
					avoid = append(avoid, res.m.External.Port())
					continue
				}
				return mapping.Mapping{}, backendErr(res.m.Key, r.Exact, err)
			}
			if res.fresh {
				s.confirm(res.m)
			}
		}
		// The lease is on disk (written, for NAT-PMP and PCP) before the
		// client hears of it; requests that arrive meanwhile share the
		// same disk sync.
		if err := s.settle(ctx, res.seq, lazy(r.Origin.Kind) && !res.sync); err != nil {
			if res.fresh && !(res.old != nil && s.revert(res.m, *res.old)) {
				s.undo(res.m, "its lease could not be stored", nil)
			}
			s.log.Error("mapping not acknowledged: lease store failed", "key", res.m.Key, "client", r.Client, "err", err)
			return mapping.Mapping{}, err
		}
		return res.m, nil
	}
}

// confirm publishes Added for a new mapping the backend took, unless it
// has gone or changed meanwhile.
func (s *Service) confirm(m mapping.Mapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.table.Get(m.Key); ok && !s.closed && cur.Client == m.Client && cur.Internal == m.Internal {
		s.publish(Event{Kind: Added, Mapping: cur})
	}
}

// backendErr is the error for a mapping the backend refused: the port is
// taken (ErrConflict for an exact request, ErrNoResources when every port
// tried was) or the backend failed.
func backendErr(k mapping.Key, exact bool, err error) error {
	if errors.Is(err, backend.ErrPortUnavailable) {
		code := mapping.ErrConflict
		if !exact {
			code = mapping.ErrNoResources
		}
		return fmt.Errorf("portmap: %v: %w: %w", k, code, err)
	}
	return fmt.Errorf("portmap: backend: %w: %w", mapping.ErrNetworkFailure, err)
}

// mapped is what mapLocked did.
type mapped struct {
	m     mapping.Mapping
	seq   store.Seq // the store sequence number to wait for
	fresh bool      // a new mapping, not a renewal
	// wait, when not nil, is the backend change still to be confirmed:
	// the new mapping's, or the one a renewal of it must wait for.
	wait  *ticket
	syncs uint64 // Service.syncs when the mapping entered the table
	// sync makes the answer wait for the disk sync whatever the kind (a
	// replacement); old is the mapping replaced.
	sync bool
	old  *mapping.Mapping
}

// mapLocked does Map's work with mu held. avoid are ports the backend
// refused for this request.
func (s *Service) mapLocked(ctx context.Context, r mapping.Request, avoid []uint16) (mapped, error) {
	if s.closed || !s.ext.IsValid() {
		return mapped{}, fmt.Errorf("portmap: no external address: %w", mapping.ErrNetworkFailure)
	}
	usage := policy.Usage{Client: s.table.ClientCount(r.Client), Total: s.table.Len()}
	if s.ext.IsValid() {
		// Static forwards are the configuration's, not the LAN's: they do
		// not use up the quota the policy gives clients. With an external
		// address they are all in the table (SetStatic).
		usage.Total -= len(s.static)
	}
	if _, ok := s.table.Existing(r, s.ext); ok {
		usage.Client--
		usage.Total--
	}
	d := s.pol.Decide(r, usage)
	if !d.Allow {
		s.log.Info("mapping refused", "client", r.Client, "proto", r.Proto, "internal", r.Internal,
			"suggest", r.Suggest.Port(), "rule", d.Rule, "origin", r.Origin.Kind)
		return mapped{}, fmt.Errorf("portmap: %w", d.Err)
	}
	now := s.clk.Now()
	var expires time.Time
	if d.Lifetime > 0 {
		expires = now.Add(d.Lifetime)
	}
	allowed := d.Ports
	for _, p := range avoid {
		allowed = without(allowed, p)
	}
	for try := 0; ; try++ {
		plan, err := s.table.Allocate(r, s.ext, allowed, expires)
		if err != nil {
			return mapped{}, fmt.Errorf("portmap: %w", err)
		}
		if plan.Renewal() {
			if plan.Old.Origin != plan.Mapping.Origin {
				s.gen++ // a new description is a change listings show
			}
			s.table.Commit(plan)
			s.schedule()
			seq := s.persistRenewal(plan, d.Lifetime)
			// Renewals are the hot path: do not box the arguments for
			// nothing when Info is off.
			if s.log.Enabled(ctx, slog.LevelInfo) {
				s.log.Info("mapping renewed", "key", plan.Mapping.Key, "internal", plan.Mapping.Internal,
					"client", r.Client, "lifetime", d.Lifetime, "origin", r.Origin.Kind)
			}
			return mapped{m: plan.Mapping, seq: seq, wait: s.ap.pending(plan.Mapping.Key)}, nil
		}
		if !plan.Replaces {
			// A new mapping: into the table now, into the backend with
			// the next batch. Map withdraws it if the backend refuses.
			if err := ctx.Err(); err != nil {
				return mapped{}, fmt.Errorf("portmap: %w: %w", mapping.ErrNetworkFailure, err)
			}
			s.table.Commit(plan)
			s.gen++
			s.schedule()
			t := s.ap.submit(newAddTicket(plan.Mapping))
			seq := s.persist(plan.Mapping, d.Lifetime)
			// Added is published once the backend took it (confirm).
			// New mappings are the other hot path: nothing is boxed when
			// Info is off.
			if s.log.Enabled(ctx, slog.LevelInfo) {
				s.log.Info("mapping created", "key", plan.Mapping.Key, "internal", plan.Mapping.Internal,
					"client", r.Client, "lifetime", d.Lifetime, "rule", d.Rule, "origin", r.Origin.Kind,
					"peers", plan.Mapping.Peers.String())
			}
			return mapped{m: plan.Mapping, seq: seq, fresh: true, wait: t, syncs: s.syncs}, nil
		}
		// A new internal target or new remote-peer filters for a key the
		// client holds: the backend replaces the old mapping (a Delete
		// and an Add of the same key, or of two keys), before the table
		// changes, so that a refusal leaves the old one working.
		batch := []backend.Change{{Op: backend.Delete, Mapping: plan.Old}, {Op: backend.Add, Mapping: plan.Mapping}}
		err = s.ap.apply(ctx, batch)
		if errors.Is(err, backend.ErrPortUnavailable) && !r.Exact && try < maxPortRetries {
			s.log.Warn("backend refused port, trying another", "key", plan.Mapping.Key, "err", err)
			allowed = without(allowed, plan.Mapping.External.Port())
			continue
		}
		if err != nil {
			return mapped{}, backendErr(plan.Mapping.Key, r.Exact, err)
		}
		s.table.Commit(plan)
		s.gen++
		s.schedule()
		if plan.Old.Key != plan.Mapping.Key {
			s.forget(plan.Old, true)
		}
		s.publish(Event{Kind: Removed, Mapping: plan.Old})
		seq := s.persist(plan.Mapping, d.Lifetime)
		s.publish(Event{Kind: Added, Mapping: plan.Mapping})
		s.log.Info("mapping created", "key", plan.Mapping.Key, "internal", plan.Mapping.Internal,
			"client", r.Client, "lifetime", d.Lifetime, "rule", d.Rule, "origin", r.Origin.Kind,
			"replaced", true, "peers", plan.Mapping.Peers.String())
		// Synced before the answer: the old mapping must not come back.
		old := plan.Old // a copy: &plan.Old would put every request's plan on the heap
		return mapped{m: plan.Mapping, seq: seq, fresh: true, sync: true, old: &old}, nil
	}
}

// without returns rs minus port p.
func without(rs []mapping.PortRange, p uint16) []mapping.PortRange {
	out := make([]mapping.PortRange, 0, len(rs)+1)
	for _, r := range rs {
		if !r.Contains(p) {
			out = append(out, r)
			continue
		}
		if p > r.Lo {
			out = append(out, mapping.PortRange{Lo: r.Lo, Hi: p - 1})
		}
		if p < r.Hi {
			out = append(out, mapping.PortRange{Lo: p + 1, Hi: r.Hi})
		}
	}
	return out
}

func filterSorted(ms []mapping.Mapping, f mapping.Filter) []mapping.Mapping {
	out := ms[:0]
	for _, m := range ms {
		if f.Match(m) {
			out = append(out, m)
		}
	}
	sortByKey(out)
	return out
}
