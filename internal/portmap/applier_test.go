package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// waitFor bounds every wait of these tests; it never measures anything.
const waitFor = 5 * time.Second

// gated is a fake backend whose Apply, while the gate is shut, stops on
// entry until it opens: a batch stays "in the kernel" for as long as a
// test needs.
type gated struct {
	*fake.Backend
	mu      sync.Mutex
	shut    chan struct{} // nil: open
	entered chan struct{} // receives on every Apply
}

func newGated() *gated {
	return &gated{Backend: &fake.Backend{}, entered: make(chan struct{}, 64)}
}

func (g *gated) close() {
	g.mu.Lock()
	if g.shut == nil {
		g.shut = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gated) open() {
	g.mu.Lock()
	if g.shut != nil {
		close(g.shut)
		g.shut = nil
	}
	g.mu.Unlock()
}

func (g *gated) Apply(ctx context.Context, cs []backend.Change) error {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	g.entered <- struct{}{}
	if shut != nil {
		<-shut
	}
	return g.Backend.Apply(ctx, cs)
}

func newGatedService(t *testing.T) (*Service, *gated) {
	t.Helper()
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, MaxPerClient: 100, MaxTotal: 1000})
	if err != nil {
		t.Fatal(err)
	}
	g := newGated()
	s := New(Config{Backend: g, Policy: pol, Clock: clocktest.NewFake(t0), External: ext})
	t.Cleanup(func() {
		g.open()
		s.Close()
	})
	return s, g
}

func entered(t *testing.T, g *gated) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(waitFor):
		t.Fatal("no Apply reached the backend")
	}
}

type result struct {
	m   mapping.Mapping
	err error
}

// mapAsync runs Map in a goroutine; the channel receives its outcome.
func mapAsync(s *Service, r mapping.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		m, err := s.Map(ctx, r)
		ch <- result{m, err}
	}()
	return ch
}

func outcome(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		t.Fatal("Map did not return")
		return result{}
	}
}

// inTable waits until the Service's table holds n mappings: the requests
// have queued their backend changes.
func inTable(t *testing.T, s *Service, n int) {
	t.Helper()
	for i := 0; s.Len() < n; i++ {
		if i == int(waitFor/time.Millisecond) {
			t.Fatalf("table holds %d mappings, want %d", s.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// leftInTable waits until the Service's table holds n mappings, no more:
// deletions have taken theirs out and queued their backend changes.
func leftInTable(t *testing.T, s *Service, n int) {
	t.Helper()
	for i := 0; s.Len() != n; i++ {
		if i == int(waitFor/time.Millisecond) {
			t.Fatalf("table holds %v, want %d mappings", s.List(mapping.Filter{}), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// queueBehind holds one new mapping of hostA in the backend (the gate
// shut) and queues n more of hostB behind it; they are in the table when
// it returns.
func queueBehind(t *testing.T, s *Service, g *gated, n int) (first <-chan result, rest []<-chan result) {
	t.Helper()
	g.close()
	first = mapAsync(s, pmp(hostA, mapping.UDP, 5000, 5000, time.Hour))
	entered(t, g)
	for i := range n {
		rest = append(rest, mapAsync(s, pmp(hostB, mapping.UDP, uint16(6000+i), uint16(6000+i), time.Hour)))
	}
	inTable(t, s, n+1)
	return first, rest
}

// TestConcurrentMapsShareABatch checks that new mappings requested while
// a backend batch is in the kernel are applied together, in one batch,
// and that each request is answered only after it.
func TestConcurrentMapsShareABatch(t *testing.T) {
	s, g := newGatedService(t)
	first, rest := queueBehind(t, s, g, 5)
	select {
	case r := <-rest[0]:
		t.Fatalf("Map answered (%v, %v) before its backend batch ran", r.m, r.err)
	default:
	}
	g.open()
	for _, ch := range append(rest, first) {
		if r := outcome(t, ch); r.err != nil {
			t.Fatalf("Map: %v", r.err)
		}
	}
	batches := g.Batches()
	if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != 5 {
		t.Fatalf("backend batches %v, want one of 1 change and one of the 5 that queued meanwhile", batches)
	}
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("backend holds %v, table %v", g.State(), s.List(mapping.Filter{}))
	}
}

// TestRefusedSharedBatch checks that when the backend refuses a shared
// batch, every request gets its own outcome: one by one, only the change
// the backend refuses fails, and it leaves no trace in the table or the
// backend, and no event.
func TestRefusedSharedBatch(t *testing.T) {
	s, g := newGatedService(t)
	sub := s.Subscribe(16)
	first, rest := queueBehind(t, s, g, 3)
	// The shared batch fails, then the second of the three, alone.
	g.Fail(nil, fake.ErrInjected, nil, fake.ErrInjected)
	g.open()
	if r := outcome(t, first); r.err != nil {
		t.Fatalf("first Map: %v", r.err)
	}
	var failed, ok []mapping.Mapping
	for _, ch := range rest {
		r := outcome(t, ch)
		switch {
		case errors.Is(r.err, mapping.ErrNetworkFailure):
			failed = append(failed, r.m)
		case r.err == nil:
			ok = append(ok, r.m)
		default:
			t.Fatalf("Map: %v, want ErrNetworkFailure or success", r.err)
		}
	}
	if len(failed) != 1 || len(ok) != 2 {
		t.Fatalf("%d failed, %d succeeded; want 1 and 2", len(failed), len(ok))
	}
	list := s.List(mapping.Filter{})
	if len(list) != 3 || fmt.Sprint(g.State()) != fmt.Sprint(list) {
		t.Fatalf("table %v, backend %v; want the same 3 mappings", list, g.State())
	}
	var added int
	for len(sub.C()) > 0 {
		if e := <-sub.C(); e.Kind == Added {
			added++
		} else {
			t.Errorf("event %v %v, want only Added", e.Kind, e.Mapping.Key)
		}
	}
	if added != 3 {
		t.Errorf("%d Added events, want 3 (none for the refused mapping)", added)
	}
}

// TestRenewalWaitsForCreation checks that a retransmission of a request
// whose mapping is still on its way to the backend waits for it and
// shares its outcome: no success for a mapping the backend refused.
func TestRenewalWaitsForCreation(t *testing.T) {
	s, g := newGatedService(t)
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused=%v", fail), func(t *testing.T) {
			r := pmp(hostA, mapping.TCP, 5000, 5000, time.Hour)
			g.close()
			defer g.open()
			first := mapAsync(s, r)
			entered(t, g)
			again := mapAsync(s, r)
			select {
			case res := <-again:
				t.Fatalf("retransmission answered (%v, %v) while the creation was in the backend", res.m, res.err)
			case <-time.After(20 * time.Millisecond): // not a measurement: gives it a chance to answer wrongly
			}
			if fail {
				g.Fail(fake.ErrInjected)
			}
			g.open()
			r1, r2 := outcome(t, first), outcome(t, again)
			if fail {
				if !errors.Is(r1.err, mapping.ErrNetworkFailure) || !errors.Is(r2.err, mapping.ErrNetworkFailure) {
					t.Fatalf("got %v and %v, want ErrNetworkFailure for both", r1.err, r2.err)
				}
				if s.Len() != 0 || len(g.State()) != 0 {
					t.Fatalf("table %v, backend %v after a refused creation", s.List(mapping.Filter{}), g.State())
				}
				return
			}
			if r1.err != nil || r2.err != nil || r1.m.Key != r2.m.Key {
				t.Fatalf("got (%v, %v) and (%v, %v), want the same mapping twice", r1.m, r1.err, r2.m, r2.err)
			}
			if err := s.Unmap(ctx, r); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSyncOrderedWithQueuedChanges checks that a Sync queued behind
// changes still in flight is applied after them, so that the backend
// ends up with exactly the table.
func TestSyncOrderedWithQueuedChanges(t *testing.T) {
	s, g := newGatedService(t)
	first, rest := queueBehind(t, s, g, 1)
	second := rest[0]
	synced := make(chan error, 1)
	go func() { synced <- s.Sync(ctx) }()
	g.open()
	for _, ch := range []<-chan result{first, second} {
		if r := outcome(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	mustReturn(t, synced, "Sync")
	if g.Syncs() != 1 || fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Fatalf("%d syncs; backend %v, table %v", g.Syncs(), g.State(), s.List(mapping.Filter{}))
	}
}

// TestCloseWaitsForBatch checks that Close lets a batch in the kernel
// finish and answers its request before the backend closes.
func TestCloseWaitsForBatch(t *testing.T) {
	s, g := newGatedService(t)
	g.close()
	first := mapAsync(s, pmp(hostA, mapping.UDP, 5000, 5000, time.Hour))
	entered(t, g)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a batch was in the backend")
	case <-time.After(20 * time.Millisecond): // not a measurement: gives it a chance to return wrongly
	}
	g.open()
	if r := outcome(t, first); r.err != nil {
		t.Logf("Map during Close: %v", r.err)
	}
	mustReturn(t, closed, "Close")
	if !g.Closed() || len(g.State()) != 0 {
		t.Fatalf("backend closed %v, holds %v", g.Closed(), g.State())
	}
	if slices.ContainsFunc(g.Batches(), func(b []backend.Change) bool { return len(b) == 0 }) {
		t.Error("an empty batch reached the backend")
	}
}

// unmapAsync runs Unmap in a goroutine; the channel receives its outcome.
func unmapAsync(s *Service, r mapping.Request) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- result{err: s.Unmap(ctx, r)} }()
	return ch
}

// TestConcurrentUnmapsShareABatch checks that deletions from several
// clients while a backend batch is in the kernel leave the table at once,
// share the next batch, and are answered only after it.
func TestConcurrentUnmapsShareABatch(t *testing.T) {
	s, g := newGatedService(t)
	sub := s.Subscribe(16)
	var reqs []mapping.Request
	for i := range 4 {
		client := netip.AddrFrom4([4]byte{192, 168, 77, byte(20 + i)})
		r := pmp(client, mapping.UDP, 7000, 7000+uint16(i), time.Hour)
		if r := outcome(t, mapAsync(s, r)); r.err != nil {
			t.Fatal(r.err)
		}
		reqs = append(reqs, pmp(client, mapping.UDP, 7000, 0, 0))
	}
	for range 4 {
		<-sub.C() // Added
	}
	drainEntered(g)
	before := len(g.Batches())
	first, _ := queueBehind(t, s, g, 0)
	var dels []<-chan result
	for _, r := range reqs {
		dels = append(dels, unmapAsync(s, r))
	}
	leftInTable(t, s, 1)
	select {
	case r := <-dels[0]:
		t.Fatalf("Unmap answered (%v) before its backend batch ran", r.err)
	default:
	}
	if len(sub.C()) != 0 {
		t.Fatal("Removed published before the backend took the deletion")
	}
	g.open()
	if r := outcome(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	for _, ch := range dels {
		if r := outcome(t, ch); r.err != nil {
			t.Fatalf("Unmap: %v", r.err)
		}
	}
	batches := g.Batches()[before:]
	if len(batches) != 2 || len(batches[1]) != 4 {
		t.Fatalf("backend batches %v, want the new mapping's and one of the 4 deletions", batches)
	}
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("backend holds %v, table %v", g.State(), s.List(mapping.Filter{}))
	}
	removed := 0
	for len(sub.C()) > 0 {
		if e := <-sub.C(); e.Kind == Removed {
			removed++
		}
	}
	if removed != 4 {
		t.Fatalf("%d Removed events, want 4", removed)
	}
}

// drainEntered forgets the Apply calls made so far.
func drainEntered(g *gated) {
	for len(g.entered) > 0 {
		<-g.entered
	}
}

// mustReturn waits for the outcome of what on ch, which must be nil.
func mustReturn(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(waitFor):
		t.Fatalf("%s did not return", what)
	}
}

// deletionInFlight has hostB map with req, then holds a mapping of hostA
// in the backend (the gate shut) and queues del, the deletion of hostB's
// mapping, behind it: hostB's mapping has left the table. It returns
// hostB's mapping and the outcomes of hostA's mapping and of the deletion.
func deletionInFlight(t *testing.T, s *Service, g *gated, req, del mapping.Request) (result, <-chan result, <-chan result) {
	t.Helper()
	m := outcome(t, mapAsync(s, req))
	if m.err != nil {
		t.Fatal(m.err)
	}
	drainEntered(g)
	first, _ := queueBehind(t, s, g, 0)
	deleted := unmapAsync(s, del)
	leftInTable(t, s, 1)
	return m, first, deleted
}

// deletionRefused opens the gate of deletionInFlight and checks the
// outcomes: hostA's mapping made, the deletion refused.
func deletionRefused(t *testing.T, g *gated, first, deleted <-chan result) {
	t.Helper()
	g.open()
	if r := outcome(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	if r := outcome(t, deleted); !errors.Is(r.err, mapping.ErrNetworkFailure) {
		t.Fatalf("Unmap: got %v, want ErrNetworkFailure", r.err)
	}
}

// queuedBehind waits until what (a Sync, a move) has queued its ticket
// behind the deletion of deletionInFlight.
func queuedBehind(t *testing.T, s *Service, what string) {
	t.Helper()
	for i := 0; ; i++ {
		s.ap.mu.Lock()
		n := len(s.ap.queue)
		s.ap.mu.Unlock()
		if n == 2 {
			return
		}
		if i == int(waitFor/time.Millisecond) {
			t.Fatalf("%s was not queued behind the deletion", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRefusedUnmapPutsBack checks that a deletion the backend refuses
// leaves the mappings as they were, in the table and on disk, while a
// new mapping of the same port queued behind it keeps the backend's rule
// of one change per key and batch.
func TestRefusedUnmapPutsBack(t *testing.T) {
	s, g := newGatedService(t)
	m, first, del := deletionInFlight(t, s, g, pmp(hostB, mapping.TCP, 7000, 7000, time.Hour), pmp(hostB, mapping.TCP, 7000, 0, 0))
	g.Fail(nil, fake.ErrInjected)
	deletionRefused(t, g, first, del)
	got, ok := s.table.Get(m.m.Key)
	if !ok || got.Internal != m.m.Internal {
		t.Fatalf("after a refused deletion the table holds %v, want %v back", s.List(mapping.Filter{}), m.m)
	}
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("backend holds %v, table %v", g.State(), s.List(mapping.Filter{}))
	}
}

// syncBehindDeletion is deletionInFlight of hostB's TCP mapping of port
// 7000 with a Sync queued behind the deletion (a firewall reload); it
// returns the outcomes of hostA's mapping, of the deletion and of the Sync.
func syncBehindDeletion(t *testing.T, s *Service, g *gated) (first, deleted <-chan result, synced <-chan error) {
	t.Helper()
	_, first, deleted = deletionInFlight(t, s, g, pmp(hostB, mapping.TCP, 7000, 7000, time.Hour), pmp(hostB, mapping.TCP, 7000, 0, 0))
	ch := make(chan error, 1)
	go func() { ch <- s.Sync(ctx) }() // holds mu until its ticket is done
	queuedBehind(t, s, "the Sync")
	return first, deleted, ch
}

// TestRefusedUnmapAfterSync: a deletion the backend refuses while a Sync
// is queued behind it (a firewall reload flushed berth's table while the
// deletion was on its way). The Sync installs the table without the
// mapping; the client, told the deletion failed, keeps it, and so must
// the backend, before the client hears so: not only at the next
// reconciliation, seconds later, while renewals already answer success.
func TestRefusedUnmapAfterSync(t *testing.T) {
	s, g := newGatedService(t)
	first, del, synced := syncBehindDeletion(t, s, g)
	g.Fail(nil, fake.ErrInjected) // hostA's mapping goes in, the deletion is refused
	deletionRefused(t, g, first, del)
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("when the client hears the deletion failed, the backend holds %v, the table %v", g.State(), s.List(mapping.Filter{}))
	}
	mustReturn(t, synced, "Sync")
}

// TestRefusedPutBackReconciled: as TestRefusedUnmapAfterSync, but the
// backend refuses the mapping put back too. The client is told the
// deletion failed, and a reconciliation, on the retry timer, makes the
// backend hold the table again.
func TestRefusedPutBackReconciled(t *testing.T) {
	s, g := newGatedService(t)
	first, del, synced := syncBehindDeletion(t, s, g)
	// hostA's mapping goes in, the deletion is refused, the Sync runs,
	// the mapping put back is refused.
	g.Fail(nil, fake.ErrInjected, nil, fake.ErrInjected)
	deletionRefused(t, g, first, del)
	mustReturn(t, synced, "Sync")
	if len(g.State()) != 1 || s.Len() != 2 {
		t.Fatalf("backend %v, table %v: want the put-back missing from the backend only", g.State(), s.List(mapping.Filter{}))
	}
	s.clk.(*clocktest.Fake).Advance(s.syncRetry)
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("after the retry timer the backend holds %v, the table %v", g.State(), s.List(mapping.Filter{}))
	}
}

// TestRefusedUnmapAcrossAddressChange: a UPnP deletion the backend
// refuses while the WAN address changes (the move leaves the mapping,
// which is out of the table, where it was). The mapping comes back on the
// new address, in the table and the backend, so that the client can
// delete it by its port again.
func TestRefusedUnmapAcrossAddressChange(t *testing.T) {
	s, g := newGatedService(t)
	del := igd(hostB, mapping.TCP, 7000, 7000, 0)
	_, first, deleted := deletionInFlight(t, s, g, igd(hostB, mapping.TCP, 7000, 7000, time.Hour), del)
	next := netip.MustParseAddr("203.0.113.9")
	moved := make(chan error, 1)
	go func() { moved <- s.SetExternalAddr(ctx, next) }() // holds mu until its ticket is done
	queuedBehind(t, s, "the move")
	// hostA's mapping goes in; the deletion and the move share a batch,
	// which is refused, and then the deletion alone is.
	g.Fail(nil, fake.ErrInjected, fake.ErrInjected)
	deletionRefused(t, g, first, deleted)
	mustReturn(t, moved, "SetExternalAddr")
	got, ok := s.table.Get(mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(next, 7000)})
	if !ok || got.Client != hostB || fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Fatalf("table %v, backend %v; want hostB's mapping back on %v in both", s.List(mapping.Filter{}), g.State(), next)
	}
	if err := s.Unmap(ctx, del); err != nil {
		t.Fatalf("deleting it again: %v", err)
	}
}

// TestRunCutAtRepeatedKey checks that a new mapping, its deletion and a
// new mapping of the same port, all queued behind one batch, reach the
// backend in batches that hold the key once each.
func TestRunCutAtRepeatedKey(t *testing.T) {
	s, g := newGatedService(t)
	first, _ := queueBehind(t, s, g, 0)
	r := pmp(hostB, mapping.UDP, 7000, 7000, time.Hour)
	made := mapAsync(s, r)
	inTable(t, s, 2)
	del := unmapAsync(s, pmp(hostB, mapping.UDP, 7000, 0, 0))
	leftInTable(t, s, 1)
	hostC := netip.MustParseAddr("192.168.77.12")
	again := mapAsync(s, pmp(hostC, mapping.UDP, 7001, 7000, time.Hour))
	inTable(t, s, 2)
	drainEntered(g)
	g.open()
	for _, ch := range []<-chan result{first, made, del, again} {
		if res := outcome(t, ch); res.err != nil {
			t.Fatal(res.err)
		}
	}
	// The fake refuses a batch that holds a key twice, and a refused
	// batch would be applied again ticket by ticket: count the calls.
	if calls, batches := len(g.entered), len(g.Batches()); calls != 3 || batches != 4 {
		t.Fatalf("%d more Apply calls for %d batches, want 3 for 4: the 3 changes queued behind the first, one by one and none refused", calls, batches)
	}
	for _, b := range g.Batches() {
		seen := map[mapping.Key]int{}
		for _, c := range b {
			if seen[c.Mapping.Key]++; seen[c.Mapping.Key] > 1 {
				t.Fatalf("batch %v holds %v twice", b, c.Mapping.Key)
			}
		}
	}
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("backend holds %v, table %v", g.State(), s.List(mapping.Filter{}))
	}
}

// TestExpiryHoldsNoRequest checks that while an expiry's batch is in the
// backend, the Service answers a renewal (which needs no backend call),
// and that the expiry ends with the backend matching the table.
func TestExpiryHoldsNoRequest(t *testing.T) {
	s, g := newGatedService(t)
	clk := s.clk.(*clocktest.Fake)
	if r := outcome(t, mapAsync(s, pmp(hostA, mapping.UDP, 5000, 5000, 30*time.Minute))); r.err != nil {
		t.Fatal(r.err)
	}
	renew := pmp(hostB, mapping.UDP, 6000, 6000, 2*time.Hour)
	if r := outcome(t, mapAsync(s, renew)); r.err != nil {
		t.Fatal(r.err)
	}
	drainEntered(g)
	g.close()
	expired := make(chan struct{})
	go func() {
		clk.Advance(time.Hour)
		close(expired)
	}()
	entered(t, g) // the expiry's batch is held in the backend
	if r := outcome(t, mapAsync(s, renew)); r.err != nil {
		t.Fatalf("renewal during the expiry: %v", r.err)
	}
	if s.Len() != 1 {
		t.Fatalf("table holds %v, want hostB's mapping only", s.List(mapping.Filter{}))
	}
	select {
	case <-expired:
		t.Fatal("the expiry returned before its backend batch ran")
	default:
	}
	g.open()
	select {
	case <-expired:
	case <-time.After(waitFor):
		t.Fatal("the expiry did not return")
	}
	if fmt.Sprint(g.State()) != fmt.Sprint(s.List(mapping.Filter{})) {
		t.Errorf("backend holds %v, table %v", g.State(), s.List(mapping.Filter{}))
	}
}
