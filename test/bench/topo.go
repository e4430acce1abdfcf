package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the topology in the package comment. berthd gets the
// TEST-NET-3 WAN of the e2e suite; miniupnpd refuses reserved external
// addresses, so its WAN is 11.22.33.0/24, which exists only inside the
// namespaces made here.
var (
	routerLAN = netip.MustParseAddr("192.168.77.1")
	lanHost   = netip.MustParseAddr("192.168.77.10")
	berthWAN  = wanNet{router: netip.MustParseAddr("203.0.113.2"), host: netip.MustParseAddr("203.0.113.1")}
	miniWAN   = wanNet{router: netip.MustParseAddr("11.22.33.2"), host: netip.MustParseAddr("11.22.33.1")}
)

// lanBits is the LAN prefix length: the /16 holds the pool of client
// addresses, 192.168.80.0/20, routed to the LAN host and local on its lo.
const (
	lanBits  = 16
	poolNet  = "192.168.80.0/20"
	poolSize = 4000 // below berthd's rate limiter table (4096 clients)
)

type wanNet struct{ router, host netip.Addr }

// poolAddr is the i-th client address: 192.168.80.1 onwards, skipping
// the .0 and .255 of every /24 (i modulo poolSize).
func poolAddr(i int) netip.Addr {
	i %= poolSize
	b := [4]byte{192, 168, byte(80 + i/254), byte(i%254 + 1)}
	return netip.AddrFrom4(b)
}

// topology is three namespaces; deleting them removes the veths too.
type topology struct {
	lan, router, wan string
	wanNet           wanNet
}

// newTopology builds the namespaces, named prefix-lan, -rtr and -wan. On
// error it removes what it made.
func newTopology(ctx context.Context, prefix string, w wanNet) (_ *topology, err error) {
	t := &topology{lan: prefix + "-lan", router: prefix + "-rtr", wan: prefix + "-wan", wanNet: w}
	var made []string
	defer func() {
		if err != nil {
			for _, ns := range made {
				ipCmd(context.Background(), "netns", "del", ns)
			}
		}
	}()
	for _, ns := range []string{t.lan, t.router, t.wan} {
		if out, err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return nil, fmt.Errorf("ip netns add %s: %w: %s", ns, err, out)
		}
		made = append(made, ns)
	}
	l, r, wn := t.lan, t.router, t.wan
	lanLen := fmt.Sprintf("/%d", lanBits)
	steps := [][]string{
		{"-n", l, "link", "set", "lo", "up"},
		{"-n", r, "link", "set", "lo", "up"},
		{"-n", wn, "link", "set", "lo", "up"},
		{"-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", l},
		{"-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", wn},
		{"-n", r, "addr", "add", routerLAN.String() + lanLen, "dev", "lan0"},
		{"-n", r, "addr", "add", w.router.String() + "/24", "dev", "wan0"},
		{"-n", l, "addr", "add", lanHost.String() + lanLen, "dev", "lan0"},
		{"-n", wn, "addr", "add", w.host.String() + "/24", "dev", "wan0"},
		// On lo the whole pool prefix is local: the clients send from any
		// address in it (IP_PKTINFO) without 4,000 addresses and without
		// 4,000 neighbour entries on the router.
		{"-n", l, "addr", "add", poolNet, "dev", "lo"},
		{"-n", r, "link", "set", "lan0", "up"},
		{"-n", r, "link", "set", "wan0", "up"},
		{"-n", l, "link", "set", "lan0", "up"},
		{"-n", wn, "link", "set", "wan0", "up"},
		{"-n", l, "route", "add", "default", "via", routerLAN.String()},
		{"-n", r, "route", "add", poolNet, "via", lanHost.String()},
		{"-n", r, "route", "add", "default", "via", w.host.String()},
		{"netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if out, err := ipCmd(ctx, s...); err != nil {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	return t, nil
}

// close deletes the namespaces; it must run even when ctx has ended.
func (t *topology) close() error {
	var errs []error
	for _, ns := range []string{t.lan, t.router, t.wan} {
		if out, err := ipCmd(context.Background(), "netns", "del", ns); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", ns, err, out))
		}
	}
	return errors.Join(errs...)
}

// ipCmd runs ip(8) with a time limit.
func ipCmd(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

// nsCmd returns a command that runs name in namespace ns; ip netns exec
// execs it, so the process is name itself.
func nsCmd(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGTERM}
	return cmd
}

// inNS calls f on an OS thread switched into namespace ns, so that the
// sockets f creates belong to ns (a socket keeps the namespace it was
// made in). It runs on a goroutine of its own: when the thread cannot be
// switched back, the goroutine exits locked and the runtime discards the
// thread.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", ns, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", ns, err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// checkNetns reports why this process cannot build the topology, or nil.
func checkNetns(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it creates network namespaces (sudo go run ./test/bench)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip(8) not found: install the Debian package iproute2")
	}
	if out, err := ipCmd(ctx, "netns", "list"); err != nil {
		return fmt.Errorf("ip netns does not work here: %w: %s", err, out)
	}
	name := fmt.Sprintf("bb%d-probe", os.Getpid())
	if out, err := ipCmd(ctx, "netns", "add", name); err != nil {
		return fmt.Errorf("cannot create a network namespace: %w: %s", err, out)
	}
	if out, err := ipCmd(context.Background(), "netns", "del", name); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, out)
	}
	return nil
}
