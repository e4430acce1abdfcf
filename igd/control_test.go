package igd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/igd/soap"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
)

func TestFaultCode(t *testing.T) {
	tests := []struct {
		err    error
		v1, v2 int
	}{
		{mapping.ErrConflict, 718, 718},
		{mapping.ErrNotAuthorized, 718, 606},
		{mapping.ErrNoResources, 501, 728},
		{mapping.ErrQuota, 501, 728},
		{mapping.ErrNotFound, 714, 714},
		{mapping.ErrInvalid, 402, 402},
		{mapping.ErrNetworkFailure, 501, 501},
		{mapping.ErrUnsupported, 501, 501},
		{errors.New("backend exploded"), 501, 501},
		{fmt.Errorf("wrapped: %w", soap.NewFault(713)), 713, 713},
	}
	for _, tt := range tests {
		err := fmt.Errorf("portmap: %w", tt.err)
		if got := faultCode(err, false); got != tt.v1 {
			t.Errorf("faultCode(%v, v1) = %d, want %d", tt.err, got, tt.v1)
		}
		if got := faultCode(err, true); got != tt.v2 {
			t.Errorf("faultCode(%v, v2) = %d, want %d", tt.err, got, tt.v2)
		}
	}
}

// TestAddPortMappingErrors covers every error AddPortMapping can answer,
// in both namespaces.
func TestAddPortMappingErrors(t *testing.T) {
	h := newHarness(t, options{policy: func(c *policy.Config) { c.MaxPerClient = 3 }})
	wantOK(t, h.add(t, hostB, nsV1, "TCP", 5000, 5000, "0"))
	base := map[string]string{
		"NewRemoteHost": "", "NewExternalPort": "6000", "NewProtocol": "TCP", "NewInternalPort": "6000",
		"NewInternalClient": hostA.String(), "NewEnabled": "1", "NewPortMappingDescription": "x", "NewLeaseDuration": "0",
	}
	tests := []struct {
		name   string
		change map[string]string
		v1, v2 int // 0 = success
	}{
		{"ok", nil, 0, 0},
		{"conflict with another host", map[string]string{"NewExternalPort": "5000"}, 718, 718},
		{"privileged external port", map[string]string{"NewExternalPort": "80"}, 718, 606},
		{"privileged internal port", map[string]string{"NewInternalPort": "22"}, 718, 606},
		{"internal client is the router", map[string]string{"NewInternalClient": "127.0.0.1"}, 718, 606},
		{"internal client another host (secure mode)", map[string]string{"NewInternalClient": "127.0.0.9"}, 718, 606},
		{"internal client a name", map[string]string{"NewInternalClient": "printer.lan"}, 402, 402},
		{"internal client IPv6", map[string]string{"NewInternalClient": "::1"}, 402, 402},
		{"internal client empty is the requester", map[string]string{"NewInternalClient": ""}, 0, 0},
		{"external port wildcard", map[string]string{"NewExternalPort": "0"}, 716, 716},
		{"internal port wildcard", map[string]string{"NewInternalPort": "0"}, 402, 732},
		{"bad protocol", map[string]string{"NewProtocol": "SCTP"}, 402, 402},
		{"bad external port", map[string]string{"NewExternalPort": "70000"}, 402, 402},
		{"remote host a name", map[string]string{"NewRemoteHost": "example.com"}, 402, 402},
		{"garbage lease is no 402", map[string]string{"NewLeaseDuration": "-5"}, 0, 0},
		{"huge lease is no 402", map[string]string{"NewLeaseDuration": "99999999999"}, 0, 0},
		{"protocol in lower case", map[string]string{"NewProtocol": "tcp"}, 0, 0},
	}
	for i, tt := range tests {
		for _, ns := range []string{nsV1, nsV2} {
			want := tt.v1
			if ns == nsV2 {
				want = tt.v2
			}
			t.Run(fmt.Sprintf("%s/%s", tt.name, ns[len(ns)-1:]), func(t *testing.T) {
				var args []string
				for k, v := range base {
					if c, ok := tt.change[k]; ok {
						v = c
					}
					if k == "NewExternalPort" && tt.change[k] == "" {
						v = fmt.Sprint(6000 + i) // a port of its own
					}
					args = append(args, k, v)
				}
				r := h.soapCall(t, hostA, ns, "AddPortMapping", args...)
				if want == 0 {
					wantOK(t, r)
					if !strings.Contains(r.body, `<u:AddPortMappingResponse xmlns:u="`+ns+`"></u:AddPortMappingResponse>`) {
						t.Errorf("response does not echo %s: %s", ns, r.body)
					}
					h.soapCall(t, hostA, ns, "DeletePortMapping", "NewRemoteHost", "", "NewExternalPort", fmt.Sprint(6000+i), "NewProtocol", "TCP")
					return
				}
				wantFault(t, r, want)
			})
		}
	}
}

func TestQuota(t *testing.T) {
	h := newHarness(t, options{policy: func(c *policy.Config) { c.MaxPerClient = 1 }})
	wantOK(t, h.add(t, hostA, nsV1, "UDP", 7000, 7000, "60"))
	wantFault(t, h.add(t, hostA, nsV1, "UDP", 7001, 7001, "60"), 501)
	wantFault(t, h.add(t, hostA, nsV2, "UDP", 7001, 7001, "60"), 728)
	// A renewal does not count against the quota (COMPAT M1).
	wantOK(t, h.add(t, hostA, nsV2, "UDP", 7000, 7000, "60"))
}

func TestLeases(t *testing.T) {
	h := newHarness(t, options{})
	tests := []struct {
		ns, lease string
		port      int
		want      string
	}{
		{nsV1, "0", 8000, "0"}, // permanent (COMPAT M2)
		{nsV1, "3600", 8001, "3600"},
		{nsV2, "0", 8002, "604800"},
		{nsV2, "700000", 8003, "604800"},
		{nsV2, "3600", 8004, "3600"},
		{nsV1, "700000", 8005, "700000"}, // v1 has no upper bound; policy would cap
	}
	for _, tt := range tests {
		wantOK(t, h.add(t, hostA, tt.ns, "TCP", tt.port, tt.port, tt.lease))
		r := h.soapCall(t, hostA, tt.ns, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", fmt.Sprint(tt.port), "NewProtocol", "TCP")
		wantOK(t, r)
		if got := r.arg("NewLeaseDuration"); got != tt.want {
			t.Errorf("%s lease %s: got NewLeaseDuration %s, want %s", tt.ns, tt.lease, got, tt.want)
		}
	}
	// The remaining lease is reported, not the granted one (miniupnp#466).
	h.clk.Advance(600 * time.Second)
	r := h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry", "NewExternalPort", "8001", "NewProtocol", "TCP")
	if got := r.arg("NewLeaseDuration"); got != "3000" {
		t.Errorf("after 600s: got NewLeaseDuration %s, want 3000", got)
	}
	if got := r.arg("NewInternalClient"); got != hostA.String() {
		t.Errorf("got NewInternalClient %s, want %s", got, hostA)
	}
}

// TestPermanentLeaseEndsAtTheCap: a v1 "permanent" lease (0) is stored
// with the administrator's cap (COMPAT M2), so the mapping of a host that
// vanished without deleting it does not stay open for ever: it reports the
// remaining time and is gone once the cap has passed.
func TestPermanentLeaseEndsAtTheCap(t *testing.T) {
	const week = 7 * 24 * time.Hour
	h := newHarness(t, options{policy: func(c *policy.Config) {
		c.Lifetime[mapping.KindIGD] = policy.Lifetimes{Max: week}
	}})
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 8100, 8100, "0"))
	r := h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "8100", "NewProtocol", "TCP")
	wantOK(t, r)
	if got := r.arg("NewLeaseDuration"); got != "604800" {
		t.Errorf("capped permanent lease: got NewLeaseDuration %s, want 604800", got)
	}
	h.clk.Advance(week - time.Second)
	wantOK(t, h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "8100", "NewProtocol", "TCP"))
	h.clk.Advance(time.Second)
	wantFault(t, h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "8100", "NewProtocol", "TCP"), 714)
	if n := len(h.be.State()); n != 0 {
		t.Errorf("after the cap: %d mappings left in the backend, want 0", n)
	}
}

func TestAddPortMappingSemantics(t *testing.T) {
	h := newHarness(t, options{})
	// Refresh is idempotent; the same client moving the internal port replaces (M1).
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 9000, 9000, "60"))
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 9000, 9000, "60"))
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 9000, 9001, "60"))
	r := h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry", "NewExternalPort", "9000", "NewProtocol", "TCP")
	if got := r.arg("NewInternalPort"); got != "9001" {
		t.Errorf("got NewInternalPort %s, want 9001", got)
	}
	// NewEnabled=0 removes the caller's mapping.
	wantOK(t, h.soapCall(t, hostA, nsV1, "AddPortMapping", "NewExternalPort", "9000", "NewProtocol", "TCP",
		"NewInternalPort", "9001", "NewEnabled", "0"))
	wantFault(t, h.soapCall(t, hostA, nsV1, "GetSpecificPortMappingEntry", "NewExternalPort", "9000", "NewProtocol", "TCP"), 714)
	// A remote host is part of the key.
	wantOK(t, h.soapCall(t, hostA, nsV2, "AddPortMapping", "NewRemoteHost", "198.51.100.7", "NewExternalPort", "9100",
		"NewProtocol", "UDP", "NewInternalPort", "9100", "NewLeaseDuration", "60", "NewPortMappingDescription", "bad&#10;name"))
	r = h.soapCall(t, hostB, nsV2, "GetSpecificPortMappingEntry", "NewRemoteHost", "198.51.100.7", "NewExternalPort", "9100", "NewProtocol", "UDP")
	wantOK(t, r)
	if got := r.arg("NewPortMappingDescription"); got != "badname" {
		t.Errorf("got description %q, want control characters stripped", got)
	}
	wantFault(t, h.soapCall(t, hostB, nsV2, "GetSpecificPortMappingEntry", "NewExternalPort", "9100", "NewProtocol", "UDP"), 714)
}

func TestDeletePortMapping(t *testing.T) {
	h := newHarness(t, options{})
	wantOK(t, h.add(t, hostA, nsV1, "UDP", 10000, 10000, "0"))
	del := func(src netip.Addr, ns string, port int) reply {
		return h.soapCall(t, src, ns, "DeletePortMapping", "NewRemoteHost", "", "NewExternalPort", fmt.Sprint(port), "NewProtocol", "UDP")
	}
	wantFault(t, del(hostA, nsV1, 10001), 714)
	wantFault(t, del(hostA, nsV2, 10001), 714)
	wantFault(t, del(hostB, nsV1, 10000), 718) // another host's, secure mode (M4)
	wantFault(t, del(hostB, nsV2, 10000), 606)
	wantOK(t, del(hostA, nsV1, 10000))
	wantFault(t, del(hostA, nsV1, 10000), 714)
}

func TestAddAnyPortMapping(t *testing.T) {
	h := newHarness(t, options{})
	wantOK(t, h.add(t, hostB, nsV2, "UDP", 41641, 41641, "60"))
	any := func(ns string, ext int, lease string) reply {
		return h.soapCall(t, hostA, ns, "AddAnyPortMapping", "NewRemoteHost", "", "NewExternalPort", fmt.Sprint(ext),
			"NewProtocol", "UDP", "NewInternalPort", "41641", "NewInternalClient", hostA.String(),
			"NewEnabled", "1", "NewPortMappingDescription", "tailscale-portmap", "NewLeaseDuration", lease)
	}
	r := any(nsV2, 41641, "0")
	wantOK(t, r)
	got := r.arg("NewReservedPort")
	if got == "41641" || got == "0" {
		t.Fatalf("got NewReservedPort %s for a port another host holds", got)
	}
	// Renewal keeps the port; a privileged hint still gets an allowed port.
	if r := any(nsV1, 41641, "60"); r.arg("NewReservedPort") != got {
		t.Errorf("renewal: got NewReservedPort %s, want %s", r.arg("NewReservedPort"), got)
	}
	r = h.soapCall(t, hostA, nsV2, "AddAnyPortMapping", "NewExternalPort", "80", "NewProtocol", "TCP",
		"NewInternalPort", "8080", "NewLeaseDuration", "60")
	wantOK(t, r)
	if p := r.arg("NewReservedPort"); p == "80" || p == "<missing>" {
		t.Errorf("got NewReservedPort %s for hint 80", p)
	}
	r = h.soapCall(t, hostA, nsV2, "GetSpecificPortMappingEntry", "NewExternalPort", got, "NewProtocol", "UDP")
	if l := r.arg("NewLeaseDuration"); l != "60" {
		t.Errorf("got lease %s, want 60", l)
	}
}

func TestPortMappingRange(t *testing.T) {
	h := newHarness(t, options{})
	for p := 11000; p < 11003; p++ {
		wantOK(t, h.add(t, hostA, nsV2, "TCP", p, p, "600"))
	}
	wantOK(t, h.add(t, hostB, nsV2, "TCP", 11003, 11003, "600"))
	list := func(src netip.Addr, manage string, n string) reply {
		return h.soapCall(t, src, nsV2, "GetListOfPortMappings", "NewStartPort", "11000", "NewEndPort", "11010",
			"NewProtocol", "TCP", "NewManage", manage, "NewNumberOfPorts", n)
	}
	for _, tt := range []struct {
		manage, n string
		want      int
	}{{"0", "0", 3}, {"1", "0", 4}, {"0", "2", 2}} {
		r := list(hostA, tt.manage, tt.n)
		wantOK(t, r)
		if got := strings.Count(r.body, "<p:PortMappingEntry>"); got != tt.want {
			t.Errorf("manage %s n %s: got %d entries, want %d", tt.manage, tt.n, got, tt.want)
		}
		if !strings.Contains(r.body, "<NewPortListing><![CDATA[<?xml") {
			t.Errorf("listing not in CDATA: %s", r.body)
		}
	}
	rng := func(start, end string) reply {
		return h.soapCall(t, hostA, nsV2, "DeletePortMappingRange", "NewStartPort", start, "NewEndPort", end, "NewProtocol", "TCP", "NewManage", "1")
	}
	wantFault(t, rng("11010", "11000"), 733)
	wantOK(t, rng("11000", "11010"))
	wantFault(t, rng("11000", "11010"), 730)
	// Only the caller's own mappings went, whatever NewManage said.
	if got := h.svc.List(mapping.Filter{Proto: mapping.TCP}); len(got) != 1 || got[0].Client != hostB {
		t.Errorf("left %v, want only host B's mapping", got)
	}
	wantFault(t, list(hostA, "0", "0"), 730)
}

// TestGetGenericEnumeration walks every mapping, UPnP and NAT-PMP alike,
// until 713 (COMPAT M5).
func TestGetGenericEnumeration(t *testing.T) {
	h := newHarness(t, options{})
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 12000, 12000, "0"))
	wantOK(t, h.add(t, hostB, nsV2, "UDP", 12001, 12001, "3600"))
	for i, c := range []netip.Addr{netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5")} {
		_, err := h.svc.Map(context.Background(), mapping.Request{
			Client: c, Proto: mapping.UDP, Internal: netip.AddrPortFrom(c, 5000),
			Suggest: netip.AddrPortFrom(netip.Addr{}, uint16(13000+i)), Lifetime: time.Hour,
			Origin: mapping.Origin{Kind: mapping.KindNATPMP},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for i := 0; ; i++ {
		r := h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", fmt.Sprint(i))
		if r.status != 200 {
			wantFault(t, r, 713)
			break
		}
		got = append(got, r.arg("NewProtocol")+" "+r.arg("NewExternalPort")+" "+r.arg("NewInternalClient")+" "+r.arg("NewPortMappingDescription"))
		if i > 10 {
			t.Fatal("no 713")
		}
	}
	want := []string{
		"TCP 12000 127.0.0.2 test",
		"UDP 12001 127.0.0.3 test",
		"UDP 13000 127.0.0.4 NAT-PMP 13000 udp",
		"UDP 13001 127.0.0.5 NAT-PMP 13001 udp",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("enumeration:\ngot  %q\nwant %q", got, want)
	}
	// A renewal does not change the generation, but the lease is fresh.
	h.clk.Advance(time.Minute)
	wantOK(t, h.add(t, hostB, nsV2, "UDP", 12001, 12001, "3600"))
	r := h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", "1")
	if l := r.arg("NewLeaseDuration"); l != "3600" {
		t.Errorf("renewed lease: got %s, want 3600", l)
	}
	wantFault(t, h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", "70000"), 713)
	wantFault(t, h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", "x"), 402)
}

// fullLists counts the Mapper's Keys calls and unfiltered List calls:
// the listing snapshots GetGenericPortMappingEntry takes.
type fullLists struct {
	*portmap.Service
	n *atomic.Int64
}

func (f fullLists) List(flt mapping.Filter) []mapping.Mapping {
	if flt == (mapping.Filter{}) {
		f.n.Add(1)
	}
	return f.Service.List(flt)
}

func (f fullLists) Keys() []mapping.Key {
	f.n.Add(1)
	return f.Service.Keys()
}

// TestListingSnapshotReleased: a walk over the indexes shares one
// snapshot, which is dropped once no walk has used it for listingIdle (it
// holds a copy of every mapping) and rebuilt with the same indexes when a
// walk comes back.
func TestListingSnapshotReleased(t *testing.T) {
	var lists atomic.Int64
	h := newHarness(t, options{config: func(c *Config) { c.Mapper = fullLists{c.Mapper.(*portmap.Service), &lists} }})
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 12000, 12000, "0"))
	wantOK(t, h.add(t, hostA, nsV1, "UDP", 12001, 12001, "0"))
	entry := func(i int) string {
		t.Helper()
		r := h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", strconv.Itoa(i))
		wantOK(t, r)
		return r.arg("NewProtocol") + " " + r.arg("NewExternalPort")
	}
	held := func() bool {
		h.srv.listing.mu.Lock()
		defer h.srv.listing.mu.Unlock()
		return h.srv.listing.keys != nil
	}
	first := []string{entry(0), entry(1)}
	if n := lists.Load(); n != 1 {
		t.Fatalf("walk of 2 entries took %d snapshots, want 1", n)
	}
	// Each use keeps the snapshot another listingIdle.
	h.clk.Advance(listingIdle - time.Second)
	entry(0)
	h.clk.Advance(listingIdle - time.Second)
	if !held() || lists.Load() != 1 {
		t.Fatalf("snapshot used %v ago dropped (held %v, %d snapshots)", listingIdle-time.Second, held(), lists.Load())
	}
	h.clk.Advance(time.Second)
	if held() {
		t.Fatalf("snapshot still held %v after its last use", listingIdle)
	}
	if got := []string{entry(0), entry(1)}; !slices.Equal(got, first) || lists.Load() != 2 {
		t.Errorf("walk after the release: %q in %d snapshots, want %q in 2", got, lists.Load(), first)
	}
}

// TestListingCloseCancelsRelease: closing the Server drops the snapshot
// and its pending release, which would otherwise keep the Server
// reachable for listingIdle.
func TestListingCloseCancelsRelease(t *testing.T) {
	h := newHarness(t, options{})
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 12000, 12000, "0"))
	before := h.clk.Pending()
	wantOK(t, h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", "0"))
	if got := h.clk.Pending(); got != before+1 {
		t.Fatalf("%d timers after a listing, want %d (one release)", got, before+1)
	}
	h.srv.Close()
	if got := h.clk.Pending(); got != before {
		t.Errorf("%d timers after Close, want %d: the release is still pending", got, before)
	}
	h.srv.listing.mu.Lock()
	defer h.srv.listing.mu.Unlock()
	if h.srv.listing.keys != nil {
		t.Error("Close kept the listing snapshot")
	}
}

// noWAN is a Mapper whose WAN address is unknown.
type noWAN struct{ mapping.Mapper }

func (noWAN) ExternalAddr() netip.Addr { return netip.Addr{} }

func TestStatusActions(t *testing.T) {
	h := newHarness(t, options{config: func(c *Config) {
		c.Stats = func() (uint64, uint64, uint64, uint64, error) { return 1<<32 + 5, 7, 8, 9, nil }
	}})
	down := newHarness(t, options{config: func(c *Config) { c.Mapper = noWAN{c.Mapper} }})
	gone := newHarness(t, options{config: func(c *Config) {
		c.Stats = func() (uint64, uint64, uint64, uint64, error) {
			return 0, 0, 0, 0, errors.New(`interface "ppp0": link not found`)
		}
	}})
	wantOK(t, h.add(t, hostA, nsV1, "TCP", 14000, 14000, "0"))
	h.clk.Advance(90 * time.Second)
	const cfgNS = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
	const l3fNS = "urn:schemas-upnp-org:service:Layer3Forwarding:1"
	const ctlNS = "urn:schemas-upnp-org:control-1-0"
	ipc := description.WANIPConnectionControl
	tests := []struct {
		name              string
		h                 *harness
		path, ns, action  string
		args              []string
		code              int
		outName, outValue string
	}{
		{"external IP", h, ipc, nsV1, "GetExternalIPAddress", nil, 0, "NewExternalIPAddress", "203.0.113.2"},
		{"external IP unknown is empty", down, ipc, nsV2, "GetExternalIPAddress", nil, 0, "NewExternalIPAddress", ""},
		{"status", h, ipc, nsV1, "GetStatusInfo", nil, 0, "NewConnectionStatus", "Connected"},
		{"status error", h, ipc, nsV1, "GetStatusInfo", nil, 0, "NewLastConnectionError", "ERROR_NONE"},
		{"uptime", h, ipc, nsV1, "GetStatusInfo", nil, 0, "NewUptime", "90"},
		{"status down", down, ipc, nsV1, "GetStatusInfo", nil, 0, "NewConnectionStatus", "Disconnected"},
		{"connection type", h, ipc, nsV1, "GetConnectionTypeInfo", nil, 0, "NewConnectionType", "IP_Routed"},
		{"set connection type", h, ipc, nsV1, "SetConnectionType", []string{"NewConnectionType", "IP_Routed"}, 0, "", ""},
		{"set other connection type", h, ipc, nsV1, "SetConnectionType", []string{"NewConnectionType", "IP_PPPoE"}, 731, "", ""},
		{"NAT enabled", h, ipc, nsV2, "GetNATRSIPStatus", nil, 0, "NewNATEnabled", "1"},
		{"RSIP", h, ipc, nsV2, "GetNATRSIPStatus", nil, 0, "NewRSIPAvailable", "0"},
		{"request connection", h, ipc, nsV1, "RequestConnection", nil, 606, "", ""},
		{"force termination", h, ipc, nsV2, "ForceTermination", nil, 606, "", ""},
		{"unknown action", h, ipc, nsV1, "GetPortMappingNumberOfEntries", nil, 401, "", ""},
		{"query status", h, ipc, ctlNS, "QueryStateVariable", []string{"varName", "ConnectionStatus"}, 0, "return", "Connected"},
		{"query IP", h, ipc, ctlNS, "QueryStateVariable", []string{"varName", "ExternalIPAddress"}, 0, "return", "203.0.113.2"},
		{"query entries", h, ipc, ctlNS, "QueryStateVariable", []string{"varName", "PortMappingNumberOfEntries"}, 0, "return", "1"},
		{"query unknown", h, ipc, ctlNS, "QueryStateVariable", []string{"varName", "Nope"}, 404, "", ""},
		{"link", h, description.WANCommonInterfaceConfigControl, cfgNS, "GetCommonLinkProperties", nil, 0, "NewPhysicalLinkStatus", "Up"},
		{"link type", h, description.WANCommonInterfaceConfigControl, cfgNS, "GetCommonLinkProperties", nil, 0, "NewWANAccessType", "Ethernet"},
		{"link down", down, description.WANCommonInterfaceConfigControl, cfgNS, "GetCommonLinkProperties", nil, 0, "NewPhysicalLinkStatus", "Down"},
		{"bytes sent wrap", h, description.WANCommonInterfaceConfigControl, cfgNS, "GetTotalBytesSent", nil, 0, "NewTotalBytesSent", "5"},
		{"bytes received", h, description.WANCommonInterfaceConfigControl, cfgNS, "GetTotalBytesReceived", nil, 0, "NewTotalBytesReceived", "7"},
		{"packets sent", h, description.WANCommonInterfaceConfigControl, cfgNS, "GetTotalPacketsSent", nil, 0, "NewTotalPacketsSent", "8"},
		{"packets received", h, description.WANCommonInterfaceConfigControl, cfgNS, "GetTotalPacketsReceived", nil, 0, "NewTotalPacketsReceived", "9"},
		{"no counters", down, description.WANCommonInterfaceConfigControl, cfgNS, "GetTotalBytesSent", nil, 501, "", ""},
		{"WAN interface gone", gone, description.WANCommonInterfaceConfigControl, cfgNS, "GetTotalPacketsReceived", nil, 501, "", ""},
		{"IP action on the wrong URL", h, description.WANCommonInterfaceConfigControl, cfgNS, "AddPortMapping", nil, 401, "", ""},
		{"default connection", h, description.Layer3ForwardingControl, l3fNS, "GetDefaultConnectionService", nil, 0,
			"NewDefaultConnectionService", testDevice.UDNs[2] + ":WANConnectionDevice:1,urn:upnp-org:serviceId:WANIPConn1"},
		{"set default connection", h, description.Layer3ForwardingControl, l3fNS, "SetDefaultConnectionService",
			[]string{"NewDefaultConnectionService", "x"}, 402, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.h.soapTo(t, hostA, tt.path, tt.ns, tt.action, tt.args...)
			if tt.code != 0 {
				wantFault(t, r, tt.code)
				return
			}
			wantOK(t, r)
			if !strings.Contains(r.body, `<u:`+tt.action+`Response xmlns:u="`+tt.ns+`">`) {
				t.Errorf("response element does not echo %s: %s", tt.ns, r.body)
			}
			if tt.outName != "" {
				if got := r.arg(tt.outName); got != tt.outValue {
					t.Errorf("got %s %q, want %q", tt.outName, got, tt.outValue)
				}
			}
		})
	}
}

// bigTable is a Mapper whose table holds n mappings, for listings.
type bigTable struct {
	mapping.Mapper
	list []mapping.Mapping
}

func (b bigTable) List(mapping.Filter) []mapping.Mapping { return b.list }

// TestListingBeyond65535: NewPortMappingIndex is a ui2 on paper, but a
// table may hold more mappings (NAT-PMP and PCP ones count too). Every
// one must be reachable and the index past the end must be 713: before,
// indexes were clamped to 65,535, so a client walking until 713 got entry
// 65,535 again and again and never stopped.
func TestListingBeyond65535(t *testing.T) {
	const n = 65_600
	list := make([]mapping.Mapping, n)
	for i := range list {
		proto, port := mapping.TCP, 1024+i
		if port > 65535 {
			proto, port = mapping.UDP, port-65535+1023
		}
		list[i] = mapping.Mapping{Key: mapping.Key{Proto: proto, External: netip.AddrPortFrom(extAddr, uint16(port))},
			Internal: netip.AddrPortFrom(hostA, uint16(port)), Client: hostA, Origin: mapping.Origin{Kind: mapping.KindNATPMP}}
	}
	h := newHarness(t, options{config: func(c *Config) { c.Mapper = bigTable{Mapper: c.Mapper, list: list} }})
	get := func(i int) reply {
		return h.soapCall(t, hostA, nsV1, "GetGenericPortMappingEntry", "NewPortMappingIndex", strconv.Itoa(i))
	}
	last := get(n - 1)
	wantOK(t, last)
	if last.arg("NewProtocol") != "UDP" || last.arg("NewExternalPort") != "2111" {
		t.Errorf("entry %d is %s %s, want UDP 2111: indexes are clamped", n-1, last.arg("NewProtocol"), last.arg("NewExternalPort"))
	}
	wantFault(t, get(n), 713)
}
