package lease

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/berthd/berth/internal/mapping"
)

var (
	t0    = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ext   = netip.MustParseAddr("203.0.113.2")
	hostA = netip.MustParseAddr("192.168.77.10")
	hostB = netip.MustParseAddr("192.168.77.11")
	user  = []mapping.PortRange{{Lo: 1024, Hi: 65535}}
)

func req(client netip.Addr, proto mapping.Protocol, intPort, suggest uint16, exact bool) mapping.Request {
	return mapping.Request{
		Client:   client,
		Proto:    proto,
		Internal: netip.AddrPortFrom(client, intPort),
		Suggest:  netip.AddrPortFrom(netip.Addr{}, suggest),
		Exact:    exact,
		Origin:   mapping.Origin{Kind: mapping.KindNATPMP},
	}
}

// mustMap allocates and commits, failing the test on error.
func mustMap(t testing.TB, tb *Table, r mapping.Request, exp time.Time) mapping.Mapping {
	t.Helper()
	p, err := tb.Allocate(r, ext, user, exp)
	if err != nil {
		t.Fatalf("Allocate(%+v): %v", r, err)
	}
	tb.Commit(p)
	return p.Mapping
}

func TestAllocateSemantics(t *testing.T) {
	tests := []struct {
		name     string
		setup    []mapping.Request
		r        mapping.Request
		wantPort uint16
		wantErr  error
		replaces bool
		renewal  bool
	}{
		{name: "suggested port free", r: req(hostA, mapping.TCP, 5000, 6000, false), wantPort: 6000},
		{name: "suggest 0 takes internal port", r: req(hostA, mapping.TCP, 5000, 0, false), wantPort: 5000},
		{name: "suggest below range takes nearest allowed", r: req(hostA, mapping.TCP, 80, 80, false), wantPort: 1024},
		{
			name:     "taken hint gives nearest free, higher on tie",
			setup:    []mapping.Request{req(hostB, mapping.TCP, 6000, 6000, false)},
			r:        req(hostA, mapping.TCP, 5000, 6000, false),
			wantPort: 6001,
		},
		{
			name: "nearest below when above is full",
			setup: []mapping.Request{
				req(hostB, mapping.TCP, 65535, 65535, true),
				req(hostB, mapping.TCP, 65534, 65534, true),
			},
			r:        req(hostA, mapping.TCP, 5000, 65535, false),
			wantPort: 65533,
		},
		{
			name:     "other protocol does not conflict",
			setup:    []mapping.Request{req(hostB, mapping.UDP, 6000, 6000, true)},
			r:        req(hostA, mapping.TCP, 6000, 6000, true),
			wantPort: 6000,
		},
		{
			name:     "refresh keeps external port even with another hint",
			setup:    []mapping.Request{req(hostA, mapping.UDP, 5000, 7000, false)},
			r:        req(hostA, mapping.UDP, 5000, 9000, false),
			wantPort: 7000, replaces: true, renewal: true,
		},
		{
			name:     "different internal port is a new mapping for hint requests",
			setup:    []mapping.Request{req(hostA, mapping.UDP, 5000, 7000, false)},
			r:        req(hostA, mapping.UDP, 5001, 7000, false),
			wantPort: 7001,
		},
		{
			name:    "exact conflict with another client",
			setup:   []mapping.Request{req(hostB, mapping.TCP, 8080, 8080, true)},
			r:       req(hostA, mapping.TCP, 8080, 8080, true),
			wantErr: mapping.ErrConflict,
		},
		{
			name:     "exact same client same internal is a renewal",
			setup:    []mapping.Request{req(hostA, mapping.TCP, 80, 8080, true)},
			r:        req(hostA, mapping.TCP, 80, 8080, true),
			wantPort: 8080, replaces: true, renewal: true,
		},
		{
			name:     "exact same client different internal port replaces",
			setup:    []mapping.Request{req(hostA, mapping.TCP, 80, 8080, true)},
			r:        req(hostA, mapping.TCP, 81, 8080, true),
			wantPort: 8080, replaces: true,
		},
		{name: "exact port not allowed", r: req(hostA, mapping.TCP, 22, 22, true), wantErr: mapping.ErrNotAuthorized},
		{name: "exact port 0", r: req(hostA, mapping.TCP, 22, 0, true), wantErr: mapping.ErrInvalid},
		{name: "internal port 0", r: req(hostA, mapping.TCP, 0, 5000, false), wantErr: mapping.ErrInvalid},
		{name: "bad protocol", r: req(hostA, 1, 5000, 5000, false), wantErr: mapping.ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New()
			for _, s := range tc.setup {
				mustMap(t, tb, s, t0.Add(time.Hour))
			}
			p, err := tb.Allocate(tc.r, ext, user, t0.Add(2*time.Hour))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := p.Mapping.External.Port(); got != tc.wantPort {
				t.Errorf("got port %d, want %d", got, tc.wantPort)
			}
			if p.Replaces != tc.replaces || p.Renewal() != tc.renewal {
				t.Errorf("got replaces=%v renewal=%v, want %v %v", p.Replaces, p.Renewal(), tc.replaces, tc.renewal)
			}
			before := tb.Len()
			tb.Commit(p)
			wantLen := before + 1
			if tc.replaces {
				wantLen = before
			}
			if tb.Len() != wantLen {
				t.Errorf("got %d mappings after commit, want %d", tb.Len(), wantLen)
			}
			checkInvariants(t, tb)
		})
	}
}

func TestExhaustedRange(t *testing.T) {
	tb := New()
	small := []mapping.PortRange{{Lo: 5000, Hi: 5002}}
	for i := range 3 {
		p, err := tb.Allocate(req(hostA, mapping.UDP, uint16(6000+i), 5000, false), ext, small, time.Time{})
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		tb.Commit(p)
	}
	_, err := tb.Allocate(req(hostA, mapping.UDP, 7000, 5000, false), ext, small, time.Time{})
	if !errors.Is(err, mapping.ErrNoResources) {
		t.Fatalf("got %v, want ErrNoResources", err)
	}
	if _, err := tb.Allocate(req(hostA, mapping.TCP, 7000, 5000, false), ext, small, time.Time{}); err != nil {
		t.Fatalf("TCP must still have room: %v", err)
	}
}

func TestRemoteHostKeys(t *testing.T) {
	tb := New()
	r1 := req(hostA, mapping.TCP, 80, 8080, true)
	r1.Remote = netip.MustParseAddr("198.51.100.7")
	r2 := r1
	r2.Remote = netip.Addr{}
	mustMap(t, tb, r1, time.Time{})
	mustMap(t, tb, r2, time.Time{})
	if tb.Len() != 2 {
		t.Fatalf("got %d mappings, want 2 (one per remote host)", tb.Len())
	}
	// Another client cannot take the port for a third remote host.
	r3 := req(hostB, mapping.TCP, 80, 8080, true)
	r3.Remote = netip.MustParseAddr("198.51.100.8")
	if _, err := tb.Allocate(r3, ext, user, time.Time{}); !errors.Is(err, mapping.ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	tb.Delete(mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, 8080), Remote: r1.Remote})
	if got := tb.OnPort(mapping.TCP, 8080); len(got) != 1 || got[0].Remote.IsValid() {
		t.Fatalf("got %v on port 8080, want only the wildcard mapping", got)
	}
	checkInvariants(t, tb)
}

func TestExpireOrderAndRenewal(t *testing.T) {
	tb := New()
	a := mustMap(t, tb, req(hostA, mapping.UDP, 1, 5001, false), t0.Add(30*time.Second))
	b := mustMap(t, tb, req(hostA, mapping.UDP, 2, 5002, false), t0.Add(10*time.Second))
	mustMap(t, tb, req(hostA, mapping.UDP, 3, 5003, false), time.Time{}) // permanent
	if next, ok := tb.NextExpiry(); !ok || !next.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("got next expiry %v %v, want t0+10s", next, ok)
	}
	// Renew b past a.
	mustMap(t, tb, req(hostA, mapping.UDP, 2, 0, false), t0.Add(60*time.Second))
	if got := tb.Expire(t0.Add(29 * time.Second)); len(got) != 0 {
		t.Fatalf("got %v expired at t0+29s, want none", got)
	}
	got := tb.Expire(t0.Add(time.Hour))
	if len(got) != 2 || got[0].Key != a.Key || got[1].Key != b.Key {
		t.Fatalf("got expired %v, want a then b", got)
	}
	if tb.Len() != 1 {
		t.Fatalf("got %d left, want the permanent one", tb.Len())
	}
	if _, ok := tb.NextExpiry(); ok {
		t.Fatal("permanent mapping must not be in the expiry heap")
	}
	checkInvariants(t, tb)
}

func TestListingOrderAndIndexes(t *testing.T) {
	tb := New()
	for _, p := range []uint16{9000, 3000, 7000} {
		mustMap(t, tb, req(hostA, mapping.TCP, p, p, true), time.Time{})
		mustMap(t, tb, req(hostB, mapping.UDP, p, p, true), time.Time{})
	}
	var ports []uint16
	for m := range tb.All() {
		ports = append(ports, m.External.Port())
	}
	if want := []uint16{3000, 3000, 7000, 7000, 9000, 9000}; !slices.Equal(ports, want) {
		t.Fatalf("got order %v, want %v", ports, want)
	}
	if got := len(tb.Client(hostA, mapping.TCP)); got != 3 {
		t.Errorf("got %d TCP mappings of A, want 3", got)
	}
	if got := len(tb.Client(hostA, mapping.UDP)); got != 0 {
		t.Errorf("got %d UDP mappings of A, want 0", got)
	}
	if got := tb.ClientCount(hostB); got != 3 {
		t.Errorf("got count %d for B, want 3", got)
	}
	if got := tb.Internal(hostA, mapping.TCP, netip.AddrPortFrom(hostA, 7000)); len(got) != 1 {
		t.Errorf("got %v by internal, want one", got)
	}
	for _, m := range tb.Client(hostA, 0) {
		tb.Delete(m.Key)
	}
	if tb.ClientCount(hostA) != 0 || tb.Len() != 3 {
		t.Errorf("got count %d, len %d after deleting A's, want 0 and 3", tb.ClientCount(hostA), tb.Len())
	}
	checkInvariants(t, tb)
}

// checkInvariants cross-checks every index against the ordered set.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	n, perClient, timed := 0, map[netip.Addr]int{}, 0
	for m := range tb.All() {
		n++
		perClient[m.Client]++
		if !m.Permanent() {
			timed++
		}
		if got, ok := tb.Get(m.Key); !ok || got != m {
			t.Errorf("Get(%v) = %v, %v; want the listed mapping", m.Key, got, ok)
		}
		if set := tb.ports(m.External.Addr(), m.Proto); set == nil || !set.has(m.External.Port()) {
			t.Errorf("port %d of %v not marked used", m.External.Port(), m.Key)
		}
	}
	for c, k := range perClient {
		if tb.ClientCount(c) != k {
			t.Errorf("client %v: count %d, listed %d", c, tb.ClientCount(c), k)
		}
	}
	if len(tb.byClient) != len(perClient) {
		t.Errorf("got %d client lists, want %d", len(tb.byClient), len(perClient))
	}
	if len(tb.expiry) != timed {
		t.Errorf("got %d heap entries, want %d", len(tb.expiry), timed)
	}
	used, ports := 0, map[string]bool{}
	for _, u := range tb.used {
		for i := range u.set {
			for _, w := range u.set[i] {
				used += bitsOn(w)
			}
		}
	}
	for m := range tb.All() {
		ports[m.Proto.String()+m.External.String()] = true
	}
	if used != len(ports) {
		t.Errorf("got %d used bits, want %d ports", used, len(ports))
	}
}

func bitsOn(w uint64) int {
	n := 0
	for ; w != 0; w &= w - 1 {
		n++
	}
	return n
}

func TestExternalAddressesArePortSpaces(t *testing.T) {
	tb := New()
	ext2 := netip.MustParseAddr("203.0.113.3")
	mustMap(t, tb, req(hostA, mapping.TCP, 80, 8080, true), time.Time{})
	r := req(hostB, mapping.TCP, 80, 8080, true)
	p, err := tb.Allocate(r, ext2, user, time.Time{})
	if err != nil {
		t.Fatalf("port 8080 on a second address must be free: %v", err)
	}
	tb.Commit(p)
	// Freeing the port on one address leaves it taken on the other.
	tb.Delete(mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, 8080)})
	if _, err := tb.Allocate(req(hostA, mapping.TCP, 80, 8080, true), ext2, user, time.Time{}); !errors.Is(err, mapping.ErrConflict) {
		t.Fatalf("got %v, want ErrConflict on the second address", err)
	}
	if p, err := tb.Allocate(req(hostA, mapping.TCP, 81, 8080, false), ext2, user, time.Time{}); err != nil || p.Mapping.External.Port() != 8081 {
		t.Fatalf("got %v, %v; want the hint moved to 8081", p.Mapping.External, err)
	}
	checkInvariants(t, tb)
}

// TestGrow checks that Grow prepares an empty table for a bulk load
// without changing what it does, and leaves a table with mappings alone.
func TestGrow(t *testing.T) {
	tb := New()
	tb.Grow(100)
	a := mustMap(t, tb, req(hostA, mapping.UDP, 5000, 5000, true), t0.Add(time.Hour))
	b := mustMap(t, tb, req(hostB, mapping.UDP, 5000, 5000, false), t0.Add(time.Minute))
	if b.External.Port() == a.External.Port() {
		t.Fatalf("two mappings on external port %d after Grow", a.External.Port())
	}
	tb.Grow(1000) // not empty: nothing happens
	if tb.Len() != 2 || tb.ClientCount(hostA) != 1 {
		t.Fatalf("after Grow on a table with 2 mappings: Len %d, hostA %d", tb.Len(), tb.ClientCount(hostA))
	}
	if got, ok := tb.Get(a.Key); !ok || got != a {
		t.Errorf("Get(%v) = %v, %v after Grow", a.Key, got, ok)
	}
	if exp := tb.Expire(t0.Add(2 * time.Minute)); len(exp) != 1 || exp[0] != b {
		t.Errorf("Expire = %v, want only %v", exp, b)
	}
}

// TestEntryRoundTrip: the table stores a mapping in pieces (entry.go) and
// hands back, from every accessor, a Mapping equal with == to the one put:
// remote hosts, third-party clients, IPv6 and zones, origins, peers and
// permanent leases included.
func TestEntryRoundTrip(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s > 160 {
		t.Errorf("entry is %d bytes, want at most 160: one more word moves it to the next size class", s)
	}
	ext6 := netip.MustParseAddr("2001:db8::1")
	ll := netip.MustParseAddr("fe80::10%lan0")
	peers := mapping.NewPeers(mapping.Peer{Prefix: netip.MustParsePrefix("198.51.100.0/24")})
	var nonce [12]byte
	copy(nonce[:], "nonce-bytes!")
	ms := []mapping.Mapping{
		{Key: mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, 5000)},
			Internal: netip.AddrPortFrom(hostA, 5000), Client: hostA,
			Origin: mapping.Origin{Kind: mapping.KindIGD, Description: "game"}, Expires: t0.Add(time.Hour)},
		{Key: mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, 5000), Remote: netip.MustParseAddr("198.51.100.7")},
			Internal: netip.AddrPortFrom(hostB, 6000), Client: hostA, // third party
			Origin: mapping.Origin{Kind: mapping.KindIGD}},
		{Key: mapping.Key{Proto: mapping.UDP, External: netip.AddrPortFrom(ext6, 5000)},
			Internal: netip.AddrPortFrom(ll, 7000), Client: ll,
			Origin: mapping.Origin{Kind: mapping.KindPCP, Nonce: nonce}, Expires: t0.Add(time.Minute), Peers: peers},
		{Key: mapping.Key{Proto: mapping.UDP, External: netip.AddrPortFrom(ext, 5001)},
			Internal: netip.AddrPortFrom(netip.AddrFrom16(hostA.As16()), 7000), Client: hostA, // IPv4-mapped internal
			Origin: mapping.Origin{Kind: mapping.KindNATPMP}, Expires: t0.Add(2 * time.Minute)},
		{Key: mapping.Key{Proto: mapping.UDP, External: netip.AddrPortFrom(ext, 5002)},
			Internal: netip.AddrPortFrom(hostA, 7000), Client: hostA,
			Origin: mapping.Origin{Kind: mapping.KindStatic, Description: "web"}},
	}
	tb := New()
	for _, m := range ms {
		tb.Put(m)
	}
	var all []mapping.Mapping
	for m := range tb.All() {
		all = append(all, m)
	}
	want := slices.Clone(ms)
	sortByKey(want)
	if !slices.Equal(all, want) {
		t.Fatalf("All:\ngot  %v\nwant %v", all, want)
	}
	for _, m := range ms {
		if got, ok := tb.Get(m.Key); !ok || got != m {
			t.Errorf("Get(%v) = %+v, %v; want %+v", m.Key, got, ok, m)
		}
		if got := tb.Internal(m.Client, m.Proto, m.Internal); !slices.Contains(got, m) || len(got) != 1 {
			t.Errorf("Internal(%v, %v, %v) = %v; want only %v", m.Client, m.Proto, m.Internal, got, m)
		}
		if got := tb.OnPort(m.Proto, m.External.Port()); !slices.Contains(got, m) {
			t.Errorf("OnPort(%v, %d) = %v; want it to hold %v", m.Proto, m.External.Port(), got, m)
		}
		if got := tb.Client(m.Client, 0); !slices.Contains(got, m) {
			t.Errorf("Client(%v) = %v; want it to hold %v", m.Client, got, m)
		}
	}
	if exp := tb.Expire(t0.Add(time.Hour)); !slices.Equal(exp, []mapping.Mapping{ms[2], ms[3], ms[0]}) {
		t.Errorf("Expire = %v, want %v", exp, []mapping.Mapping{ms[2], ms[3], ms[0]})
	}
	for _, m := range ms[3:] {
		if got, ok := tb.Delete(m.Key); ok != (m.Permanent()) || (ok && got != m) {
			t.Errorf("Delete(%v) = %v, %v", m.Key, got, ok)
		}
	}
	if tb.Len() != 1 {
		t.Errorf("%d mappings left, want 1", tb.Len())
	}
}
