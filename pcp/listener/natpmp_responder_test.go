package listener_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/natpmp"
)

func pmpMap(op natpmp.Opcode, internal, suggested uint16, life uint32) []byte {
	return natpmp.Request{Op: op, InternalPort: internal, SuggestedPort: suggested, Lifetime: life}.AppendTo(nil)
}

func parsePMP(t *testing.T, b []byte) natpmp.Response {
	t.Helper()
	if b == nil {
		t.Fatal("no reply")
	}
	r, err := natpmp.ParseResponse(b)
	if err != nil {
		t.Fatalf("reply % x: %v", b, err)
	}
	return r
}

// COMPAT N3, N9: exact sizes; public address request.
func TestNATPMPAddress(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	b, _ := c.exchange(r.addrs[0], natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil))
	if len(b) != 12 {
		t.Fatalf("got %d bytes, want 12", len(b))
	}
	if resp := parsePMP(t, b); resp.Result != natpmp.Success || resp.ExternalAddr != ext {
		t.Fatalf("got %+v, want success with %v", resp, ext)
	}
}

func TestNATPMPAddressUnknownIsNetworkFailure(t *testing.T) {
	r := newRig(t, rigOpts{ext: netip.IPv4Unspecified()})
	c := newClient(t, "127.0.0.1")
	b, _ := c.exchange(r.addrs[0], natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil))
	resp := parsePMP(t, b)
	if len(b) != 12 || resp.Result != natpmp.NetworkFailure {
		t.Fatalf("got %d bytes %+v, want 12 bytes, result 3", len(b), resp)
	}
}

// COMPAT N3, N4, N5, N7, C9: map, echo, renew to the same port, clamp,
// retransmission.
func TestNATPMPMapRenewAndRetransmit(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	req := pmpMap(natpmp.OpMapUDP, 5000, 6000, 30)
	b, _ := c.exchange(r.addrs[0], req)
	if len(b) != 16 {
		t.Fatalf("got %d bytes, want 16", len(b))
	}
	resp := parsePMP(t, b)
	if resp.Result != natpmp.Success || resp.InternalPort != 5000 || resp.ExternalPort != 6000 {
		t.Fatalf("got %+v, want success 5000->6000", resp)
	}
	if resp.Lifetime != 120 {
		t.Fatalf("got lifetime %d, want the 120 s minimum", resp.Lifetime)
	}
	again := parsePMP(t, mustExchange(t, c, r.addrs[0], req))
	if again.ExternalPort != 6000 || r.svc.Len() != 1 {
		t.Fatalf("retransmission: got port %d and %d mappings, want 6000 and 1", again.ExternalPort, r.svc.Len())
	}
	// Renewal with another suggested port keeps the mapping's port.
	renew := parsePMP(t, mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapUDP, 5000, 7000, 3600)))
	if renew.ExternalPort != 6000 || renew.Lifetime != 3600 {
		t.Fatalf("renewal: got %+v, want port 6000 lifetime 3600", renew)
	}
}

// COMPAT N6: delete ignores the suggested port and answers 0/0; internal
// port 0 deletes all of the protocol.
func TestNATPMPDelete(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 5000, 0, 3600))
	mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 5001, 0, 3600))
	mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapUDP, 5000, 0, 3600))
	del := parsePMP(t, mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 5000, 9999, 0)))
	if del.Result != natpmp.Success || del.InternalPort != 5000 || del.ExternalPort != 0 || del.Lifetime != 0 {
		t.Fatalf("delete: got %+v, want success, internal 5000, 0/0", del)
	}
	if n := len(r.svc.List(mapping.Filter{Proto: mapping.TCP})); n != 1 {
		t.Fatalf("got %d TCP mappings after delete, want 1", n)
	}
	// Deleting again still succeeds.
	if again := parsePMP(t, mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 5000, 0, 0))); again.Result != natpmp.Success {
		t.Fatalf("second delete: got %+v", again)
	}
	parsePMP(t, mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 0, 0, 0)))
	if n := len(r.svc.List(mapping.Filter{Proto: mapping.TCP})); n != 0 {
		t.Fatalf("got %d TCP mappings after delete-all, want 0", n)
	}
	if n := len(r.svc.List(mapping.Filter{Proto: mapping.UDP})); n != 1 {
		t.Fatalf("delete-all TCP removed UDP mappings: %d left, want 1", n)
	}
}

func TestNATPMPRefusals(t *testing.T) {
	r := newRig(t, rigOpts{maxPerClient: 1})
	c := newClient(t, "127.0.0.1")
	// Privileged internal port: default rules refuse.
	if resp := parsePMP(t, mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 22, 22, 3600))); resp.Result != natpmp.NotAuthorized {
		t.Fatalf("port 22: got %v, want NotAuthorized", resp.Result)
	}
	mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 5000, 0, 3600))
	b := mustExchange(t, c, r.addrs[0], pmpMap(natpmp.OpMapTCP, 5001, 0, 3600))
	if resp := parsePMP(t, b); len(b) != 16 || resp.Result != natpmp.OutOfResources || resp.InternalPort != 5001 {
		t.Fatalf("quota: got %d bytes %+v, want 16 bytes OutOfResources echoing 5001", len(b), resp)
	}
}

// COMPAT N2, N3: unsupported opcode and version.
func TestNATPMPUnsupported(t *testing.T) {
	r := newRig(t, rigOpts{noPCP: true})
	c := newClient(t, "127.0.0.1")
	b := mustExchange(t, c, r.addrs[0], []byte{0, 3})
	if resp := parsePMP(t, b); resp.Result != natpmp.UnsupportedOpcode {
		t.Fatalf("opcode 3: got %+v, want result 5", resp)
	}
	b = mustExchange(t, c, r.addrs[0], []byte{2, 0, 0, 0})
	if len(b) != 8 || b[0] != 0 || b[1] != 0x80 || b[3] != byte(natpmp.UnsupportedVersion) {
		t.Fatalf("version 2 without PCP: got % x, want the 8-byte unsupported-version reply", b)
	}
}

// COMPAT N11: responses are never answered.
func TestNATPMPDropsResponses(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	resp := natpmp.Response{Op: natpmp.OpAddress, Result: natpmp.Success, ExternalAddr: ext}.AppendTo(nil)
	if _, err := c.conn.WriteToUDPAddrPort(resp, r.addrs[0]); err != nil {
		t.Fatal(err)
	}
	waitStat(t, func() uint64 { return r.srv.Stats().Dropped }, 1)
	if r.srv.Stats().Answered != 0 {
		t.Fatal("a response was answered")
	}
}

// COMPAT N8: the epoch counts seconds on the Service's clock.
func TestNATPMPEpoch(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	r.clk.Advance(100 * time.Second)
	resp := parsePMP(t, mustExchange(t, c, r.addrs[0], natpmp.Request{Op: natpmp.OpAddress}.AppendTo(nil)))
	if resp.Epoch != 100 {
		t.Fatalf("got epoch %d, want 100", resp.Epoch)
	}
}

func mustExchange(t *testing.T, c *client, to netip.AddrPort, req []byte) []byte {
	t.Helper()
	b, _ := c.exchange(to, req)
	if b == nil {
		t.Fatalf("no reply to % x", req)
	}
	return b
}
