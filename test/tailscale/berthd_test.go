package tailscale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/pcp"
)

// logWait bounds each wait for a line in berthd's log.
const logWait = 10 * time.Second

// buildBerthd builds cmd/berthd from the repository this module sits in.
func buildBerthd(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "berthd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// go test puts its own toolchain first in PATH.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/berthd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/berthd in %s: %v\n%s", root, err, out)
	}
	return bin
}

// berthd is a running daemon and what it has logged so far.
type berthd struct {
	mu    sync.Mutex
	lines []logLine
	grew  chan struct{} // closed and replaced on every new line
	exit  chan struct{} // closed once the process has exited
	err   error         // its exit status, once exit is closed
}

// startBerthd runs bin in the router namespace and waits until it serves
// NAT-PMP and PCP on the LAN address. It is stopped with SIGTERM (which
// removes its mappings) when the test ends, and killed if that hangs.
func startBerthd(t *testing.T, topo *topology, bin string) *berthd {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "berth.toml")
	// Short leases make the client renew within the test (lifetime).
	toml := fmt.Sprintf(`[policy.lifetime.natpmp]
min = "1s"
max = %[1]q

[policy.lifetime.pcp]
min = "1s"
max = %[1]q
`, lifetime.String())
	if err := os.WriteFile(conf, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &berthd{grew: make(chan struct{}), exit: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := inNetns(ctx, topo.router, bin, "-config", conf, "-wan", "wan0", "-lan", "lan0",
		"-state-dir", t.TempDir(), "-log-format", "json", "-log-level", "debug")
	cmd.Stderr = &lineWriter{line: d.add}
	cmd.Stdout = cmd.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second // then SIGKILL
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting berthd: %v", err)
	}
	go func() {
		d.err = cmd.Wait()
		close(d.exit)
	}()
	t.Cleanup(func() {
		cancel()
		<-d.exit // bounded by WaitDelay
		if t.Failed() {
			t.Logf("berthd log:\n%s", d.dump())
		}
	})

	d.wait(t, "berthd serving", func(logLine) bool { return true })
	want := netip.AddrPortFrom(routerLAN, pcp.Port) // the port tailscale has built in
	if len(d.find("serving NAT-PMP and PCP", func(l logLine) bool { return l.udpAddr("addr") == want })) == 0 {
		t.Fatalf("berthd serves, but not NAT-PMP and PCP on %v", want)
	}
	return d
}

func (d *berthd) add(s string) {
	l := logLine{raw: s}
	if err := json.Unmarshal([]byte(s), &l.attrs); err != nil {
		l.attrs = nil // not JSON: the race detector or a panic; kept for dump
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lines = append(d.lines, l)
	close(d.grew)
	d.grew = make(chan struct{})
}

// find returns the lines with message msg that match.
func (d *berthd) find(msg string, match func(logLine) bool) []logLine {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []logLine
	for _, l := range d.lines {
		if l.str("msg") == msg && match(l) {
			out = append(out, l)
		}
	}
	return out
}

// wait returns the first line with message msg that matches, waiting up
// to logWait for it.
func (d *berthd) wait(t *testing.T, msg string, match func(logLine) bool) logLine {
	t.Helper()
	return d.waitN(t, 1, msg, match)[0]
}

// waitN waits until n lines with message msg match and returns them,
// waiting up to logWait for each.
func (d *berthd) waitN(t *testing.T, n int, msg string, match func(logLine) bool) []logLine {
	t.Helper()
	timeout := time.NewTimer(logWait)
	defer timeout.Stop()
	have := 0
	for {
		d.mu.Lock()
		grew := d.grew
		d.mu.Unlock()
		ls := d.find(msg, match)
		if len(ls) >= n {
			return ls[:n]
		}
		if len(ls) > have {
			have = len(ls)
			timeout.Reset(logWait)
		}
		select {
		case <-grew:
		case <-d.exit:
			t.Fatalf("berthd exited (%v) with %d of %d lines %q", d.err, have, n, msg)
		case <-timeout.C:
			t.Fatalf("berthd logged %d of %d lines %q; none more within %v", have, n, msg, logWait)
		}
	}
}

func (d *berthd) dump() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, l := range d.lines {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// logLine is one line of berthd's JSON log (slog.JSONHandler).
type logLine struct {
	raw   string
	attrs map[string]json.RawMessage
}

func (l logLine) get(name string, v any) bool {
	b, ok := l.attrs[name]
	return ok && json.Unmarshal(b, v) == nil
}

func (l logLine) str(name string) string {
	var s string
	l.get(name, &s)
	return s
}

func (l logLine) addr(name string) netip.Addr {
	var a netip.Addr
	l.get(name, &a)
	return a
}

func (l logLine) addrPort(name string) netip.AddrPort {
	var a netip.AddrPort
	l.get(name, &a)
	return a
}

// udpAddr reads a *net.UDPAddr, which slog writes as a JSON object.
func (l logLine) udpAddr(name string) netip.AddrPort {
	var a struct {
		IP   netip.Addr
		Port uint16
	}
	l.get(name, &a)
	return netip.AddrPortFrom(a.IP.Unmap(), a.Port)
}

// keyExternal reads the external address of the mapping.Key under "key".
func (l logLine) keyExternal() netip.AddrPort {
	var k struct{ External netip.AddrPort }
	l.get("key", &k)
	return k.External
}

// lineWriter calls line for each complete line written to it. exec copies
// a process's output into it from one goroutine.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
