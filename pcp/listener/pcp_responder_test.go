package listener_test

import (
	"net/netip"
	"testing"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/pcp"
)

var nonce = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func mapReq(client netip.Addr, proto uint8, internal, suggested uint16, life uint32) pcp.Request {
	return pcp.Request{Op: pcp.OpMap, Lifetime: life, Client: client, Nonce: nonce, Protocol: proto,
		InternalPort: internal, SuggestedPort: suggested}
}

func parsePCP(t *testing.T, b []byte) pcp.Response {
	t.Helper()
	if b == nil {
		t.Fatal("no reply")
	}
	r, err := pcp.ParseResponse(b)
	if err != nil {
		t.Fatalf("reply % x: %v", b, err)
	}
	return r
}

// COMPAT C1: tailscale's probe.
func TestPCPAnnounce(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	b := mustExchange(t, c, r.addrs[0], pcp.Request{Op: pcp.OpAnnounce, Client: c.addr()}.AppendTo(nil))
	if resp := parsePCP(t, b); len(b) != 24 || resp.Result != pcp.Success || resp.Op != pcp.OpAnnounce {
		t.Fatalf("got %d bytes %+v, want a 24-byte SUCCESS", len(b), resp)
	}
}

// COMPAT C2, C9: 60-byte replies echoing nonce, protocol and port;
// retransmission gives the same port.
func TestPCPMap(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	req := mapReq(c.addr(), 17, 5000, 6000, 3600).AppendTo(nil)
	b := mustExchange(t, c, r.addrs[0], req)
	resp := parsePCP(t, b)
	if len(b) != 60 || resp.Result != pcp.Success {
		t.Fatalf("got %d bytes %+v, want 60 bytes SUCCESS", len(b), resp)
	}
	if resp.Nonce != nonce || resp.Protocol != 17 || resp.InternalPort != 5000 || resp.ExternalPort != 6000 ||
		resp.ExternalAddr.Unmap() != ext || resp.Lifetime != 3600 {
		t.Fatalf("got %+v, want echo and 6000 on %v for 3600 s", resp, ext)
	}
	again := parsePCP(t, mustExchange(t, c, r.addrs[0], req))
	if again.ExternalPort != 6000 || r.svc.Len() != 1 {
		t.Fatalf("retransmission: port %d, %d mappings; want 6000, 1", again.ExternalPort, r.svc.Len())
	}
}

// COMPAT C2, C6, C7: errors carry the MAP body; lifetimes by kind.
func TestPCPErrors(t *testing.T) {
	r := newRig(t, rigOpts{maxPerClient: 1})
	c := newClient(t, "127.0.0.1")
	tests := []struct {
		name     string
		req      pcp.Request
		want     pcp.ResultCode
		longLife bool
	}{
		{"privileged internal port", mapReq(c.addr(), 6, 22, 22, 3600), pcp.NotAuthorized, true},
		{"all protocols", mapReq(c.addr(), 0, 5000, 0, 3600), pcp.NotAuthorized, true},
		{"all ports", mapReq(c.addr(), 6, 0, 0, 3600), pcp.NotAuthorized, true},
		{"unknown protocol", mapReq(c.addr(), 132, 5000, 0, 3600), pcp.UnsuppProtocol, true},
		{"address mismatch", mapReq(netip.MustParseAddr("127.9.9.9"), 6, 5000, 0, 3600), pcp.AddressMismatch, true},
		{"third party not allowed", func() pcp.Request {
			q := mapReq(c.addr(), 6, 5000, 0, 3600)
			q.Options.ThirdParty = netip.MustParseAddr("127.0.0.9")
			return q
		}(), pcp.NotAuthorized, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mustExchange(t, c, r.addrs[0], tc.req.AppendTo(nil))
			resp := parsePCP(t, b)
			if len(b) != 60 || resp.Result != tc.want || resp.Nonce != nonce || resp.InternalPort != tc.req.InternalPort {
				t.Fatalf("got %d bytes %+v, want 60 bytes %v echoing the request", len(b), resp, tc.want)
			}
			if tc.longLife != (resp.Lifetime > 30) {
				t.Fatalf("got error lifetime %d", resp.Lifetime)
			}
		})
	}
	mustExchange(t, c, r.addrs[0], mapReq(c.addr(), 6, 5000, 0, 3600).AppendTo(nil))
	resp := parsePCP(t, mustExchange(t, c, r.addrs[0], mapReq(c.addr(), 6, 5001, 0, 3600).AppendTo(nil)))
	if resp.Result != pcp.UserExQuota || resp.Lifetime != 30 {
		t.Fatalf("quota: got %v lifetime %d, want USER_EX_QUOTA with a 30 s lifetime", resp.Result, resp.Lifetime)
	}
	if r.svc.Len() != 1 {
		t.Fatalf("refusals left %d mappings, want 1", r.svc.Len())
	}
}

// COMPAT C4: suggestions are hints unless PREFER_FAILURE.
func TestPCPSuggestionsAndPreferFailure(t *testing.T) {
	r := newRig(t, rigOpts{})
	a := newClient(t, "127.0.0.1")
	b := newClient(t, "127.0.0.2")
	mustExchange(t, a, r.addrs[0], mapReq(a.addr(), 6, 5000, 6000, 3600).AppendTo(nil))
	hint := mapReq(b.addr(), 6, 5000, 6000, 3600)
	hint.SuggestedAddr = netip.MustParseAddr("198.51.100.1") // foreign: ignored
	if resp := parsePCP(t, mustExchange(t, b, r.addrs[0], hint.AppendTo(nil))); resp.Result != pcp.Success || resp.ExternalPort == 6000 {
		t.Fatalf("hint: got %+v, want success on another port", resp)
	}
	strict := mapReq(b.addr(), 6, 5001, 6000, 3600)
	strict.Options.PreferFailure = true
	resp := parsePCP(t, mustExchange(t, b, r.addrs[0], strict.AppendTo(nil)))
	if resp.Result != pcp.CannotProvideExternal {
		t.Fatalf("PREFER_FAILURE: got %v, want CANNOT_PROVIDE_EXTERNAL", resp.Result)
	}
}

// COMPAT C5: a delete with another nonce from the same host is accepted.
func TestPCPDeleteWithNewNonce(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	mustExchange(t, c, r.addrs[0], mapReq(c.addr(), 17, 5000, 0, 3600).AppendTo(nil))
	del := mapReq(c.addr(), 17, 5000, 0, 0)
	del.Nonce[0] ^= 0xff
	resp := parsePCP(t, mustExchange(t, c, r.addrs[0], del.AppendTo(nil)))
	if resp.Result != pcp.Success || resp.Lifetime != 0 || r.svc.Len() != 0 {
		t.Fatalf("got %+v with %d mappings, want success and none left", resp, r.svc.Len())
	}
}

func TestPCPThirdPartyWhenAllowed(t *testing.T) {
	r := newRig(t, rigOpts{thirdParty: true})
	c := newClient(t, "127.0.0.1")
	q := mapReq(c.addr(), 6, 5000, 0, 3600)
	q.Options.ThirdParty = netip.MustParseAddr("127.0.0.9")
	resp := parsePCP(t, mustExchange(t, c, r.addrs[0], q.AppendTo(nil)))
	if resp.Result != pcp.Success || resp.Options.ThirdParty.Unmap() != q.Options.ThirdParty {
		t.Fatalf("got %+v, want success echoing THIRD_PARTY", resp)
	}
	ms := r.svc.List(mapping.Filter{})
	if len(ms) != 1 || ms[0].Internal.Addr() != q.Options.ThirdParty {
		t.Fatalf("got %v, want a mapping to the third party", ms)
	}
}

// PEER makes a mapping restricted to the peer; lifetime 0 removes it.
func TestPCPPeer(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	peer := pcp.Request{Op: pcp.OpPeer, Lifetime: 600, Client: c.addr(), Nonce: nonce, Protocol: 17,
		InternalPort: 5000, SuggestedPort: 5000, RemotePort: 3478, RemoteAddr: netip.MustParseAddr("198.51.100.7")}
	b := mustExchange(t, c, r.addrs[0], peer.AppendTo(nil))
	resp := parsePCP(t, b)
	if len(b) != 80 || resp.Result != pcp.Success || resp.RemotePort != 3478 {
		t.Fatalf("got %d bytes %+v, want an 80-byte SUCCESS echoing the peer", len(b), resp)
	}
	ms := r.svc.List(mapping.Filter{})
	if len(ms) != 1 || ms[0].Remote != peer.RemoteAddr {
		t.Fatalf("got %v, want one mapping restricted to the peer", ms)
	}
	peer.Lifetime = 0
	if resp := parsePCP(t, mustExchange(t, c, r.addrs[0], peer.AppendTo(nil))); resp.Result != pcp.Success || r.svc.Len() != 0 {
		t.Fatalf("PEER delete: got %v with %d mappings left", resp.Result, r.svc.Len())
	}
}

// COMPAT C8: other versions get UNSUPP_VERSION carrying version 2.
func TestPCPUnsupportedVersion(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	req := mapReq(c.addr(), 6, 5000, 0, 3600).AppendTo(nil)
	req[0] = 1
	b := mustExchange(t, c, r.addrs[0], req)
	if b[0] != 2 || b[3] != byte(pcp.UnsuppVersion) {
		t.Fatalf("got % x, want version 2 and UNSUPP_VERSION", b[:4])
	}
}
