package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/google/nftables"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/backend/nft"
	"github.com/berthd/berth/internal/backend/relay"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/netif"
)

// chooseBackend is the one place that picks a backend: nft when asked,
// or for "auto" when berthd runs as root on a kernel with nf_tables;
// otherwise the relay, with the reason logged.
func chooseBackend(cfg *config.Config, det netif.Detected, ext netip.Addr, clk clock.Clock, o Options, log *slog.Logger) (backend.Backend, string, error) {
	open := o.OpenNft
	if open == nil {
		open = func(det netif.Detected, log *slog.Logger) (backend.Backend, error) {
			return openNft(det, cfg, log)
		}
	}
	switch cfg.Backend {
	case "nft":
		be, err := open(det, log)
		if err != nil {
			return nil, "", fmt.Errorf("daemon: backend nft: %w", err)
		}
		return be, "nft", nil
	case "auto", "":
		be, err := open(det, log)
		if err == nil {
			log.Info("backend auto: choosing nft", "table", nft.DefaultTable)
			return be, "nft", nil
		}
		log.Info("backend auto: choosing relay", "why", err.Error())
	case "relay":
	default:
		return nil, "", fmt.Errorf("daemon: unknown backend %q", cfg.Backend)
	}
	rc := relay.Config{Clock: clk, Logger: log}
	if ext.IsValid() && !isLocal(det, ext) {
		// The external address belongs to a device upstream (1:1 NAT):
		// traffic for it arrives on the WAN interface's own address.
		rc.Listen = netip.IPv4Unspecified()
		if ext.Is6() {
			rc.Listen = netip.IPv6Unspecified()
		}
		log.Info("relay listens on every address", "why", "external address is not on this host", "external", ext)
	}
	return relay.New(rc), "relay", nil
}

// openNft creates berth's nftables table.
func openNft(det netif.Detected, cfg *config.Config, log *slog.Logger) (backend.Backend, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("not running as root")
	}
	conn, port, err := nft.Dial(0)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	n, err := nft.New(nft.Config{Conn: conn, PortID: port, WANInterface: det.WAN.Name, Hairpin: cfg.NFT.Hairpin,
		PreserveSourcePort: cfg.NFT.PreserveSourcePort, Logger: log, Adopt: keepKernel(cfg)})
	if err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("nf_tables: %w", err)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("0")) {
		log.Warn("IPv4 forwarding is off: mapped traffic will not reach the LAN; set net.ipv4.ip_forward=1")
	}
	return &nftCloser{Nft: n, conn: conn}, nil
}

// nftCloser removes the table, then closes the netlink connection the
// backend does not own.
type nftCloser struct {
	*nft.Nft
	conn *nftables.Conn
}

func (c *nftCloser) Close() error {
	err := c.Nft.Close()
	return errors.Join(err, c.conn.CloseLasting())
}

// Release leaves the table in the kernel (store.keep_kernel_state) and
// closes the netlink connection.
func (c *nftCloser) Release() error {
	err := c.Nft.Release()
	return errors.Join(err, c.conn.CloseLasting())
}

// Interface guard.
var _ backend.Backend = (*nftCloser)(nil)
