package pcp_test

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/pcp"
)

// These tests call Handler directly, in front of a real Service with the
// fake backend: the rules of the responder without sockets (those are
// tested in pcp/listener).

var (
	unitNow    = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	unitExt    = netip.MustParseAddr("203.0.113.2")
	unitClient = netip.MustParseAddr("192.168.1.10")
	unitOther  = netip.MustParseAddr("192.168.1.20")
)

type unit struct {
	t   *testing.T
	h   *pcp.Handler
	svc *portmap.Service
}

// newUnit is a Handler with policy secure mode as given; allowThirdParty
// is the Handler's own switch.
func newUnit(t *testing.T, secure, allowThirdParty bool) *unit {
	t.Helper()
	lan := netip.MustParsePrefix("192.168.1.0/24")
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Insecure: !secure,
		Lifetime: map[mapping.Kind]policy.Lifetimes{mapping.KindPCP: {Min: 120 * time.Second, Max: 24 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clocktest.NewFake(unitNow), External: unitExt})
	t.Cleanup(func() { svc.Close() })
	return &unit{t: t, svc: svc, h: &pcp.Handler{Mapper: svc, Epoch: svc.Epoch, AllowThirdParty: allowThirdParty}}
}

// raw sends q from its Client and returns the reply bytes.
func (u *unit) raw(q pcp.Request) []byte {
	u.t.Helper()
	b := u.h.Handle(context.Background(), q.AppendTo(nil), netip.AddrPortFrom(q.Client, 5350), unitNow, nil)
	if b == nil {
		u.t.Fatalf("no reply to %+v", q)
	}
	return b
}

func (u *unit) do(q pcp.Request) pcp.Response {
	u.t.Helper()
	b := u.raw(q)
	r, err := pcp.ParseResponse(b)
	if err != nil {
		u.t.Fatalf("reply % x: %v", b, err)
	}
	return r
}

// RFC 6887 §13.1, COMPAT C3: THIRD_PARTY is the Handler's decision, not
// only the policy's: with secure mode off the policy would let a client
// map for another host, and still the Handler refuses it unless allowed.
func TestThirdPartyNeedsPermission(t *testing.T) {
	for _, tt := range []struct {
		name  string
		allow bool
		want  pcp.ResultCode
	}{
		{"not allowed", false, pcp.NotAuthorized},
		{"allowed", true, pcp.Success},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t, false, tt.allow)
			q := mapReq(unitClient, 17, 5000, 0, 3600)
			q.Options.ThirdParty = unitOther
			resp := u.do(q)
			if resp.Result != tt.want {
				t.Fatalf("got %v, want %v", resp.Result, tt.want)
			}
			ms := u.svc.List(mapping.Filter{})
			if tt.want != pcp.Success {
				if len(ms) != 0 {
					t.Fatalf("refused, yet mappings %v", ms)
				}
				return
			}
			if len(ms) != 1 || ms[0].Internal != netip.AddrPortFrom(unitOther, 5000) || ms[0].Client != unitClient {
				t.Fatalf("got %v, want one mapping to %v:5000 owned by %v", ms, unitOther, unitClient)
			}
		})
	}
}

// COMPAT C5: clients differ in how they use the nonce (Apple one per
// host, libtorrent one per mapping, tailscale a new one per request). A
// create or renew with another nonce from the same internal address, port
// and protocol is accepted, keeps the mapping and its external port, and
// the new nonce replaces the old; a delete with another nonce deletes.
func TestNonceChangeFromSameInternalPort(t *testing.T) {
	u := newUnit(t, true, false)
	first := u.do(mapReq(unitClient, 17, 5000, 0, 3600))
	if first.Result != pcp.Success {
		t.Fatalf("create: %v", first.Result)
	}
	renew := mapReq(unitClient, 17, 5000, 0, 7200)
	renew.Nonce[11] ^= 0xff
	got := u.do(renew)
	if got.Result != pcp.Success || got.ExternalPort != first.ExternalPort || got.Nonce != renew.Nonce || got.Lifetime != 7200 {
		t.Fatalf("renewal with a new nonce: got %+v, want SUCCESS on port %d for 7200 s echoing the new nonce",
			got, first.ExternalPort)
	}
	ms := u.svc.List(mapping.Filter{})
	if len(ms) != 1 || ms[0].Origin.Nonce != renew.Nonce {
		t.Fatalf("got %v, want one mapping holding the new nonce", ms)
	}
	// The old nonce, once more (a client that kept one per host): the
	// same mapping again.
	if again := u.do(mapReq(unitClient, 17, 5000, 0, 3600)); again.Result != pcp.Success || again.ExternalPort != first.ExternalPort || u.svc.Len() != 1 {
		t.Fatalf("old nonce again: got %+v with %d mappings, want SUCCESS on port %d and one mapping",
			again, u.svc.Len(), first.ExternalPort)
	}
	del := mapReq(unitClient, 17, 5000, 0, 0)
	del.Nonce[0] ^= 0xff
	if resp := u.do(del); resp.Result != pcp.Success || u.svc.Len() != 0 {
		t.Fatalf("delete with a new nonce: got %v with %d mappings, want SUCCESS and none", resp.Result, u.svc.Len())
	}
}

// RFC 6887 §13.2, COMPAT C4: a suggested external address that is not
// ours is a hint (tailscale#810) unless PREFER_FAILURE asks for exactly
// it, which is CANNOT_PROVIDE_EXTERNAL.
func TestForeignSuggestedAddress(t *testing.T) {
	foreign := netip.MustParseAddr("198.51.100.1")
	for _, tt := range []struct {
		name          string
		suggest       netip.Addr
		preferFailure bool
		want          pcp.ResultCode
	}{
		{"hint", foreign, false, pcp.Success},
		{"PREFER_FAILURE", foreign, true, pcp.CannotProvideExternal},
		{"PREFER_FAILURE with our address", unitExt, true, pcp.Success},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t, true, false)
			q := mapReq(unitClient, 6, 5000, 6000, 3600) // port 6000 is free
			q.SuggestedAddr = tt.suggest
			q.Options.PreferFailure = tt.preferFailure
			resp := u.do(q)
			if resp.Result != tt.want {
				t.Fatalf("got %v, want %v", resp.Result, tt.want)
			}
			if tt.want != pcp.Success {
				if u.svc.Len() != 0 || resp.Lifetime <= 30 {
					t.Fatalf("refusal: %d mappings, lifetime %d; want none and a long error lifetime", u.svc.Len(), resp.Lifetime)
				}
				return
			}
			if resp.ExternalAddr != unitExt || resp.ExternalPort != 6000 {
				t.Fatalf("got %v:%d, want our %v:6000", resp.ExternalAddr, resp.ExternalPort, unitExt)
			}
		})
	}
}

// RFC 6887 §8 and §15: a retransmitted request gets the same answer, and a
// delete answers with the suggested external address and port copied
// (§15.1, erratum 3621), so the retransmission of a delete, which finds
// nothing left to delete, is answered exactly as the first copy was.
func TestRetransmittedDeleteSameAnswer(t *testing.T) {
	for _, tt := range []struct {
		name    string
		suggest func(m pcp.Response) (uint16, netip.Addr)
	}{
		// What the erratum asks clients to send.
		{"zero suggestion", func(pcp.Response) (uint16, netip.Addr) { return 0, netip.IPv4Unspecified() }},
		// What miniupnpd's capture and some clients send: the mapping.
		{"mapping suggested", func(m pcp.Response) (uint16, netip.Addr) { return m.ExternalPort, netip.IPv4Unspecified() }},
		{"mapping and address suggested", func(m pcp.Response) (uint16, netip.Addr) { return m.ExternalPort, m.ExternalAddr }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t, true, false)
			m := u.do(mapReq(unitClient, 17, 5000, 0, 3600))
			if m.Result != pcp.Success {
				t.Fatalf("create: %v", m.Result)
			}
			del := mapReq(unitClient, 17, 5000, 0, 0)
			del.SuggestedPort, del.SuggestedAddr = tt.suggest(m)
			first := u.raw(del)
			if u.svc.Len() != 0 {
				t.Fatal("the delete left the mapping")
			}
			second := u.raw(del)
			if !bytes.Equal(first, second) {
				t.Fatalf("retransmitted delete answered\n% x\nfirst answer\n% x", second, first)
			}
			resp, err := pcp.ParseResponse(first)
			if err != nil || resp.Result != pcp.Success || resp.Lifetime != 0 ||
				resp.ExternalPort != del.SuggestedPort || resp.ExternalAddr != del.SuggestedAddr {
				t.Fatalf("got %+v (%v), want SUCCESS, lifetime 0 and the suggestion %d %v copied",
					resp, err, del.SuggestedPort, del.SuggestedAddr)
			}
		})
	}
}
