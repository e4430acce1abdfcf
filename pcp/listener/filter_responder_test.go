package listener_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/pcp"
)

// filter4 is a FILTER option (RFC 6887 §13.3) for one IPv4 host: its
// Prefix Length counts the 96 bits of the IPv4-mapped prefix.
func filter4(addr string, port uint16) pcp.Filter {
	return pcp.Filter{PrefixLen: 128, RemotePort: port, RemoteAddr: netip.MustParseAddr(addr)}
}

// noFilter is the FILTER with Prefix Length 0: "no filter", which removes
// all previous filters (§13.3).
var noFilter = pcp.Filter{PrefixLen: 0, RemoteAddr: netip.IPv4Unspecified()}

func peers4(addrPorts ...string) *mapping.Peers {
	ps := make([]mapping.Peer, len(addrPorts))
	for i, s := range addrPorts {
		ap := netip.MustParseAddrPort(s)
		ps[i] = mapping.Peer{Prefix: netip.PrefixFrom(ap.Addr(), 32), Port: ap.Port()}
	}
	return mapping.NewPeers(ps...)
}

// onlyMapping returns the rig's single mapping, as the Service lists it
// and as the backend holds it.
func onlyMapping(t *testing.T, r *rig) mapping.Mapping {
	t.Helper()
	ms, st := r.svc.List(mapping.Filter{}), r.be.State()
	if len(ms) != 1 || len(st) != 1 {
		t.Fatalf("Service lists %v, backend holds %v; want one mapping", ms, st)
	}
	if !st[0].Peers.Equal(ms[0].Peers) {
		t.Fatalf("backend holds peers %v, Service %v", st[0].Peers, ms[0].Peers)
	}
	return ms[0]
}

// TestPCPFilter walks one mapping through the FILTER life cycle: stored
// and echoed, kept by a renewal without FILTER, added to, replaced after a
// Prefix Length 0, and cleared by a Prefix Length 0 alone.
func TestPCPFilter(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	steps := []struct {
		name        string
		filters     []pcp.Filter
		want        *mapping.Peers // nil: no filter
		wantBackend bool           // the change reaches the backend
	}{
		{name: "stored", filters: []pcp.Filter{filter4("198.51.100.7", 3478)},
			want: peers4("198.51.100.7:3478"), wantBackend: true},
		{name: "renewal without FILTER keeps it", want: peers4("198.51.100.7:3478")},
		{name: "same FILTER again is a renewal", filters: []pcp.Filter{filter4("198.51.100.7", 3478)},
			want: peers4("198.51.100.7:3478")},
		{name: "another FILTER adds", filters: []pcp.Filter{filter4("203.0.113.9", 0)},
			want: peers4("198.51.100.7:3478", "203.0.113.9:0"), wantBackend: true},
		{name: "prefix length 0 first replaces", filters: []pcp.Filter{filter4("198.51.100.8", 0), noFilter, filter4("192.0.2.1", 0)},
			want: peers4("192.0.2.1:0"), wantBackend: true},
		{name: "prefix length 0 clears", filters: []pcp.Filter{noFilter}, want: nil, wantBackend: true},
	}
	var port uint16
	for _, st := range steps {
		batches := len(r.be.Batches())
		q := mapReq(c.addr(), 17, 5000, 0, 3600)
		q.Options.Filters = st.filters
		resp := parsePCP(t, mustExchange(t, c, r.addrs[0], q.AppendTo(nil)))
		if resp.Result != pcp.Success {
			t.Fatalf("%s: got %v, want SUCCESS", st.name, resp.Result)
		}
		if port == 0 {
			port = resp.ExternalPort
		}
		if resp.ExternalPort != port {
			t.Fatalf("%s: mapping moved from %d to %d", st.name, port, resp.ExternalPort)
		}
		if !slices.Equal(resp.Options.Filters, st.filters) {
			t.Errorf("%s: reply carries FILTERs %v, want the request's %v", st.name, resp.Options.Filters, st.filters)
		}
		m := onlyMapping(t, r)
		if !m.Peers.Equal(st.want) || (st.want == nil) != (m.Peers == nil) {
			t.Errorf("%s: mapping has peers %v, want %v", st.name, m.Peers, st.want)
		}
		want := 0
		if st.wantBackend {
			want = 1
		}
		if got := len(r.be.Batches()) - batches; got != want {
			t.Errorf("%s: %d new backend batches, want %d", st.name, got, want)
		}
	}
}

// A mapping holds at most mapping.MaxPeers filters; more, even over
// several requests, is EXCESSIVE_REMOTE_PEERS (§13.3) and changes nothing.
func TestPCPFilterExcessiveRemotePeers(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	send := func(from, n int) pcp.Response {
		t.Helper()
		q := mapReq(c.addr(), 6, 5000, 0, 3600)
		for i := range n {
			q.Options.Filters = append(q.Options.Filters, pcp.Filter{PrefixLen: 128,
				RemoteAddr: netip.AddrFrom4([4]byte{198, 51, 100, byte(from + i)})})
		}
		return parsePCP(t, mustExchange(t, c, r.addrs[0], q.AppendTo(nil)))
	}
	per := pcp.MaxFilters
	for i := 0; i < mapping.MaxPeers; i += per {
		if resp := send(i, min(per, mapping.MaxPeers-i)); resp.Result != pcp.Success {
			t.Fatalf("filters %d..: got %v, want SUCCESS", i, resp.Result)
		}
	}
	resp := send(200, 1)
	if resp.Result != pcp.ExcessiveRemotePeers || len(resp.Options.Filters) != 0 {
		t.Fatalf("filter %d: got %v with FILTERs %v, want EXCESSIVE_REMOTE_PEERS without", mapping.MaxPeers+1,
			resp.Result, resp.Options.Filters)
	}
	if n := onlyMapping(t, r).Peers.Len(); n != mapping.MaxPeers {
		t.Fatalf("mapping has %d filters after the refusal, want %d", n, mapping.MaxPeers)
	}
}

// A delete carrying FILTER deletes the mapping and its filters.
func TestPCPFilterDelete(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := newClient(t, "127.0.0.1")
	q := mapReq(c.addr(), 17, 5000, 0, 3600)
	q.Options.Filters = []pcp.Filter{filter4("198.51.100.7", 0)}
	mustExchange(t, c, r.addrs[0], q.AppendTo(nil))
	q.Lifetime = 0
	resp := parsePCP(t, mustExchange(t, c, r.addrs[0], q.AppendTo(nil)))
	if resp.Result != pcp.Success || r.svc.Len() != 0 || len(r.be.State()) != 0 {
		t.Fatalf("got %v with %d mappings left, want SUCCESS and none", resp.Result, r.svc.Len())
	}
}
