package main

import (
	"fmt"

	"github.com/ti-mo/conntrack"
)

// notrackRules keep the benchmark's own control traffic (NAT-PMP, PCP,
// SSDP, HTTP and the ceiling's echo to the router's LAN address) out of
// the router's conntrack table. Without them every pool address and
// client socket leaves an entry, the table grows to tens of thousands,
// and berthd, which dumps the whole table on every delete, measures the
// table instead of itself. The table's effect is measured on its own,
// with entries made on purpose (fillConntrack).
var notrackRules = fmt.Sprintf(`table ip bench {
	chain pre { type filter hook prerouting priority raw; iifname "lan0" ip daddr %[1]s notrack; }
	chain out { type filter hook output priority raw; oifname "lan0" ip saddr %[1]s notrack; }
}
`, routerLAN)

// fillConntrack adds n UDP entries between the WAN host and the router's
// WAN address (to port 9, which no mapping uses) to the conntrack table
// of namespace ns, as forwarded traffic of a busy router would.
func fillConntrack(ns string, w wanNet, n int) error {
	c, err := dialConntrack(ns)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range n {
		f := conntrack.NewFlow(17, 0, w.host, w.router, uint16(10000+i%50000), uint16(9+i/50000), 600, 0)
		if err := c.Create(f); err != nil {
			return fmt.Errorf("conntrack: create entry %d: %w", i, err)
		}
	}
	return nil
}

// flushConntrack empties the conntrack table of namespace ns.
func flushConntrack(ns string) error {
	c, err := dialConntrack(ns)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Flush()
}

func dialConntrack(ns string) (*conntrack.Conn, error) {
	var c *conntrack.Conn
	err := inNS(ns, func() error {
		var err error
		c, err = conntrack.Dial(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("conntrack in %s: %w", ns, err)
	}
	return c, nil
}
