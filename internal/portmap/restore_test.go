package portmap

import (
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/store"
)

// berthd started serving its WAN because no LAN had an address yet: the
// stored leases of LAN hosts, which that provisional policy refuses, stay
// in the store (RestoreKeeping), and come back with Restore once the LAN
// is served; a restart meanwhile still finds them.
func TestRestoreKeepingLeavesRefusedLeasesStored(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(t0)
	a, _ := start(t, dir, clk, ext, testPolicy(t, nil))
	lanLease := mapOn(t, a.Service, igd(hostA, mapping.TCP, 8000, 8080, 0))
	mapOn(t, a.Service, pmp(hostA, mapping.UDP, 5000, 15000, 200*time.Second))
	a.stop(t)
	clk.Advance(time.Hour) // expiring ended while berthd was down

	wanOnly := testPolicy(t, func(c *policy.Config) { c.LAN = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")} })
	open := func() (*store.Store, store.Loaded) {
		t.Helper()
		st, loaded, err := store.Open(store.Options{Dir: dir, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return st, loaded
	}
	st, loaded := open()
	be := &fake.Backend{}
	b := New(Config{Backend: be, Policy: wanOnly, Clock: clk, External: ext, Store: st})
	got, kept, err := b.RestoreKeeping(ctx, loaded.Mappings)
	if err != nil {
		t.Fatal(err)
	}
	if got != (Restored{Expired: 1, Kept: 1}) || len(kept) != 1 || kept[0].Key != lanLease.Key || b.Len() != 0 {
		t.Fatalf("provisional restore: %+v, kept %v, %d mappings; want the LAN lease kept, the expired one dropped", got, kept, b.Len())
	}
	b.Close()
	st.Close()

	// A restart while the WAN is still served finds the lease stored.
	st, loaded = open()
	if len(loaded.Mappings) != 1 || loaded.Mappings[0].Key != lanLease.Key {
		t.Fatalf("the store after a provisional restore holds %v, want the LAN lease", loaded.Mappings)
	}
	be = &fake.Backend{}
	c := New(Config{Backend: be, Policy: wanOnly, Clock: clk, External: ext, Store: st})
	defer func() { c.Close(); st.Close() }()
	if _, kept, err = c.RestoreKeeping(ctx, loaded.Mappings); err != nil || len(kept) != 1 {
		t.Fatalf("second provisional restore: kept %v, %v", kept, err)
	}
	// The LAN is served: the kept lease comes back, in the backend too.
	c.SetPolicy(testPolicy(t, nil))
	if got, err := c.Restore(ctx, kept); err != nil || got != (Restored{Restored: 1}) {
		t.Fatalf("restore of the kept leases: %+v, %v", got, err)
	}
	if m, ok := find(c.List(mapping.Filter{}), lanLease.Key); !ok || m.Internal != lanLease.Internal {
		t.Fatalf("mappings %v, want the LAN lease back", c.List(mapping.Filter{}))
	}
	if st := be.State(); len(st) != 1 || st[0].Key != lanLease.Key {
		t.Errorf("backend %v, want the LAN lease", st)
	}
}

// Readmit, while berthd serves: a kept lease whose port another host took
// meanwhile is dropped without deleting that host's stored lease; one
// whose stored entry was replaced meanwhile is written again; only hosts
// outside every LAN prefix are kept, not leases a rule refuses.
func TestReadmit(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(t0)
	a, _ := start(t, dir, clk, ext, testPolicy(t, nil))
	mapOn(t, a.Service, igd(hostA, mapping.TCP, 8000, 8080, 0))
	back := mapOn(t, a.Service, igd(hostA, mapping.TCP, 8001, 8081, 0))
	ruled := mapOn(t, a.Service, igd(hostA, mapping.TCP, 8002, 8082, 0))
	a.stop(t)

	other := netip.MustParsePrefix("10.9.0.0/24")
	hostW := netip.MustParseAddr("10.9.0.7")
	onlyOther := testPolicy(t, func(c *policy.Config) { c.LAN = []netip.Prefix{other} })
	st, loaded, err := store.Open(store.Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	be := &fake.Backend{}
	s := New(Config{Backend: be, Policy: onlyOther, Clock: clk, External: ext, Store: st})
	defer s.Close()
	_, kept, err := s.RestoreKeeping(ctx, loaded.Mappings)
	if err != nil || len(kept) != 3 {
		t.Fatalf("kept %v, %v; want all three", kept, err)
	}
	// Meanwhile a host of the served network takes 8080, and another
	// replaces the stored entry of 8081 and goes again.
	taker := mapOn(t, s, igd(hostW, mapping.TCP, 9000, 8080, 0))
	gone := mapOn(t, s, igd(hostW, mapping.TCP, 9001, 8081, 0))
	if err := s.Unmap(ctx, mapping.Request{Client: hostW, Proto: mapping.TCP, Internal: gone.Internal, Suggest: gone.External,
		Exact: true, Origin: gone.Origin}); err != nil {
		t.Fatal(err)
	}
	// The LAN is served again, with a rule that refuses 8082.
	s.SetPolicy(testPolicy(t, func(c *policy.Config) {
		c.LAN = []netip.Prefix{lan, other}
		c.Rules = []policy.Rule{mustRule(t, "deny 8082 0.0.0.0/0 0-65535"), mustRule(t, "allow 1024-65535 0.0.0.0/0 1024-65535")}
	}))
	r, still, err := s.Readmit(ctx, kept)
	if err != nil || r != (Restored{Restored: 1, Refused: 2}) || len(still) != 0 {
		t.Fatalf("readmit: %+v, still kept %v, %v; want 1 restored, 2 refused (port taken, rule), none kept", r, still, err)
	}
	if m, ok := find(s.List(mapping.Filter{}), back.Key); !ok || m.Internal != back.Internal {
		t.Fatalf("the lease of 8081 is not back: %v", s.List(mapping.Filter{}))
	}
	s.Close()
	st.Close()

	st, loaded, err = store.Open(store.Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	have := map[mapping.Key]mapping.Mapping{}
	for _, m := range loaded.Mappings {
		have[m.Key] = m
	}
	if m, ok := have[taker.Key]; !ok || m.Client != hostW {
		t.Errorf("the taker's lease of 8080 left the store: %v", loaded.Mappings)
	}
	if m, ok := have[back.Key]; !ok || m.Internal != back.Internal {
		t.Errorf("the lease put back on 8081 is not on disk: %v", loaded.Mappings)
	}
	if _, ok := have[ruled.Key]; ok {
		t.Errorf("the lease the rule refuses is still stored: %v", loaded.Mappings)
	}
}
