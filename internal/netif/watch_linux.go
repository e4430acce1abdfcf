package netif

import (
	"context"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
)

// settle is how long WatchAddrs waits after an address event for more:
// a DHCP renewal or a PPPoE reconnect changes several addresses at once.
const settle = 200 * time.Millisecond

// WatchAddrs calls changed after addresses were added to or removed from
// any interface (rtnetlink RTNLGRP_IPV4_IFADDR and _IPV6_IFADDR), once per
// burst, until ctx ends. changed runs on WatchAddrs's goroutine, never
// twice at once. When the subscription breaks (the socket's buffer
// overran, say) it subscribes again and calls changed, since events may
// have been missed. It returns an error only when it cannot subscribe at
// all.
func WatchAddrs(ctx context.Context, changed func(), log *slog.Logger) error {
	sub := func() (chan netlink.AddrUpdate, error) {
		ch := make(chan netlink.AddrUpdate, 64)
		err := netlink.AddrSubscribeWithOptions(ch, ctx.Done(), netlink.AddrSubscribeOptions{
			ErrorCallback: func(err error) {
				if ctx.Err() == nil { // at the end the library reports its closed socket
					log.Warn("address watch: netlink error", "err", err)
				}
			},
		})
		return ch, err
	}
	ch, err := sub()
	if err != nil {
		return err
	}
	go func() {
		timer := time.NewTimer(settle)
		timer.Stop() // armed by the first event (Go 1.23 timers: nothing stale to drain)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-ch:
				if ok {
					timer.Reset(settle)
					continue
				}
				// The library closes ch when the subscription fails.
				for ctx.Err() == nil {
					if ch, err = sub(); err == nil {
						break
					}
					log.Warn("address watch: cannot subscribe again; retrying", "err", err)
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
				}
				timer.Reset(settle)
			case <-timer.C:
				changed()
			}
		}
	}()
	return nil
}
