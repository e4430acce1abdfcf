package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// buildBerthd builds ./cmd/berthd of the module in dir into out.
func buildBerthd(ctx context.Context, dir, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/berthd")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/berthd in %s: %w\n%s", dir, err, b)
	}
	return nil
}

// moduleRoot is the directory holding go.mod, from the current directory
// up.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/berthd/berth\n")) {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("run it inside the berth module (go run ./test/bench)")
		}
		d = p
	}
}

// proc is a daemon started in a namespace, its output going to a file.
// A daemon that forks into the background (miniupnpd without -d) is
// known by its PID file only and watched through /proc.
type proc struct {
	name string
	cmd  *exec.Cmd // nil for a daemon in the background
	pidv int
	log  string
	exit chan struct{}
	err  error
}

// startProc starts name in ns with its output in logFile.
func startProc(ns, logFile, name string, args ...string) (*proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := nsCmd(ns, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: filepath.Base(name), cmd: cmd, pidv: cmd.Process.Pid, log: logFile, exit: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exit)
	}()
	return p, nil
}

// startBackground starts name in ns, which forks into the background and
// writes its PID to pidFile.
func startBackground(ctx context.Context, ns, logFile, pidFile, name string, args ...string) (*proc, error) {
	os.Remove(pidFile)
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := nsCmd(ns, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = nil // the daemon outlives its parent by design
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	for ctx.Err() == nil {
		b, err := os.ReadFile(pidFile)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			p := &proc{name: filepath.Base(name), pidv: pid, log: logFile, exit: make(chan struct{})}
			go p.watch()
			return p, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("start %s: no PID in %s", name, pidFile)
}

// watch closes exit when the background process is gone.
func (p *proc) watch() {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pidv))
		// A zombie has exited too (it is nobody's child here).
		if err == nil && !strings.Contains(string(b), ") Z ") {
			continue
		}
		p.err = errors.New("exited")
		close(p.exit)
		return
	}
}

func (p *proc) pid() int { return p.pidv }

func (p *proc) signal(sig syscall.Signal) error {
	if p.cmd != nil {
		return p.cmd.Process.Signal(sig)
	}
	return syscall.Kill(p.pidv, sig)
}

func (p *proc) exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills. It returns how long
// the process took to exit after SIGTERM.
func (p *proc) stop(grace time.Duration) (time.Duration, error) {
	if p.exited() {
		return 0, fmt.Errorf("%s had already exited: %v", p.name, p.err)
	}
	t0 := clk.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exit:
		return clk.Now().Sub(t0), nil
	case <-t.C:
		p.signal(syscall.SIGKILL)
		<-p.exit
		return clk.Now().Sub(t0), fmt.Errorf("%s did not stop within %v after SIGTERM; killed", p.name, grace)
	}
}

// kill ends the process at once (cleanup after a failure).
func (p *proc) kill() {
	if !p.exited() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.exit:
		case <-time.After(10 * time.Second):
			p.signal(syscall.SIGKILL)
			<-p.exit
		}
	}
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rssKiB reads VmRSS of pid.
func rssKiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// berthConfig is berthd's configuration for the benchmark: nft, the LAN
// interface, quotas above the largest N and lifetimes longer than a run.
// A storeDir puts berthd's lease store there; off switches it off; with
// neither the configuration has no [store] table (for a berthd without
// one).
func berthConfig(storeDir string, off bool) string {
	s := `backend = "nft"
lan = ["lan0"]
wan = "wan0"

[log]
format = "json"
# warn: no log line per mapping; the benchmark measures the daemon, not
# its logger.
level = "warn"

[policy]
max_per_client = 200000
max_total = 200000

[policy.lifetime.natpmp]
max = "24h"

[policy.lifetime.pcp]
max = "24h"

[policy.lifetime.upnp]
max = "168h"

[upnp]
# No per-host request limit: each SOAP worker is one host at several
# hundred requests a second, and one host lists all N mappings. miniupnpd
# has no such limit either; the NAT-PMP and PCP load stays under theirs by
# spreading over 4,096 source addresses.
rate_limit = 0
`
	switch {
	case off:
		s += "\n[store]\nenabled = false\n"
	case storeDir != "":
		s += fmt.Sprintf("\n[store]\nenabled = true\ndir = %q\n", storeDir)
	}
	return s
}

// miniupnpdConfig is miniupnpd's configuration in the same topology.
func miniupnpdConfig(leaseFile string) string {
	s := `ext_ifname=wan0
listening_ip=lan0
http_port=2869
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
min_lifetime=120
max_lifetime=86400
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07d
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.0.0/16 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`
	if leaseFile != "" {
		s += "lease_file=" + leaseFile + "\n"
	}
	return s
}

// miniupnpdTables are the nft table and chains miniupnpd-nftables expects
// to exist (Debian's nft_init.sh would make them but sources a file the
// package does not ship; see test/captures/miniupnpd.sh).
const miniupnpdTables = `table inet filter {
	chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
	chain miniupnpd { }
	chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
	chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
	chain prerouting_miniupnpd { }
	chain postrouting_miniupnpd { }
}
`

// nftLoad loads a ruleset into namespace ns.
func nftLoad(ctx context.Context, ns, rules string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in %s: %w: %s", ns, err, out)
	}
	return nil
}

// waitServing polls with ready until it succeeds, the process exits or
// the timeout passes, and returns the time from since.
func waitServing(ctx context.Context, p *proc, since time.Time, timeout time.Duration, ready func() bool) (time.Duration, error) {
	for {
		if p.exited() {
			return 0, fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail(30))
		}
		if ready() {
			return clk.Now().Sub(since), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if clk.Now().Sub(since) > timeout {
			return 0, fmt.Errorf("%s not serving after %v\n%s", p.name, timeout, p.tail(30))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kernelMappings counts the mappings the daemon has installed in the
// kernel of namespace ns: elements of berth's DNAT map, or rules of
// miniupnpd's DNAT chain. The IGD cannot list more than 65,536 (its
// index is a ui2), so large tables are counted here.
func kernelMappings(ctx context.Context, ns, daemon string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := []string{"netns", "exec", ns, "nft", "-j", "list", "map", "ip", "berth", "mappings"}
	if daemon == mini {
		args = []string{"netns", "exec", ns, "nft", "-j", "list", "chain", "inet", "filter", "prerouting_miniupnpd"}
	}
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil {
		return 0, fmt.Errorf("nft %s: %w", strings.Join(args[4:], " "), err)
	}
	var doc struct {
		Nftables []struct {
			Map *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"map"`
			Rule *json.RawMessage `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("nft -j output: %w", err)
	}
	n := 0
	for _, o := range doc.Nftables {
		switch {
		case o.Map != nil:
			n += len(o.Map.Elem)
		case o.Rule != nil:
			n++
		}
	}
	return n, nil
}
