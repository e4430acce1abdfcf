package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

func peer(prefix string, port uint16) mapping.Peer {
	return mapping.Peer{Prefix: netip.MustParsePrefix(prefix), Port: port}
}

// TestFilter walks the filtered and allowed sets through Apply and Sync:
// overlapping filters become non-overlapping elements, a hand-made change
// is fixed by Sync, removing the filters or the mapping removes the
// elements.
func TestFilter(t *testing.T) {
	ctx := context.Background()
	n, ns := newNft(t, Config{})
	fweb := web
	fweb.Peers = mapping.NewPeers(
		peer("198.51.100.0/24", 0),
		peer("198.51.100.7/32", 3478),    // covered by the /24
		peer("203.0.113.0/24", 443),      // loses the /25 below
		peer("203.0.113.128/25", 0),      //
		peer("192.0.2.9/32", 0),          //
		peer("2001:db8::/32", 0),         // admits no IPv4 host
		peer("::ffff:192.0.2.77/128", 0), // IPv4-mapped: 192.0.2.77/32
	)
	fgame := game
	fgame.Peers = mapping.NewPeers(peer("2001:db8::/32", 0)) // admits nobody
	if err := n.Apply(ctx, add(fweb, fgame, ssh)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	golden(t, "filter", ns.ruleset(t, DefaultTable))
	want := ns.ruleset(t, DefaultTable)

	// Sync fixes hand-made changes to the sets.
	ns.run(t, "nft", "delete", "element", "ip", "berth", setAllowed, "{ 203.0.113.2 . tcp . 8080 . 192.0.2.9 . 0-65535 }")
	ns.run(t, "nft", "add", "element", "ip", "berth", setFiltered, "{ 203.0.113.2 . tcp . 2222 }")
	if err := n.Sync(ctx, []mapping.Mapping{fweb, fgame, ssh}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := ns.ruleset(t, DefaultTable); sortElements(got) != sortElements(want) {
		t.Errorf("after Sync:\n%s\nwant:\n%s", got, want)
	}

	// Removing the filters (an Add with Peers nil) removes the elements
	// and keeps the DNAT element (and its counter).
	if err := n.Apply(ctx, add(web, game)); err != nil {
		t.Fatalf("Apply without filters: %v", err)
	}
	got := ns.ruleset(t, DefaultTable)
	if strings.Contains(got, "elements = { 203.0.113.2 . tcp . 8080") || strings.Contains(got, "udp . 3074 }") {
		t.Errorf("filter elements left after removing the filters:\n%s", got)
	}
	// Filtering again, then deleting the mappings, removes them too.
	if err := n.Apply(ctx, add(fweb, fgame)); err != nil {
		t.Fatalf("Apply with filters: %v", err)
	}
	golden(t, "filter", ns.ruleset(t, DefaultTable))
	if err := n.Apply(ctx, del(fweb, fgame)); err != nil {
		t.Fatalf("Apply delete: %v", err)
	}
	golden(t, "filter_delete", ns.ruleset(t, DefaultTable))
	if err := n.Sync(ctx, []mapping.Mapping{ssh}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	golden(t, "filter_delete", ns.ruleset(t, DefaultTable))
}

func TestPeerRanges(t *testing.T) {
	got := peerRanges([]mapping.Peer{
		peer("10.0.0.0/8", 0), peer("10.1.0.0/16", 53), peer("10.1.0.0/16", 0),
		peer("192.0.2.0/24", 443), peer("192.0.2.64/26", 0), peer("192.0.2.64/26", 0),
	})
	var s []string
	for _, r := range got {
		s = append(s, r.prefix.String()+":"+itoa(r.portLo)+"-"+itoa(r.portHi))
	}
	want := "10.0.0.0/8:0-65535 192.0.2.128/25:443-443 192.0.2.0/26:443-443 192.0.2.64/26:0-65535"
	if strings.Join(s, " ") != want {
		t.Errorf("peerRanges = %s\nwant %s", strings.Join(s, " "), want)
	}
}

func itoa(v uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), v).String()[len("0.0.0.0:"):]
}
