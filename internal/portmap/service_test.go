package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

var (
	t0    = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ext   = netip.MustParseAddr("203.0.113.2")
	lan   = netip.MustParsePrefix("192.168.77.0/24")
	hostA = netip.MustParseAddr("192.168.77.10")
	hostB = netip.MustParseAddr("192.168.77.11")
	ctx   = context.Background()
)

type harness struct {
	*Service
	be  *fake.Backend
	clk *clocktest.Fake
}

func newHarness(t *testing.T, mod func(*policy.Config)) *harness {
	t.Helper()
	pc := policy.Config{
		LAN:          []netip.Prefix{lan},
		MaxPerClient: 4,
		MaxTotal:     6,
		Lifetime: map[mapping.Kind]policy.Lifetimes{
			mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour},
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
	h := &harness{be: &fake.Backend{}, clk: clocktest.NewFake(t0)}
	h.Service = New(Config{Backend: h.be, Policy: pol, Clock: h.clk, External: ext})
	t.Cleanup(func() { h.Close() })
	return h
}

func pmp(client netip.Addr, proto mapping.Protocol, intPort, suggest uint16, life time.Duration) mapping.Request {
	return mapping.Request{
		Client: client, Proto: proto,
		Internal: netip.AddrPortFrom(client, intPort),
		Suggest:  netip.AddrPortFrom(netip.Addr{}, suggest),
		Lifetime: life,
		Origin:   mapping.Origin{Kind: mapping.KindNATPMP},
	}
}

func igd(client netip.Addr, proto mapping.Protocol, intPort, extPort uint16, life time.Duration) mapping.Request {
	r := pmp(client, proto, intPort, extPort, life)
	r.Exact = true
	r.Origin = mapping.Origin{Kind: mapping.KindIGD, Description: "test"}
	return r
}

func (h *harness) mustMap(t *testing.T, r mapping.Request) mapping.Mapping {
	t.Helper()
	m, err := h.Map(ctx, r)
	if err != nil {
		t.Fatalf("Map(%v %v): %v", r.Proto, r.Internal, err)
	}
	return m
}

func TestMapCreatesAndRenewsWithoutBackendCall(t *testing.T) {
	h := newHarness(t, nil)
	m := h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 5000, time.Hour))
	if m.External != netip.AddrPortFrom(ext, 5000) || !m.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("got %v expiring %v, want %v:5000 at t0+1h", m.External, m.Expires, ext)
	}
	h.clk.Advance(30 * time.Minute)
	r := pmp(hostA, mapping.UDP, 5000, 0, time.Hour)
	again := h.mustMap(t, r)
	if again.External != m.External {
		t.Fatalf("renewal moved the mapping to %v", again.External)
	}
	if want := t0.Add(90 * time.Minute); !again.Expires.Equal(want) {
		t.Fatalf("got expiry %v, want %v", again.Expires, want)
	}
	if n := len(h.be.Batches()); n != 1 {
		t.Fatalf("got %d backend batches, want 1 (renewal must not touch the backend)", n)
	}
}

func TestLifetimeClamped(t *testing.T) {
	h := newHarness(t, nil)
	if m := h.mustMap(t, pmp(hostA, mapping.UDP, 4001, 0, time.Second)); !m.Expires.Equal(t0.Add(120 * time.Second)) {
		t.Errorf("short lease: got expiry %v, want t0+120s", m.Expires)
	}
	if m := h.mustMap(t, igd(hostA, mapping.TCP, 4002, 2000, 0)); !m.Expires.Equal(t0.Add(7 * 24 * time.Hour)) {
		t.Errorf("UPnP lease 0: got expiry %v, want the 7-day cap", m.Expires)
	}
}

func TestExpiryAtTheRightInstant(t *testing.T) {
	h := newHarness(t, nil)
	sub := h.Subscribe(16)
	h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 5000, 10*time.Minute))
	h.mustMap(t, pmp(hostA, mapping.UDP, 5001, 5001, 20*time.Minute))
	<-sub.C()
	<-sub.C()
	h.clk.Advance(10*time.Minute - time.Nanosecond)
	if h.Len() != 2 {
		t.Fatalf("got %d mappings just before the deadline, want 2", h.Len())
	}
	h.clk.Advance(time.Nanosecond)
	if h.Len() != 1 {
		t.Fatalf("got %d mappings at the deadline, want 1", h.Len())
	}
	e := <-sub.C()
	if e.Kind != Expired || e.Mapping.External.Port() != 5000 {
		t.Fatalf("got event %v %v, want expired 5000", e.Kind, e.Mapping.Key)
	}
	if got := h.be.State(); len(got) != 1 || got[0].External.Port() != 5001 {
		t.Fatalf("backend holds %v, want only 5001", got)
	}
	// A renewal pushes the deadline; the old timer must not expire it.
	h.mustMap(t, pmp(hostA, mapping.UDP, 5001, 0, time.Hour))
	h.clk.Advance(30 * time.Minute)
	if h.Len() != 1 {
		t.Fatal("renewed mapping expired at its old deadline")
	}
	h.clk.Advance(40 * time.Minute)
	if h.Len() != 0 {
		t.Fatal("renewed mapping did not expire at its new deadline")
	}
}

func TestReplaceAndConflict(t *testing.T) {
	h := newHarness(t, nil)
	h.mustMap(t, igd(hostA, mapping.TCP, 8000, 8080, time.Hour))
	h.mustMap(t, igd(hostA, mapping.TCP, 8001, 8080, time.Hour))
	b := h.be.Batches()
	last := b[len(b)-1]
	if len(last) != 2 || last[0].Op != backend.Delete || last[1].Op != backend.Add || last[1].Mapping.Internal.Port() != 8001 {
		t.Fatalf("replace batch = %v, want delete old + add new", last)
	}
	if _, err := h.Map(ctx, igd(hostB, mapping.TCP, 8000, 8080, time.Hour)); !errors.Is(err, mapping.ErrConflict) {
		t.Fatalf("other client: got %v, want ErrConflict", err)
	}
	// A NAT-PMP client asking for the taken port gets another one.
	m := h.mustMap(t, pmp(hostB, mapping.TCP, 8000, 8080, time.Hour))
	if m.External.Port() == 8080 {
		t.Fatal("hint request got a port held by another client")
	}
}

func TestPolicyRefusals(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name string
		r    mapping.Request
		want error
	}{
		{"privileged exact port", igd(hostA, mapping.TCP, 8000, 80, 0), mapping.ErrNotAuthorized},
		{"secure mode", func() mapping.Request {
			r := igd(hostA, mapping.TCP, 8000, 8080, 0)
			r.Internal = netip.AddrPortFrom(hostB, 80)
			return r
		}(), mapping.ErrNotAuthorized},
		{"outside LAN", pmp(netip.MustParseAddr("10.9.9.9"), mapping.UDP, 1, 0, time.Hour), mapping.ErrNotAuthorized},
		{"internal port 0", pmp(hostA, mapping.UDP, 0, 0, time.Hour), mapping.ErrInvalid},
		{"bad protocol", pmp(hostA, 1, 1, 0, time.Hour), mapping.ErrUnsupported},
		{"static origin", func() mapping.Request {
			r := pmp(hostA, mapping.UDP, 1, 0, time.Hour)
			r.Origin.Kind = mapping.KindStatic
			return r
		}(), mapping.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.Map(ctx, tc.r); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if h.Len() != 0 || len(h.be.Batches()) != 0 {
		t.Fatalf("refusals left %d mappings and %d batches", h.Len(), len(h.be.Batches()))
	}
	// Default rules (miniupnpd's) refuse privileged internal ports.
	if _, err := h.Map(ctx, pmp(hostA, mapping.TCP, 22, 0, time.Hour)); !errors.Is(err, mapping.ErrNotAuthorized) {
		t.Fatalf("internal port 22: got %v, want ErrNotAuthorized", err)
	}
	// A NAT-PMP hint for a privileged port is moved into the allowed range.
	if m := h.mustMap(t, pmp(hostA, mapping.TCP, 8000, 80, time.Hour)); m.External.Port() < 1024 {
		t.Fatalf("got port %d, want >= 1024", m.External.Port())
	}
}

func TestQuotas(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 4 {
		h.mustMap(t, pmp(hostA, mapping.UDP, uint16(5000+i), 0, time.Hour))
	}
	if _, err := h.Map(ctx, pmp(hostA, mapping.UDP, 6000, 0, time.Hour)); !errors.Is(err, mapping.ErrQuota) {
		t.Fatalf("per-client quota: got %v, want ErrQuota", err)
	}
	// Renewing at the quota still works.
	h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 0, time.Hour))
	h.mustMap(t, pmp(hostB, mapping.UDP, 5000, 0, time.Hour))
	h.mustMap(t, pmp(hostB, mapping.UDP, 5001, 0, time.Hour))
	if _, err := h.Map(ctx, pmp(hostB, mapping.UDP, 5002, 0, time.Hour)); !errors.Is(err, mapping.ErrQuota) {
		t.Fatalf("global quota: got %v, want ErrQuota", err)
	}
}

// TestStaticForwardsOutsideQuota: static forwards do not use up the
// global quota that LAN clients share.
func TestStaticForwardsOutsideQuota(t *testing.T) {
	h := newHarness(t, nil) // 4 per client, 6 in all
	if err := h.SetStatic(ctx, []Forward{
		{Name: "web", Proto: mapping.TCP, External: 8081, Internal: netip.AddrPortFrom(hostB, 80)},
		{Name: "dns", Proto: mapping.UDP, External: 5353, Internal: netip.AddrPortFrom(hostB, 53)},
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		h.mustMap(t, pmp(hostA, mapping.UDP, uint16(5000+i), 0, time.Hour))
	}
	h.mustMap(t, pmp(hostB, mapping.UDP, 5000, 0, time.Hour))
	h.mustMap(t, pmp(hostB, mapping.UDP, 5001, 0, time.Hour))
	if _, err := h.Map(ctx, pmp(hostB, mapping.UDP, 5002, 0, time.Hour)); !errors.Is(err, mapping.ErrQuota) {
		t.Fatalf("seventh dynamic mapping: got %v, want ErrQuota", err)
	}
	if h.Len() != 8 {
		t.Fatalf("got %d mappings, want 6 dynamic and 2 static", h.Len())
	}
}

func TestBackendFailureLeavesNoTrace(t *testing.T) {
	h := newHarness(t, nil)
	sub := h.Subscribe(8)
	h.mustMap(t, igd(hostA, mapping.TCP, 8000, 8080, time.Hour))
	<-sub.C()
	before := h.List(mapping.Filter{})
	h.be.Fail(fake.ErrInjected, fake.ErrInjected)
	if _, err := h.Map(ctx, igd(hostA, mapping.TCP, 8001, 8081, time.Hour)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("new mapping: got %v, want ErrNetworkFailure", err)
	}
	if _, err := h.Map(ctx, igd(hostA, mapping.TCP, 8002, 8080, time.Hour)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("replacement: got %v, want ErrNetworkFailure", err)
	}
	h.be.Fail(fake.ErrInjected)
	if err := h.Unmap(ctx, igd(hostA, mapping.TCP, 8000, 8080, 0)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("unmap: got %v, want ErrNetworkFailure", err)
	}
	after := h.List(mapping.Filter{})
	// The generation may have moved: a new mapping is in the table while
	// its backend batch is in flight, and listings refresh after.
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("table changed after failures:\nbefore %v\nafter  %v", before, after)
	}
	if len(sub.C()) != 0 {
		t.Fatal("failed requests published events")
	}
	if fmt.Sprint(h.be.State()) != fmt.Sprint(before) {
		t.Fatalf("backend holds %v, want %v", h.be.State(), before)
	}
}

func TestPortUnavailableTriesAnother(t *testing.T) {
	h := newHarness(t, nil)
	h.be.Fail(fmt.Errorf("bind: %w", backend.ErrPortUnavailable))
	m := h.mustMap(t, pmp(hostA, mapping.TCP, 5000, 5000, time.Hour))
	if m.External.Port() == 5000 {
		t.Fatal("got the port the backend refused")
	}
	h.be.Fail(fmt.Errorf("bind: %w", backend.ErrPortUnavailable))
	if _, err := h.Map(ctx, igd(hostA, mapping.TCP, 6000, 6000, time.Hour)); !errors.Is(err, mapping.ErrConflict) {
		t.Fatalf("exact request: got %v, want ErrConflict", err)
	}
}

func TestUnmap(t *testing.T) {
	h := newHarness(t, func(c *policy.Config) { c.MaxPerClient, c.MaxTotal = 0, 0 })
	h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 0, time.Hour))
	h.mustMap(t, pmp(hostA, mapping.UDP, 5001, 0, time.Hour))
	h.mustMap(t, pmp(hostA, mapping.TCP, 5000, 0, time.Hour))
	h.mustMap(t, igd(hostB, mapping.TCP, 8000, 8080, time.Hour))

	// NAT-PMP delete by internal port ignores the suggested external port.
	r := pmp(hostA, mapping.UDP, 5000, 0, 0)
	if err := h.Unmap(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := h.Unmap(ctx, r); !errors.Is(err, mapping.ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
	// Another client's mapping by external port: refused in secure mode.
	if err := h.Unmap(ctx, igd(hostA, mapping.TCP, 8000, 8080, 0)); !errors.Is(err, mapping.ErrNotAuthorized) {
		t.Fatalf("foreign delete: got %v, want ErrNotAuthorized", err)
	}
	// Internal port 0: all of the client's UDP mappings, not TCP.
	if err := h.Unmap(ctx, pmp(hostA, mapping.UDP, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if got := h.List(mapping.Filter{Client: hostA}); len(got) != 1 || got[0].Proto != mapping.TCP {
		t.Fatalf("got %v left for A, want the TCP mapping", got)
	}
}

func TestUnmapForeignWithoutSecureMode(t *testing.T) {
	h := newHarness(t, func(c *policy.Config) { c.Insecure = true })
	h.mustMap(t, igd(hostB, mapping.TCP, 8000, 8080, time.Hour))
	if err := h.Unmap(ctx, igd(hostA, mapping.TCP, 8000, 8080, 0)); err != nil {
		t.Fatalf("got %v, want success with secure mode off", err)
	}
}

func TestListIsSortedAndFiltered(t *testing.T) {
	h := newHarness(t, func(c *policy.Config) { c.MaxPerClient, c.MaxTotal = 0, 0 })
	for _, p := range []uint16{9000, 3000, 7000} {
		h.mustMap(t, igd(hostA, mapping.TCP, p, p, time.Hour))
		h.mustMap(t, igd(hostB, mapping.UDP, p, p, time.Hour))
	}
	var got []string
	for _, m := range h.List(mapping.Filter{}) {
		got = append(got, fmt.Sprintf("%v/%d", m.Proto, m.External.Port()))
	}
	if want := "[TCP/3000 UDP/3000 TCP/7000 UDP/7000 TCP/9000 UDP/9000]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	byClient := h.List(mapping.Filter{Client: hostB, Ports: mapping.PortRange{Lo: 5000, Hi: 9999}})
	if len(byClient) != 2 || byClient[0].External.Port() != 7000 {
		t.Fatalf("got %v, want B's 7000 and 9000", byClient)
	}
}

func TestStaticForwards(t *testing.T) {
	h := newHarness(t, nil)
	dyn := h.mustMap(t, igd(hostB, mapping.TCP, 8000, 8443, time.Hour))
	fs := []Forward{
		{Name: "web", Proto: mapping.TCP, External: 8080, Internal: netip.AddrPortFrom(hostA, 80)},
		{Name: "tls", Proto: mapping.TCP, External: 8443, Internal: netip.AddrPortFrom(hostA, 443)},
	}
	if err := h.SetStatic(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if _, ok := find(h.List(mapping.Filter{}), dyn.Key); ok && h.List(mapping.Filter{Client: hostB}) != nil {
		t.Fatal("dynamic mapping on a static port was not withdrawn")
	}
	all := h.List(mapping.Filter{Kind: mapping.KindStatic})
	if len(all) != 2 || !all[0].Permanent() {
		t.Fatalf("got statics %v, want 2 permanent", all)
	}
	// LAN clients cannot take or delete them, even the internal host.
	if _, err := h.Map(ctx, igd(hostA, mapping.TCP, 8000, 8080, 0)); !errors.Is(err, mapping.ErrConflict) {
		t.Fatalf("map over static: got %v, want ErrConflict", err)
	}
	if err := h.Unmap(ctx, igd(hostA, mapping.TCP, 8000, 8080, 0)); !errors.Is(err, mapping.ErrNotAuthorized) {
		t.Fatalf("delete static: got %v, want ErrNotAuthorized", err)
	}
	// Re-applying the same set changes nothing; dropping one removes it.
	n := len(h.be.Batches())
	if err := h.SetStatic(ctx, fs); err != nil || len(h.be.Batches()) != n {
		t.Fatalf("same set: err %v, %d new batches", err, len(h.be.Batches())-n)
	}
	if err := h.SetStatic(ctx, fs[:1]); err != nil {
		t.Fatal(err)
	}
	if got := h.List(mapping.Filter{Kind: mapping.KindStatic}); len(got) != 1 || got[0].Origin.Description != "web" {
		t.Fatalf("got %v, want only web", got)
	}
	// Statics never expire.
	h.clk.Advance(365 * 24 * time.Hour)
	if got := h.List(mapping.Filter{Kind: mapping.KindStatic}); len(got) != 1 {
		t.Fatal("static forward expired")
	}
}

func TestExternalAddressChange(t *testing.T) {
	h := newHarness(t, nil)
	sub := h.Subscribe(8)
	h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 5000, time.Hour))
	<-sub.C()
	next := netip.MustParseAddr("198.51.100.9")
	if err := h.SetExternalAddr(ctx, next); err != nil {
		t.Fatal(err)
	}
	if e := <-sub.C(); e.Kind != ExternalChanged || e.Addr != next {
		t.Fatalf("got event %v %v, want external-changed %v", e.Kind, e.Addr, next)
	}
	if got := h.be.State(); len(got) != 1 || got[0].External != netip.AddrPortFrom(next, 5000) {
		t.Fatalf("backend holds %v, want the mapping on %v", got, next)
	}
	// Renewal finds it on the new address.
	if m := h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 0, time.Hour)); m.External.Addr() != next {
		t.Fatalf("renewal got %v", m.External)
	}
	if err := h.SetExternalAddr(ctx, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Map(ctx, pmp(hostA, mapping.UDP, 6000, 0, time.Hour)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("WAN down: got %v, want ErrNetworkFailure", err)
	}
}

// While the WAN has no address the mappings stay on the last one, and a
// UPnP client can still delete its mapping by external port
// (DeletePortMapping), and only its own.
func TestUnmapByPortWhileTheWANIsDown(t *testing.T) {
	h := newHarness(t, nil)
	mine := h.mustMap(t, igd(hostA, mapping.UDP, 5000, 5000, time.Hour))
	theirs := h.mustMap(t, igd(hostB, mapping.TCP, 5001, 5001, time.Hour))
	if err := h.SetExternalAddr(ctx, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	del := igd(hostA, mapping.TCP, 5001, 5001, 0)
	if err := h.Unmap(ctx, del); !errors.Is(err, mapping.ErrNotAuthorized) {
		t.Fatalf("deleting another host's mapping while the WAN is down: %v, want ErrNotAuthorized", err)
	}
	del = igd(hostA, mapping.UDP, 5000, 5000, 0)
	if err := h.Unmap(ctx, del); err != nil {
		t.Fatalf("deleting its own mapping while the WAN is down: %v", err)
	}
	if got := h.be.State(); len(got) != 1 || got[0].Key != theirs.Key {
		t.Fatalf("backend holds %v, want only %v (%v deleted)", got, theirs.Key, mine.Key)
	}
	if err := h.Unmap(ctx, del); !errors.Is(err, mapping.ErrNotFound) {
		t.Fatalf("deleting it again: %v, want ErrNotFound", err)
	}
}

// Leases restored while the WAN has no address keep the address they
// were stored with, and two may hold one port on two addresses (one kept
// for its LAN by an earlier run). When the WAN gets an address, one port
// holds one mapping: the move keeps the first, withdraws the other, and
// the Service still takes new mappings.
func TestMoveKeepsOneMappingPerPort(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.SetExternalAddr(ctx, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	stored := func(client netip.Addr, on string) mapping.Mapping {
		return mapping.Mapping{Key: mapping.Key{Proto: mapping.TCP, External: netip.MustParseAddrPort(on)},
			Internal: netip.AddrPortFrom(client, 5000), Client: client, Expires: t0.Add(time.Hour),
			Origin: mapping.Origin{Kind: mapping.KindIGD}}
	}
	if r, err := h.Restore(ctx, []mapping.Mapping{stored(hostA, "198.51.100.1:5000"), stored(hostB, "198.51.100.2:5000")}); err != nil || r.Restored != 2 {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	sub := h.Subscribe(8)
	if err := h.SetExternalAddr(ctx, ext); err != nil {
		t.Fatalf("the WAN's address back: %v", err)
	}
	got := h.List(mapping.Filter{})
	if len(got) != 1 || got[0].External != netip.AddrPortFrom(ext, 5000) || fmt.Sprint(h.be.State()) != fmt.Sprint(got) {
		t.Fatalf("table %v, backend %v; want one mapping of port 5000 on %v", got, h.be.State(), ext)
	}
	if e := <-sub.C(); e.Kind != Removed || e.Mapping.Client == got[0].Client {
		t.Errorf("event %v of %v, want the other mapping removed", e.Kind, e.Mapping)
	}
	if _, err := h.Map(ctx, igd(hostA, mapping.UDP, 6000, 6000, time.Hour)); err != nil {
		t.Errorf("a new mapping after the move: %v", err)
	}
}

func TestEpochAndClose(t *testing.T) {
	h := newHarness(t, nil)
	h.clk.Advance(90 * time.Second)
	if got := h.Epoch(); got != 90 {
		t.Fatalf("got epoch %d, want 90", got)
	}
	sub := h.Subscribe(1)
	h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 0, time.Hour))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !h.be.Closed() {
		t.Fatal("backend not closed")
	}
	<-sub.C()
	if _, ok := <-sub.C(); ok {
		t.Fatal("subscription channel still open after Close")
	}
	if _, err := h.Map(ctx, pmp(hostA, mapping.UDP, 5001, 0, time.Hour)); !errors.Is(err, mapping.ErrNetworkFailure) {
		t.Fatalf("after close: got %v, want ErrNetworkFailure", err)
	}
	if h.clk.Pending() != 0 {
		t.Fatalf("%d timers left after Close", h.clk.Pending())
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestExpiryBackendFailureReconciles(t *testing.T) {
	h := newHarness(t, nil)
	h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 0, 10*time.Minute))
	h.mustMap(t, pmp(hostA, mapping.UDP, 5001, 0, time.Hour))
	h.be.Fail(fake.ErrInjected)
	h.clk.Advance(10 * time.Minute)
	if h.Len() != 1 {
		t.Fatalf("got %d mappings, want the lease gone from the table", h.Len())
	}
	if len(h.be.State()) != 2 {
		t.Fatal("the injected failure did not take")
	}
	h.clk.Advance(5 * time.Second)
	if got := h.be.State(); len(got) != 1 || got[0].External.Port() != 5001 || h.be.Syncs() != 1 {
		t.Fatalf("after reconcile backend holds %v (syncs %d), want only 5001", got, h.be.Syncs())
	}
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	h := newHarness(t, func(c *policy.Config) { c.MaxPerClient, c.MaxTotal = 0, 0 })
	sub := h.Subscribe(1)
	for i := range 5 {
		h.mustMap(t, pmp(hostA, mapping.UDP, uint16(5000+i), 0, time.Hour))
	}
	if sub.Dropped() != 4 {
		t.Fatalf("got %d dropped, want 4", sub.Dropped())
	}
	sub.Cancel()
	sub.Cancel()
}

func find(ms []mapping.Mapping, k mapping.Key) (mapping.Mapping, bool) {
	for _, m := range ms {
		if m.Key == k {
			return m, true
		}
	}
	return mapping.Mapping{}, false
}

func TestUnmapByInternalMatchesRemote(t *testing.T) {
	h := newHarness(t, nil)
	open := h.mustMap(t, pmp(hostA, mapping.UDP, 5000, 0, time.Hour))
	peer := pmp(hostA, mapping.UDP, 5000, 0, time.Hour)
	peer.Remote = netip.MustParseAddr("198.51.100.7")
	h.mustMap(t, peer)
	peer.Lifetime = 0
	if err := h.Unmap(ctx, peer); err != nil {
		t.Fatal(err)
	}
	if got := h.List(mapping.Filter{Client: hostA}); len(got) != 1 || got[0].Key != open.Key {
		t.Fatalf("got %v, want only the unrestricted mapping left", got)
	}
}

func TestStaticForwardsWaitForAnAddress(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.SetExternalAddr(ctx, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	fs := []Forward{{Name: "web", Proto: mapping.TCP, External: 8080, Internal: netip.AddrPortFrom(hostA, 80)}}
	if err := h.SetStatic(ctx, fs); err != nil {
		t.Fatalf("no address yet: got %v, want the forwards kept for later", err)
	}
	if h.Len() != 0 {
		t.Fatal("installed a forward without an address")
	}
	if err := h.SetExternalAddr(ctx, ext); err != nil {
		t.Fatal(err)
	}
	if got := h.List(mapping.Filter{Kind: mapping.KindStatic}); len(got) != 1 || got[0].External != netip.AddrPortFrom(ext, 8080) {
		t.Fatalf("got %v, want the forward installed on %v", got, ext)
	}
}

func TestDescriptionChangeIsAChange(t *testing.T) {
	h := newHarness(t, nil)
	h.mustMap(t, igd(hostA, mapping.TCP, 8000, 8080, time.Hour))
	gen := h.Generation()
	r := igd(hostA, mapping.TCP, 8000, 8080, time.Hour)
	r.Origin.Description = "renamed"
	h.mustMap(t, r)
	if h.Generation() == gen {
		t.Fatal("a new description did not change the generation")
	}
	if got := h.List(mapping.Filter{}); got[0].Origin.Description != "renamed" {
		t.Fatalf("got description %q", got[0].Origin.Description)
	}
	if len(h.be.Batches()) != 1 {
		t.Fatal("a description change reached the backend")
	}
}

func TestDeleteAllKeepsOtherProtocolsMappings(t *testing.T) {
	h := newHarness(t, nil)
	h.mustMap(t, pmp(hostA, mapping.TCP, 5000, 0, time.Hour))
	h.mustMap(t, igd(hostA, mapping.TCP, 8000, 8080, time.Hour))
	if err := h.Unmap(ctx, pmp(hostA, mapping.TCP, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if got := h.List(mapping.Filter{}); len(got) != 1 || got[0].Origin.Kind != mapping.KindIGD {
		t.Fatalf("got %v, want only the UPnP mapping left", got)
	}
}

func TestEveryPortRefusedIsNoResources(t *testing.T) {
	h := newHarness(t, nil)
	for range maxPortRetries + 1 {
		h.be.Fail(fmt.Errorf("bind: %w", backend.ErrPortUnavailable))
	}
	if _, err := h.Map(ctx, pmp(hostA, mapping.TCP, 5000, 5000, time.Hour)); !errors.Is(err, mapping.ErrNoResources) {
		t.Fatalf("got %v, want ErrNoResources", err)
	}
}

// TestListByPort checks that List answers a filter on a few ports from
// the port index exactly as a walk of the whole table would.
func TestListByPort(t *testing.T) {
	h := newHarness(t, func(c *policy.Config) { c.MaxPerClient, c.MaxTotal, c.Insecure = 100, 100, true })
	hosts := []netip.Addr{hostA, hostB}
	for i := range 40 {
		r := igd(hosts[i%2], []mapping.Protocol{mapping.TCP, mapping.UDP}[i/2%2], uint16(6000+i), uint16(7000+i%13), time.Hour)
		if i%5 == 0 {
			r.Remote = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		}
		if _, err := h.Map(ctx, r); err != nil && !errors.Is(err, mapping.ErrConflict) {
			t.Fatal(err)
		}
	}
	all := h.List(mapping.Filter{})
	if len(all) < 20 {
		t.Fatalf("only %d mappings to list", len(all))
	}
	filters := []mapping.Filter{
		{Ports: mapping.PortRange{Lo: 7003, Hi: 7003}},
		{Proto: mapping.UDP, Ports: mapping.PortRange{Lo: 7003, Hi: 7003}},
		{Proto: mapping.TCP, Client: hostB, Ports: mapping.PortRange{Lo: 7000, Hi: 7012}},
		{Client: hostA, Ports: mapping.PortRange{Lo: 7005, Hi: 7005}, Kind: mapping.KindIGD},
		{Ports: mapping.PortRange{Lo: 1, Hi: 65535}},
		{Ports: mapping.PortRange{Lo: 7100, Hi: 7100}},
	}
	for _, f := range filters {
		var want []mapping.Mapping
		for _, m := range all {
			if f.Match(m) {
				want = append(want, m)
			}
		}
		if got := h.List(f); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("List(%+v) = %v, want %v", f, got, want)
		}
	}
}

// TestKeysInListOrder: Keys is the listing GetGenericPortMappingEntry
// indexes, so it must name the mappings in exactly List's order.
func TestKeysInListOrder(t *testing.T) {
	h := newHarness(t, nil)
	h.mustMap(t, igd(hostB, mapping.UDP, 7000, 7000, time.Hour))
	h.mustMap(t, igd(hostA, mapping.TCP, 7000, 7000, time.Hour))
	h.mustMap(t, pmp(hostA, mapping.UDP, 6000, 6000, time.Hour))
	h.mustMap(t, igd(hostB, mapping.TCP, 5000, 9000, time.Hour))
	list := h.List(mapping.Filter{})
	keys := h.Keys()
	if len(keys) != len(list) || len(list) != 4 {
		t.Fatalf("Keys gave %d, List %d, want 4 each", len(keys), len(list))
	}
	for i := range list {
		if keys[i] != list[i].Key {
			t.Errorf("index %d: Keys %v, List %v", i, keys[i], list[i].Key)
		}
	}
}
