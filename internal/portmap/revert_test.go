package portmap

import (
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/lease"
	"github.com/berthd/berth/internal/mapping"
)

// TestFullDiskReplacementKeepsTheOldMapping: a replacement (a new internal
// target, new remote-peer filters) whose lease cannot be stored fails, and
// the client keeps the mapping it had, as after a failed renewal: in the
// table, in the backend, and written to the store again, since the
// replacement's lease may have overwritten it there.
func TestFullDiskReplacementKeepsTheOldMapping(t *testing.T) {
	pcp, filtered := pcpAndFiltered()
	for _, tt := range []struct {
		name           string
		first, replace mapping.Request
	}{
		{"UPnP, new internal port", igd(hostA, mapping.TCP, 8000, 8080, time.Hour), igd(hostA, mapping.TCP, 8001, 8080, time.Hour)},
		{"PCP, new filters", pcp, filtered},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, fs, be := onFailingStore(t)
			old, err := s.Map(ctx, tt.first)
			if err != nil {
				t.Fatal(err)
			}
			sub := s.Subscribe(16)
			defer sub.Cancel()
			fs.mu.Lock()
			fs.fail = syscall.ENOSPC
			fs.mu.Unlock()
			if _, err := s.Map(ctx, tt.replace); !errors.Is(err, mapping.ErrNetworkFailure) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("replacement on a full disk: got %v, want ErrNetworkFailure wrapping ENOSPC", err)
			}
			same := func(m mapping.Mapping) bool {
				return m.Key == old.Key && m.Internal == old.Internal && m.Peers.Equal(old.Peers)
			}
			if ms := s.List(mapping.Filter{}); len(ms) != 1 || !same(ms[0]) {
				t.Errorf("table %v, want only the old mapping %v", ms, old)
			}
			if st := be.State(); len(st) != 1 || !same(st[0]) {
				t.Errorf("backend %v, want only the old mapping %v", st, old)
			}
			fs.mu.Lock()
			last := fs.last
			fs.fail = nil
			fs.mu.Unlock()
			if !same(last) {
				t.Errorf("last lease written %v, want the old mapping %v", last, old)
			}
			// Subscribers saw the old mapping replaced and put back.
			var kinds []EventKind
			for len(kinds) < 4 {
				select {
				case e := <-sub.C():
					kinds = append(kinds, e.Kind)
				default:
					t.Fatalf("events %v, want Removed, Added, Removed, Added", kinds)
				}
			}
			if want := []EventKind{Removed, Added, Removed, Added}; !slices.Equal(kinds, want) {
				t.Errorf("events %v, want %v", kinds, want)
			}
			if _, err := s.Map(ctx, tt.replace); err != nil {
				t.Fatalf("the replacement once the disk has room: %v", err)
			}
		})
	}
}

// revert on a replacement to another key (the old port no longer allowed
// to it): the old mapping comes back and the replacement's lease leaves
// the store; it does not come back over a mapping that took its key
// meanwhile, nor when the backend will not take it, and the caller then
// withdraws the replacement as before.
func TestRevertToAnotherKey(t *testing.T) {
	for _, tt := range []struct {
		name          string
		takeOldKey    bool
		backendRefuse bool
		want          bool
	}{
		{"the old key is free", false, false, true},
		{"another mapping took the old key", true, false, false},
		{"the backend refuses", false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, fs, be := onFailingStore(t)
			old, err := s.Map(ctx, igd(hostA, mapping.TCP, 8000, 8080, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			// The replacement as Map commits it, on port 8081.
			m := old
			m.Key.External = netip.AddrPortFrom(ext, 8081)
			m.Internal = netip.AddrPortFrom(hostA, 8001)
			s.mu.Lock()
			s.table.Commit(lease.Plan{Mapping: m, Old: old, Replaces: true})
			s.mu.Unlock()
			if err := be.Apply(ctx, []backend.Change{{Op: backend.Delete, Mapping: old}, {Op: backend.Add, Mapping: m}}); err != nil {
				t.Fatal(err)
			}
			if tt.takeOldKey {
				other := old
				other.Client, other.Internal = hostB, netip.AddrPortFrom(hostB, 8000)
				s.mu.Lock()
				s.table.Put(other)
				s.mu.Unlock()
			}
			if tt.backendRefuse {
				be.Fail(errors.New("test: port taken by another program"))
			}
			if got := s.revert(m, old); got != tt.want {
				t.Fatalf("revert: %t, want %t", got, tt.want)
			}
			cur, ok := s.table.Get(m.Key)
			if !tt.want {
				if !ok || cur.Internal != m.Internal {
					t.Fatalf("revert refused, but the replacement is not left as it was: %v, %t", cur, ok)
				}
				return
			}
			back, ok := s.table.Get(old.Key)
			if _, still := s.table.Get(m.Key); still || !ok || back.Internal != old.Internal {
				t.Fatalf("after revert: old %v (%t), replacement still there: %t", back, ok, still)
			}
			if st := be.State(); len(st) != 1 || st[0].Key != old.Key || st[0].Internal != old.Internal {
				t.Errorf("backend %v, want only the old mapping", st)
			}
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if !slices.Contains(fs.dels, m.Key) || fs.last.Key != old.Key {
				t.Errorf("store: deletes %v, last put %v; want the replacement deleted and the old one put", fs.dels, fs.last)
			}
		})
	}
}

// undo leaves a mapping whose filters changed since: it is no longer the
// one the failed request made.
func TestUndoLeavesNewFilters(t *testing.T) {
	h := newHarness(t, nil)
	_, filtered := pcpAndFiltered()
	m := h.mustMap(t, filtered)
	stale := m
	stale.Peers = peerSet("198.51.100.9/32")
	h.undo(stale, "test", nil)
	if cur, ok := h.table.Get(m.Key); !ok || !cur.Peers.Equal(m.Peers) {
		t.Fatalf("undo of a mapping with other filters withdrew the current one: %v, %t", cur, ok)
	}
}
