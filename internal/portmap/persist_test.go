package portmap

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/store"
)

// run is one berthd lifetime over a store directory: a Service whose
// leases go to a real store in dir.
type run struct {
	*Service
	st     *store.Store
	be     *fake.Backend
	loaded store.Loaded
}

func testPolicy(t *testing.T, mod func(*policy.Config)) *policy.Policy {
	t.Helper()
	pc := policy.Config{
		LAN: []netip.Prefix{lan},
		Lifetime: map[mapping.Kind]policy.Lifetimes{
			mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour},
			mapping.KindPCP:    {Min: 120 * time.Second, Max: 24 * time.Hour},
			mapping.KindIGD:    {Max: 7 * 24 * time.Hour},
		},
	}
	if mod != nil {
		mod(&pc)
	}
	pol, err := policy.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// start opens the store in dir and restores its leases, as the daemon does.
func start(t *testing.T, dir string, clk *clocktest.Fake, extAddr netip.Addr, pol *policy.Policy) (*run, Restored) {
	t.Helper()
	st, loaded, err := store.Open(store.Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{st: st, be: &fake.Backend{}, loaded: loaded}
	base := loaded.EpochBase
	if loaded.Lost {
		base = time.Time{}
	}
	r.Service = New(Config{Backend: r.be, Policy: pol, Clock: clk, External: extAddr, Store: st, EpochBase: base})
	got, err := r.Restore(ctx, loaded.Mappings)
	if err != nil {
		t.Fatal(err)
	}
	if seq := st.SetEpochBase(r.EpochStart()); st.Wait(ctx, seq) != nil {
		t.Fatal("storing the epoch failed")
	}
	return r, got
}

// stop is a clean stop: kernel state removed, store closed.
func (r *run) stop(t *testing.T) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.st.Close(); err != nil {
		t.Fatal(err)
	}
}

func sameMappings(t *testing.T, got, want []mapping.Mapping) {
	t.Helper()
	sortByKey(got)
	sortByKey(want)
	if !slices.EqualFunc(got, want, func(a, b mapping.Mapping) bool {
		return a.Key == b.Key && a.Internal == b.Internal && a.Client == b.Client && a.Origin == b.Origin &&
			a.Expires.Equal(b.Expires) && a.Peers.String() == b.Peers.String()
	}) {
		t.Fatalf("got mappings\n%v\nwant\n%v", got, want)
	}
}

func TestLeasesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(t0)
	pol := testPolicy(t, nil)
	a, _ := start(t, dir, clk, ext, pol)
	pcpReq := pmp(hostA, mapping.UDP, 5000, 15000, time.Hour)
	pcpReq.Origin = mapping.Origin{Kind: mapping.KindPCP, Nonce: [12]byte{1, 2, 3}}
	pcpReq.Peers = mapping.NewPeers(mapping.Peer{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443})
	want := []mapping.Mapping{
		mapOn(t, a.Service, pmp(hostA, mapping.TCP, 4000, 14000, time.Hour)),
		mapOn(t, a.Service, igd(hostB, mapping.UDP, 4001, 14001, 0)), // capped at 7 days
		mapOn(t, a.Service, pcpReq),
	}
	gone := mapOn(t, a.Service, pmp(hostB, mapping.TCP, 4002, 14002, time.Hour))
	if err := a.Unmap(ctx, mapping.Request{Client: hostB, Proto: mapping.TCP, Internal: gone.Internal, Origin: gone.Origin}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetStatic(ctx, []Forward{{Name: "web", Proto: mapping.TCP, External: 8080, Internal: netip.MustParseAddrPort("192.168.77.20:80")}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(90 * time.Second)
	epoch := a.Epoch()
	a.stop(t)

	clk.Advance(30 * time.Second) // berthd was down for 30 s
	b, got := start(t, dir, clk, ext, pol)
	defer b.stop(t)
	if got != (Restored{Restored: 3}) {
		t.Errorf("got %+v, want 3 restored", got)
	}
	// The stored leases end storeSlack after the granted ones (persist).
	for i := range want {
		want[i].Expires = want[i].Expires.Add(storeSlack)
	}
	sameMappings(t, b.List(mapping.Filter{}), want) // the static forward comes from the configuration
	sameMappings(t, b.be.State(), want)
	if b.be.Syncs() != 1 {
		t.Errorf("got %d backend syncs, want 1 for the whole restore", b.be.Syncs())
	}
	if e := b.Epoch(); e != epoch+30 {
		t.Errorf("got epoch %d after 30 s down, want %d: no state was lost", e, epoch+30)
	}
	// The restored leases last at least as long as granted, and at most
	// storeSlack longer (persist).
	clk.Advance(time.Hour - 121*time.Second)
	if n := b.Len(); n != 3 {
		t.Errorf("just before the leases granted end: %d mappings left, want 3", n)
	}
	clk.Advance(storeSlack + time.Second)
	if n := b.Len(); n != 1 {
		t.Errorf("%v after the leases granted ended: %d mappings left, want the 7-day one", storeSlack, n)
	}
}

func TestRestoreDropsWhatNoLongerHolds(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(t0)
	a, _ := start(t, dir, clk, ext, testPolicy(t, nil))
	short := mapOn(t, a.Service, pmp(hostA, mapping.UDP, 5000, 15000, 200*time.Second))
	long := mapOn(t, a.Service, pmp(hostA, mapping.UDP, 5001, 15001, time.Hour))
	denied := mapOn(t, a.Service, pmp(hostB, mapping.TCP, 5002, 25002, time.Hour))
	taken := mapOn(t, a.Service, pmp(hostB, mapping.TCP, 5003, 15003, time.Hour))
	a.stop(t)

	clk.Advance(450 * time.Second) // short ended while berthd was down, stored slack (200 s) included
	newExt := netip.MustParseAddr("198.51.100.9")
	pol := testPolicy(t, func(c *policy.Config) {
		c.Rules = []policy.Rule{mustRule(t, "deny 25000-25999 0.0.0.0/0 0-65535"), mustRule(t, "allow 1024-65535 192.168.77.0/24 1024-65535")}
	})
	st, loaded, err := store.Open(store.Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := New(Config{Backend: &fake.Backend{}, Policy: pol, Clock: clk, External: newExt, Store: st})
	// A static forward installed first would be refused by SetStatic's
	// order; a lease held by another client is what admit refuses.
	if _, err := b.Map(ctx, pmp(hostA, mapping.TCP, 6000, 15003, time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Restore(ctx, loaded.Mappings)
	if err != nil {
		t.Fatal(err)
	}
	if got != (Restored{Restored: 1, Expired: 1, Refused: 2}) {
		t.Errorf("got %+v, want 1 restored, 1 expired, 2 refused", got)
	}
	moved := long
	moved.External = netip.AddrPortFrom(newExt, long.External.Port())
	if _, ok := find(b.List(mapping.Filter{}), moved.Key); !ok {
		t.Errorf("the live lease did not move to the new external address: %v", b.List(mapping.Filter{}))
	}
	b.Close()
	st.Close()

	// What was dropped is gone from the store too.
	st, loaded, err = store.Open(store.Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, m := range loaded.Mappings {
		switch m.Key {
		case short.Key, denied.Key, taken.Key, long.Key:
			t.Errorf("stored lease %v should have been dropped or moved", m)
		}
	}
	if len(loaded.Mappings) != 2 {
		t.Errorf("store holds %v, want the moved lease and the new one", loaded.Mappings)
	}
}

func mapOn(t *testing.T, s *Service, r mapping.Request) mapping.Mapping {
	t.Helper()
	m, err := s.Map(ctx, r)
	if err != nil {
		t.Fatalf("Map(%v %v): %v", r.Proto, r.Internal, err)
	}
	return m
}

func mustRule(t *testing.T, s string) policy.Rule {
	t.Helper()
	r, err := policy.ParseRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pcpAndFiltered are a PCP request of hostA's and the same with a remote
// peer filter: the second replaces the mapping of the first.
func pcpAndFiltered() (pcp, filtered mapping.Request) {
	pcp = pmp(hostA, mapping.UDP, 5000, 15000, time.Hour)
	pcp.Origin.Kind = mapping.KindPCP
	filtered = pcp
	filtered.Peers = peerSet("192.0.2.1/32")
	return pcp, filtered
}

// onFailingStore is a Service on the fake backend and a failingStore,
// closed when the test ends.
func onFailingStore(t *testing.T) (*Service, *failingStore, *fake.Backend) {
	t.Helper()
	fs, be := &failingStore{}, &fake.Backend{}
	s := New(Config{Backend: be, Policy: testPolicy(t, nil), Clock: clocktest.NewFake(t0), External: ext, Store: fs})
	t.Cleanup(func() { s.Close() })
	return s, fs, be
}

// failingStore is a Store whose syncs fail while fail is set, as on a full
// disk; it records what it was told.
type failingStore struct {
	mu   sync.Mutex
	seq  store.Seq
	fail error
	puts []mapping.Key
	dels []mapping.Key
	last mapping.Mapping // of the last Put
	// waited is the highest sequence number a Wait asked for; written
	// the highest a WaitWritten asked for.
	waited, written store.Seq
	lazy            int // changes made with PutLazy and DeleteLazy
}

func (f *failingStore) PutLazy(m mapping.Mapping) store.Seq {
	f.mu.Lock()
	f.lazy++
	f.mu.Unlock()
	return f.Put(m)
}

func (f *failingStore) DeleteLazy(k mapping.Key) store.Seq {
	f.mu.Lock()
	f.lazy++
	f.mu.Unlock()
	return f.Delete(k)
}

// WaitWritten fails as Wait does: as a write to a full disk.
func (f *failingStore) WaitWritten(_ context.Context, seq store.Seq) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written = max(f.written, seq)
	return f.fail
}

func (f *failingStore) Put(m mapping.Mapping) store.Seq {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.puts = append(f.puts, m.Key)
	f.last = m
	return f.seq
}

func (f *failingStore) Delete(k mapping.Key) store.Seq {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.dels = append(f.dels, k)
	return f.seq
}

func (f *failingStore) Last() store.Seq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

func (f *failingStore) Wait(_ context.Context, seq store.Seq) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waited = max(f.waited, seq)
	return f.fail
}

// TestRefusedMappingLeavesTheStoreFirst: when the backend refuses a new
// mapping, its lease is deleted from the store, and that deletion is on
// disk before the client hears of the failure: a crash then cannot bring
// back a mapping the client was told it does not have.
func TestRefusedMappingLeavesTheStoreFirst(t *testing.T) {
	s, fs, be := onFailingStore(t)
	be.Fail(errors.New("test: netlink refused the batch"))
	if _, err := s.Map(ctx, pmp(hostA, mapping.UDP, 5000, 15000, time.Hour)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("got %v, want ErrNetworkFailure", err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.puts) != 1 || len(fs.dels) != 1 || fs.dels[0] != fs.puts[0] {
		t.Fatalf("store got puts %v and deletes %v, want the lease put and deleted", fs.puts, fs.dels)
	}
	if fs.waited != fs.seq {
		t.Fatalf("the answer waited for store sequence %d; the deletion is %d", fs.waited, fs.seq)
	}
	if s.Len() != 0 {
		t.Fatalf("%d mappings left", s.Len())
	}
}

// TestLazyLeases: a NAT-PMP or PCP client hears of its new mapping once
// the lease is written (WaitWritten): its epoch tells it of state lost in
// a power cut. A UPnP client, which has no epoch, hears once the lease is
// synced (Wait), and so does every client of a deletion or a replacement:
// a new epoch makes clients map again, never delete again.
func TestLazyLeases(t *testing.T) {
	pcp, filtered := pcpAndFiltered()
	for _, tt := range []struct {
		name    string
		r       mapping.Request
		lazy    bool
		replace bool
	}{
		{"NAT-PMP", pmp(hostA, mapping.UDP, 5000, 15000, time.Hour), true, false},
		{"PCP", pcp, true, true},
		{"UPnP", igd(hostA, mapping.UDP, 5000, 15000, time.Hour), false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, fs, _ := onFailingStore(t)
			// step checks that do waited only for the write when
			// lazyWait, for the sync otherwise, and made lazy changes only
			// when lazy.
			step := func(what string, lazyWait, lazy bool, do func() error) {
				t.Helper()
				fs.mu.Lock()
				fs.waited, fs.written, fs.lazy = 0, 0, 0
				fs.mu.Unlock()
				if err := do(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				fs.mu.Lock()
				defer fs.mu.Unlock()
				want := [2]store.Seq{fs.seq, 0}
				if lazyWait {
					want = [2]store.Seq{0, fs.seq}
				}
				if got := [2]store.Seq{fs.waited, fs.written}; got != want || (fs.lazy > 0) != lazy {
					t.Errorf("%s: waited for the sync up to %d, for the write up to %d, %d lazy changes; want %d and %d, lazy changes %v",
						what, got[0], got[1], fs.lazy, want[0], want[1], lazy)
				}
			}
			mapReq := func(r mapping.Request) func() error {
				return func() error { _, err := s.Map(ctx, r); return err }
			}
			step("map", tt.lazy, tt.lazy, mapReq(tt.r))
			if tt.replace {
				// The new lease is written lazily, and the answer waits for
				// its sync all the same.
				step("new filters", false, true, mapReq(filtered))
			}
			del := tt.r
			del.Lifetime = 0
			step("unmap", false, false, func() error { return s.Unmap(ctx, del) })
		})
	}
}

func TestFullDiskFailsNewMappingsOnly(t *testing.T) {
	s, fs, be := onFailingStore(t)
	kept, err := s.Map(ctx, pmp(hostA, mapping.UDP, 5000, 15000, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	fs.fail = syscall.ENOSPC
	fs.mu.Unlock()

	_, err = s.Map(ctx, pmp(hostA, mapping.UDP, 5001, 15001, time.Hour))
	if !errors.Is(err, mapping.ErrNetworkFailure) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("new mapping on a full disk: got %v, want ErrNetworkFailure wrapping ENOSPC", err)
	}
	ms := s.List(mapping.Filter{})
	if len(ms) != 1 || ms[0].Key != kept.Key || len(be.State()) != 1 {
		t.Fatalf("after the failed map: table %v, backend %v; want only the first mapping", ms, be.State())
	}
	// The existing mapping keeps forwarding; its renewal cannot be stored
	// and says so, but the mapping stays.
	if _, err := s.Map(ctx, pmp(hostA, mapping.UDP, 5000, 15000, time.Hour)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("renewal on a full disk: got %v, want ErrNetworkFailure", err)
	}
	if len(s.List(mapping.Filter{})) != 1 || len(be.State()) != 1 {
		t.Fatal("a failed renewal must not remove the mapping")
	}
	fs.mu.Lock()
	fs.fail = nil
	fs.mu.Unlock()
	if _, err := s.Map(ctx, pmp(hostA, mapping.UDP, 5001, 15001, time.Hour)); err != nil {
		t.Fatalf("after space came back: %v", err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !slices.ContainsFunc(fs.dels, func(k mapping.Key) bool { return k.External.Port() == 15001 }) {
		t.Errorf("the withdrawn mapping was not deleted from the store: deletes %v", fs.dels)
	}
}

func TestEpochStart(t *testing.T) {
	now := t0
	tests := []struct {
		name string
		base time.Time
		want uint32
	}{
		{"new store", time.Time{}, 0},
		{"continued", t0.Add(-100 * time.Second), 100},
		{"clock went back", t0.Add(time.Hour), 0},
	}
	for _, tt := range tests {
		s := New(Config{Backend: &fake.Backend{}, Policy: testPolicy(t, nil), Clock: clocktest.NewFake(now), EpochBase: tt.base})
		if got := s.Epoch(); got != tt.want {
			t.Errorf("%s: got epoch %d, want %d", tt.name, got, tt.want)
		}
		s.Close()
	}
}

// BenchmarkRestart100k is berthd's start with 100,000 stored leases, less
// the kernel: open the store, restore every lease through the policy into
// the table, and hand the backend one Sync (DESIGN.md: serving in < 2 s).
func BenchmarkRestart100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	st, _, err := store.Open(store.Options{Dir: dir, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	var last store.Seq
	for i := range n {
		proto := mapping.UDP
		if i%2 == 1 {
			proto = mapping.TCP
		}
		h := i + 1 // 10.0.0.0 is the network's address: policy refuses it
		host := netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)})
		last = st.Put(mapping.Mapping{
			Key:      mapping.Key{Proto: proto, External: netip.AddrPortFrom(extN(0), uint16(1024+i/2))},
			Internal: netip.AddrPortFrom(host, 5000),
			Client:   host,
			Origin:   mapping.Origin{Kind: mapping.KindPCP, Nonce: [12]byte{byte(i)}},
			Expires:  t0.Add(2*time.Hour + time.Duration(i)*time.Millisecond),
		})
	}
	if err := st.Wait(context.Background(), last); err != nil {
		b.Fatal(err)
	}
	st.Close()
	pol, err := policy.New(policy.Config{
		LAN:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindPCP: {Min: time.Minute, Max: 24 * time.Hour}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		st, loaded, err := store.Open(store.Options{Dir: dir, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		s := New(Config{Backend: nop{}, Policy: pol, Clock: clocktest.NewFake(t0), External: extN(0), Store: st})
		r, err := s.Restore(context.Background(), loaded.Mappings)
		if err != nil || r.Restored != n {
			b.Fatalf("restored %+v, %v; want %d", r, err, n)
		}
		b.StopTimer()
		s.Close()
		st.Close()
		b.StartTimer()
	}
}

// TestRenewalsWithinStoredLease checks that the store keeps a lease slack
// beyond the one granted, and that renewals ending within it write
// nothing, while a renewal beyond it, or one that changes what is stored,
// writes.
func TestRenewalsWithinStoredLease(t *testing.T) {
	fs := &failingStore{}
	clk := clocktest.NewFake(t0)
	s := New(Config{Backend: &fake.Backend{}, Policy: testPolicy(t, nil), Clock: clk, External: ext, Store: fs})
	defer s.Close()
	puts := func() int {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return len(fs.puts)
	}
	stored := func() time.Time {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.last.Expires
	}
	r := pmp(hostA, mapping.UDP, 5000, 15000, time.Hour)
	m, err := s.Map(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := m.Expires.Add(storeSlack); puts() != 1 || !stored().Equal(want) {
		t.Fatalf("after the map: %d puts, stored lease ends %v; want 1 and %v (granted + %v)", puts(), stored(), want, storeSlack)
	}
	steps := []struct {
		advance time.Duration
		req     mapping.Request
		puts    int
		why     string
	}{
		{0, r, 1, "a retransmission"},
		{30 * time.Minute, r, 1, "a renewal at half the lifetime"},
		{30 * time.Minute, r, 1, "a renewal ending with the stored lease"},
		{time.Second, r, 2, "a renewal ending after the stored lease"},
		{0, func() mapping.Request { q := r; q.Origin.Kind = mapping.KindPCP; return q }(), 3, "a renewal by another protocol"},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		m, err := s.Map(ctx, st.req)
		if err != nil {
			t.Fatalf("%s: %v", st.why, err)
		}
		if puts() != st.puts {
			t.Errorf("%s: %d puts, want %d", st.why, puts(), st.puts)
		}
		if stored().Before(m.Expires) {
			t.Errorf("%s: the stored lease ends %v, before the granted %v", st.why, stored(), m.Expires)
		}
	}
	// A short lifetime gets a slack of its own length.
	short, err := s.Map(ctx, pmp(hostB, mapping.UDP, 5000, 16000, 200*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := short.Expires.Add(200 * time.Second); !stored().Equal(want) {
		t.Errorf("200 s lease stored until %v, want %v", stored(), want)
	}
}

// TestRestoreRewritesOnlyWhatChanged checks that a restart writes
// nothing for leases that come back as they were stored (with their
// slack, at any fraction of a second), and cuts and rewrites the leases
// that run beyond a lifetime cap lowered meanwhile.
func TestRestoreRewritesOnlyWhatChanged(t *testing.T) {
	clk := clocktest.NewFake(t0)
	stored := []mapping.Mapping{
		{Key: mapping.Key{Proto: mapping.UDP, External: netip.AddrPortFrom(ext, 15000)}, Internal: netip.MustParseAddrPort("192.168.77.10:5000"),
			Client: hostA, Origin: mapping.Origin{Kind: mapping.KindNATPMP}, Expires: t0.Add(2*time.Hour - 300*time.Millisecond)},
		{Key: mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, 15001)}, Internal: netip.MustParseAddrPort("192.168.77.10:5001"),
			Client: hostA, Origin: mapping.Origin{Kind: mapping.KindPCP}, Expires: t0.Add(25 * time.Hour)}, // a day's lease, slack included
	}
	fs := &failingStore{}
	s := New(Config{Backend: &fake.Backend{}, Policy: testPolicy(t, nil), Clock: clk, External: ext, Store: fs})
	got, err := s.Restore(ctx, slices.Clone(stored))
	if err != nil || got.Restored != 2 {
		t.Fatalf("Restore: %+v, %v", got, err)
	}
	if len(fs.puts) != 0 || len(fs.dels) != 0 {
		t.Errorf("restoring unchanged leases wrote %d puts and %d deletes, want none", len(fs.puts), len(fs.dels))
	}
	sameMappings(t, s.List(mapping.Filter{}), stored)
	s.Close()

	// The cap is now 10 minutes: the leases end at most 10 minutes, plus
	// 10 minutes of slack, from now.
	fs = &failingStore{}
	low := testPolicy(t, func(c *policy.Config) {
		c.Lifetime[mapping.KindNATPMP] = policy.Lifetimes{Min: 120 * time.Second, Max: 10 * time.Minute}
		c.Lifetime[mapping.KindPCP] = policy.Lifetimes{Min: 120 * time.Second, Max: 10 * time.Minute}
	})
	s = New(Config{Backend: &fake.Backend{}, Policy: low, Clock: clk, External: ext, Store: fs})
	defer s.Close()
	if got, err := s.Restore(ctx, slices.Clone(stored)); err != nil || got.Restored != 2 {
		t.Fatalf("Restore: %+v, %v", got, err)
	}
	want := slices.Clone(stored)
	for i := range want {
		want[i].Expires = t0.Add(20 * time.Minute)
	}
	sameMappings(t, s.List(mapping.Filter{}), want)
	if len(fs.puts) != 2 {
		t.Errorf("%d leases rewritten after the cap was lowered, want 2", len(fs.puts))
	}
}
