// Package tailscale runs Tailscale's port-mapping client,
// tailscale.com/net/portmapper, against a real berthd: it probes, maps a
// UDP port, renews the mapping and releases it, over NAT-PMP and over PCP
// (COMPAT.md: tailscale's 250 ms probe window, N3 exact sizes, N5 the
// renewal keeps the port, N6 delete with the old port suggested, C1
// ANNOUNCE, C2 60-byte MAP replies, C5 a new nonce per request).
//
// It is a module of its own so that tailscale.com and what it needs stay
// out of berth's go.mod; internal packages cannot be imported from here,
// so berthd runs as a process, built from the repository (replace in
// go.mod).
//
// The client always talks to port 5351 and sends from the address its
// route picks, and berthd serves only its LAN prefixes (never loopback),
// so the test builds three network namespaces joined by veth pairs:
//
//	  ns lan: the client         ns router: berthd                ns wan
//	+--------------------+     +------------------------+     +----------------+
//	| lan0               |     | lan0 192.168.77.1/24   |     | wan0           |
//	| 192.168.77.2/24    |-----|   :5351 NAT-PMP + PCP  |-----| 203.0.113.1/24 |
//	| default via .1     |     | wan0 203.0.113.2/24    |     | (sends to the  |
//	| UDP :P (mapped)    |     |   external address,    |     |  mapping)      |
//	+--------------------+     |   relay backend        |     +----------------+
//	                           +------------------------+
//
// berthd runs in router with -wan wan0 -lan lan0 and with NAT-PMP and PCP
// lifetimes capped at a few seconds, so the client renews during the test.
// The client runs in lan: the test binary re-executes itself there (ip
// netns exec) and takes one command per line on stdin, answering each
// with a JSON line. A second re-execution in wan sends datagrams to the
// mapped external port, which must reach the client's socket.
//
// The test needs root and iproute2; it skips without them unless
// BERTH_E2E=1, which makes that a failure.
package tailscale

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"tailscale.com/net/portmapper/portmappertype"
)

// TestMain runs a helper instead of the tests when the parent test
// re-executes this binary inside a namespace.
func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case roleClient:
		os.Exit(runClient(os.Stdin, os.Stdout, os.Stderr))
	case roleSend:
		os.Exit(runSend(os.Stderr))
	}
	os.Exit(m.Run())
}

// lifetime caps NAT-PMP and PCP leases in berthd's configuration: the
// client asks for 7200 s and renews at half the granted lifetime.
const lifetime = 6 * time.Second

func TestPortmapper(t *testing.T) {
	topo := newTopology(t)
	d := startBerthd(t, topo, buildBerthd(t))

	t.Run("probe", func(t *testing.T) {
		t.Parallel()
		c := startClient(t, topo, "")
		got := *c.do(t, opProbe, "").Probe
		// UPnP is switched off in the client: berth has no IGD yet.
		want := portmappertype.ProbeResult{PCP: true, PMP: true}
		if got != want {
			t.Errorf("Probe: got %+v, want %+v", got, want)
		}
	})
	for _, proto := range []string{"pmp", "pcp"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			testMapRenewRelease(t, topo, d, proto)
		})
	}
}

// testMapRenewRelease has a client that speaks only proto ("pmp" or
// "pcp") map a port, renew it and release it, and checks each step in
// berthd's log and on the wire.
func testMapRenewRelease(t *testing.T, topo *topology, d *berthd, proto string) {
	c := startClient(t, topo, proto)
	internal := netip.AddrPortFrom(clientLAN, c.localPort)
	isOurs := func(l logLine) bool { return l.addrPort("internal") == internal }

	probe := *c.do(t, opProbe, "").Probe
	if seen := map[string]bool{"pmp": probe.PMP, "pcp": probe.PCP}[proto]; !seen {
		t.Fatalf("Probe: got %+v, want %s seen", probe, proto)
	}

	m := *c.do(t, opMap, "").Mapping
	if m.Type != proto {
		t.Errorf("mapping type: got %q, want %q", m.Type, proto)
	}
	if m.External.Addr() != routerWAN || m.External.Port() == 0 {
		t.Fatalf("external address: got %v, want %v and a port", m.External, routerWAN)
	}
	created := d.wait(t, "mapping created", isOurs)
	if got := created.keyExternal(); got != m.External {
		t.Errorf("berthd created %v, client was told %v\n%s", got, m.External, created.raw)
	}
	if got := created.addr("client"); got != clientLAN {
		t.Errorf("berthd's client: got %v, want %v\n%s", got, clientLAN, created.raw)
	}

	// From here on the client asks for its mapping every 100 ms, as
	// magicsock does, and renews it at half its lifetime.
	c.do(t, opKeep, "")

	// The mapping carries traffic: a datagram from the WAN side to the
	// external port reaches the socket whose port was mapped.
	topo.send(t, m.External, proto+" first")
	c.do(t, opRecv, proto+" first")

	// The first renewal comes at least lifetime/2 after the mapping was
	// made and the second lifetime/2 later: by then the first lease is
	// over, and the mapping must live on, on the same port.
	for _, l := range d.waitN(t, 2, "mapping renewed", isOurs) {
		if got := l.keyExternal(); got != m.External {
			t.Errorf("berthd renewed %v, want %v\n%s", got, m.External, l.raw)
		}
	}
	if l := d.find("mapping expired", isOurs); len(l) > 0 {
		t.Fatalf("the mapping expired although renewed:\n%s", l[0].raw)
	}
	topo.send(t, m.External, proto+" after renewals")
	c.do(t, opRecv, proto+" after renewals")

	// The client stops polling after its next renewal, so none is in
	// flight when it releases the mapping.
	st := c.do(t, opStop, "")
	if st.Mapping.External != m.External || st.Lost {
		t.Errorf("renewals moved or lost the mapping: %v at first, %v at last (lost %v)",
			m.External, st.Mapping.External, st.Lost)
	}
	if st.Renewals < 3 || !st.Mapping.GoodUntil.After(m.GoodUntil) {
		t.Errorf("client renewed %d times, good until %v (first %v); want at least 3, later",
			st.Renewals, st.Mapping.GoodUntil, m.GoodUntil)
	}

	c.do(t, opClose, "")
	deleted := d.wait(t, "mapping deleted", isOurs)
	if got := deleted.keyExternal(); got != m.External {
		t.Errorf("berthd deleted %v, want %v\n%s", got, m.External, deleted.raw)
	}
	if n := len(d.find("mapping created", isOurs)); n != 1 {
		t.Errorf("berthd created %d mappings for %v, want 1 (a renewal must not re-create)", n, internal)
	}
	if l := d.find("mapping expired", isOurs); len(l) > 0 {
		t.Errorf("the mapping expired:\n%s", l[0].raw)
	}
}
