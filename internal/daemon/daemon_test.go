package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/logtest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/netif"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/internal/porttest"
)

// loopback serves 127.0.0.0/8 as both WAN and LAN.
func loopback(string, []string) (netif.Detected, error) {
	lo := netif.Interface{Name: "lo", Index: 1, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}}
	return netif.Detected{
		WAN: lo, ExternalAddr: netip.MustParseAddr("127.0.0.1"),
		LAN: []netif.Interface{lo}, LANPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ServeWAN: true, Notes: []string{"test: loopback"},
	}, nil
}

// echoServer accepts TCP on 127.0.0.1 and echoes; it stops with the test.
func echoServer(t *testing.T) netip.AddrPort { return echoServerOn(t, "127.0.0.1") }

// echoServerOn is echoServer on another loopback address.
func echoServerOn(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	return porttest.Free(t, "tcp", netip.MustParseAddr("127.0.0.1"))
}

func writeConfig(t *testing.T, path string, forwards map[string][2]string) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("backend = \"relay\"\n[upnp]\nenabled = false\n")
	for name, f := range forwards {
		fmt.Fprintf(&b, "[[forward]]\nname = %q\nproto = \"tcp\"\nexternal_port = %s\ninternal = %q\n", name, f[0], f[1])
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(clock.Real{}.Now().Add(5 * time.Second)) // real sockets need a real deadline
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("got %q back", buf)
	}
	return nil
}

// TestStaticForwardCarriesTrafficAndReloads runs the daemon on loopback
// with the relay backend: a static forward really carries TCP, SIGHUP's
// reload adds a second one, and stopping removes them.
func TestStaticForwardCarriesTrafficAndReloads(t *testing.T) {
	echo := echoServer(t)
	ext1, ext2 := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "berth.toml")
	writeConfig(t, path, map[string][2]string{"one": {fmt.Sprint(ext1), echo.String()}})
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	var logs logtest.Buffer
	ready := make(chan *portmap.Service, 1)
	reload := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{
			PortControlPort: freeUDPPort(t), OpenNft: noNft,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Detect: loopback,
			Ready:  func(s *portmap.Service) { ready <- s },
			Reload: reload,
			Reread: func() (*config.Config, error) { return config.Load(path) },
		})
	}()
	var svc *portmap.Service
	select {
	case svc = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready within 10s")
	}
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", ext1)); err != nil {
		t.Fatalf("through static forward: %v", err)
	}
	writeConfig(t, path, map[string][2]string{
		"one": {fmt.Sprint(ext1), echo.String()},
		"two": {fmt.Sprint(ext2), echo.String()},
	})
	reload <- struct{}{}
	if !waitFor(func() bool { return len(svc.List(mapping.Filter{Kind: mapping.KindStatic})) == 2 }) {
		t.Fatal("reload did not add the second forward")
	}
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", ext2)); err != nil {
		t.Fatalf("through reloaded forward: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop within 10s")
	}
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", ext1)); err == nil {
		t.Fatal("forward still open after stop")
	}
}

// A reload must not reserve the relay's own listening sockets: a NAT-PMP
// style renewal after SIGHUP keeps its port.
func TestReloadKeepsRenewalsOnTheirPort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.toml")
	writeConfig(t, path, nil)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	ready := make(chan *portmap.Service, 1)
	reload := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{PortControlPort: freeUDPPort(t), OpenNft: noNft, Logger: slog.New(slog.DiscardHandler), Detect: loopback,
			Ready: func(s *portmap.Service) { ready <- s }, Reload: reload,
			Reread: func() (*config.Config, error) { return config.Load(path) }})
	}()
	var svc *portmap.Service
	select {
	case svc = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	}
	host := netip.MustParseAddr("127.0.0.10")
	r := mapping.Request{Client: host, Proto: mapping.TCP, Internal: netip.AddrPortFrom(host, 5000),
		Lifetime: time.Hour, Origin: mapping.Origin{Kind: mapping.KindNATPMP}}
	m, err := svc.Map(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	// The channel holds one: the third send goes through only once Run
	// has taken the second, that is, after the first reload completed.
	for range 3 {
		reload <- struct{}{}
	}
	again, err := svc.Map(ctx, r)
	if err != nil || again.External != m.External {
		t.Fatalf("renewal after reload: got %v, %v; want %v", again.External, err, m.External)
	}
	cancel()
	<-done
}

func TestStartsWithoutExternalAddress(t *testing.T) {
	noAddr := func(w string, l []string) (netif.Detected, error) {
		d, err := loopback(w, l)
		d.ExternalAddr = netip.Addr{}
		return d, err
	}
	startAndStop(t, noAddr, slog.New(slog.DiscardHandler))
}

// startAndStop runs the daemon on detect's interfaces, without UPnP, until
// it serves, and stops it; either failing fails t.
func startAndStop(t *testing.T, detect func(string, []string) (netif.Detected, error), log *slog.Logger) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *portmap.Service, 1)
	done := make(chan error, 1)
	cfg := config.Default()
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	cfg.UPnP.Enabled = false
	go func() {
		done <- Run(ctx, cfg, Options{PortControlPort: freeUDPPort(t), OpenNft: noNft, Logger: log, Detect: detect,
			Ready: func(s *portmap.Service) { ready <- s }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended before serving: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestStaticForwardOnBusyPortFailsCleanly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := netip.MustParseAddrPort(busy.Addr().String()).Port()
	path := filepath.Join(t.TempDir(), "berth.toml")
	writeConfig(t, path, map[string][2]string{"busy": {fmt.Sprint(port), "127.0.0.1:9"}})
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
	err = Run(context.Background(), cfg, Options{PortControlPort: freeUDPPort(t), OpenNft: noNft, Logger: slog.New(slog.DiscardHandler), Detect: loopback})
	if !errors.Is(err, backend.ErrPortUnavailable) {
		t.Fatalf("got %v, want ErrPortUnavailable", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(fmt.Sprint(port))) {
		t.Fatalf("error %v does not name port %d", err, port)
	}
}

// noNft stands for a machine without nf_tables (or not root): tests never
// touch the host's ruleset.
func noNft(netif.Detected, *slog.Logger) (backend.Backend, error) {
	return nil, errors.New("test: no nf_tables here")
}

// TestBackendChoice: "auto" falls back to the relay with its reason, "nft"
// fails without nf_tables, and Options.Backend hears the backend chosen
// (berthd sizes its scheduler by it) before the daemon serves.
func TestBackendChoice(t *testing.T) {
	var chosen []string
	run := func(backendName string, open func(netif.Detected, *slog.Logger) (backend.Backend, error)) (string, error) {
		chosen = nil
		cfg := config.Default()
		cfg.Store.Dir = t.TempDir() // never the host's /var/lib/berth
		cfg.Backend = backendName
		cfg.UPnP.Enabled = false
		var logs logtest.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan *portmap.Service, 1)
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, cfg, Options{PortControlPort: freeUDPPort(t), OpenNft: open, Detect: loopback,
				Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
				Backend: func(name string) { chosen = append(chosen, name) },
				Ready:   func(s *portmap.Service) { ready <- s }})
		}()
		select {
		case <-ready:
			cancel()
			err := <-done // Run has stopped logging
			return logs.String(), err
		case err := <-done:
			cancel()
			return logs.String(), err
		}
	}
	logs, err := run("auto", noNft)
	if err != nil || !strings.Contains(logs, "backend auto: choosing relay") || !strings.Contains(logs, "no nf_tables here") {
		t.Fatalf("auto without nft: err %v; logs lack the relay choice and its reason:\n%s", err, logs)
	}
	if !slices.Equal(chosen, []string{"relay"}) {
		t.Errorf("auto without nft: Options.Backend heard %q, want [relay]", chosen)
	}
	if _, err := run("nft", noNft); err == nil || !strings.Contains(err.Error(), "no nf_tables here") {
		t.Fatalf("nft without nft: got %v, want the reason", err)
	}
	if len(chosen) != 0 {
		t.Errorf("nft without nft: Options.Backend heard %q, want nothing", chosen)
	}
	withNft := func(netif.Detected, *slog.Logger) (backend.Backend, error) { return &fake.Backend{}, nil }
	if logs, err := run("auto", withNft); err != nil || !slices.Equal(chosen, []string{"nft"}) {
		t.Errorf("auto with nft: err %v, Options.Backend heard %q, want [nft]; log:\n%s", err, chosen, logs)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(cond func() bool) bool {
	for range 200 {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	return porttest.Free(t, "udp", netip.MustParseAddr("127.0.0.1"))
}

// TestRestoreGivesMemoryBack: a start that restored leases hands the
// restore's garbage back to the system once it serves (Options.FreeMemory);
// a start with nothing to restore has nothing to give back.
func TestRestoreGivesMemoryBack(t *testing.T) {
	dir := t.TempDir() // never the host's /var/lib/berth
	host := netip.MustParseAddr("127.0.0.10")
	r := mapping.Request{Client: host, Proto: mapping.TCP, Internal: netip.AddrPortFrom(host, 5000),
		Lifetime: time.Hour, Origin: mapping.Origin{Kind: mapping.KindNATPMP}}
	// run starts berthd on dir, calls with its Service, stops it and
	// returns how often it gave memory back.
	run := func(with func(*portmap.Service)) int {
		t.Helper()
		cfg := config.Default()
		cfg.Store.Dir = dir
		cfg.UPnP.Enabled = false
		cfg.Backend = "relay"
		var frees int
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ready := make(chan *portmap.Service, 1)
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, cfg, Options{PortControlPort: freeUDPPort(t), OpenNft: noNft, Logger: slog.New(slog.DiscardHandler), Detect: loopback,
				Ready: func(s *portmap.Service) { ready <- s }, FreeMemory: func() { frees++ }})
		}()
		select {
		case s := <-ready:
			with(s)
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return frees
	}
	var m mapping.Mapping
	if n := run(func(s *portmap.Service) {
		var err error
		if m, err = s.Map(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a start with an empty store gave memory back %d times, want 0", n)
	}
	var restored []mapping.Mapping
	if n := run(func(s *portmap.Service) { restored = s.List(mapping.Filter{Client: host}) }); n != 1 {
		t.Errorf("a start that restored a lease gave memory back %d times, want 1", n)
	}
	if len(restored) != 1 || restored[0].Key != m.Key {
		t.Errorf("restored %v, want the mapping %v", restored, m.Key)
	}
}

// Serving the WAN is warned about only where the internet reaches it
// (lan naming the WAN; Detect refuses to choose it by itself), not on the
// private, loopback or documentation addresses of a lab machine.
func TestWarnsWhenServingARoutableWAN(t *testing.T) {
	const warning = "serving the WAN interface as LAN on an address the internet reaches"
	for _, c := range []struct {
		name  string
		extra string // a prefix added to the served ones
		warn  bool
	}{
		{"loopback", "", false},
		{"documentation prefix", "192.0.2.0/24", false},
		{"public prefix", "84.17.3.0/24", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			detect := func(w string, l []string) (netif.Detected, error) {
				d, err := loopback(w, l)
				if c.extra != "" {
					d.LANPrefixes = append(d.LANPrefixes, netip.MustParsePrefix(c.extra))
				}
				return d, err
			}
			var logs logtest.Buffer
			startAndStop(t, detect, slog.New(slog.NewTextHandler(&logs, nil)))
			if got := strings.Contains(logs.String(), warning); got != c.warn {
				t.Errorf("warning logged: %t, want %t; log:\n%s", got, c.warn, logs.String())
			}
		})
	}
}
