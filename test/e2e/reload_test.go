package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestFirewallReload removes berth's nftables state from under it, as an
// administrator's `nft flush ruleset` or a firewall reload does: berthd
// must notice by itself and put every mapping back, so that traffic flows
// again without any client renewing.
func TestFirewallReload(t *testing.T) {
	topo, d := launchDurable(t)
	natpmpcGranted(t, topo, 33000, 33000, "udp", 3600, 3600)
	waitUDP(t, topo, ext(33000), 33000, true)
	for i, cmd := range [][]string{
		{"flush", "ruleset"},
		{"delete", "table", "ip", "berth"},
		{"flush", "table", "ip", "berth"},
	} {
		mustRun(t, 10*time.Second, topo.router, "nft", cmd...)
		waitUDP(t, topo, ext(33000), 33000, true)
		d.mu.Lock()
		n := 0
		for _, m := range d.msgs {
			if m == "firewall changed under berth; re-applying every mapping" {
				n++
			}
		}
		d.mu.Unlock()
		if n < i+1 {
			t.Fatalf("after nft %s: berthd logged %d re-applications, want %d", strings.Join(cmd, " "), n, i+1)
		}
	}
}
