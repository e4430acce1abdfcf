package e2e

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
)

// startWait bounds berthd's start-up.
const startWait = 10 * time.Second

// buildBerthd builds cmd/berthd from the repository this package sits in,
// or returns $BERTH_E2E_BERTHD when that names a built binary.
func buildBerthd(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("BERTH_E2E_BERTHD"); bin != "" {
		t.Logf("using berthd %s from BERTH_E2E_BERTHD", bin)
		return bin
	}
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
	lines []string
	msgs  []string      // the "msg" of each JSON line
	grew  chan struct{} // closed and replaced on every new line
	exit  chan struct{} // closed once the process has exited
	err   error         // its exit status, once exit is closed
	stop  func()        // SIGTERM, then SIGKILL after WaitDelay; waits
	kill  func()        // SIGKILL at once, as a crash; waits
	pid   int
}

// startBerthd runs bin in the router namespace with the configuration
// toml and a fresh lease store, and waits until it logs "berthd serving".
// It returns "", or, when berthd exits first, its exit status and log. The
// daemon is stopped with SIGTERM when the test ends (killed if that hangs)
// and its log is printed if the test failed.
//
// Every scenario runs the nft backend, and launch puts it first in every
// configuration (backend = "nft"): with "auto", a berthd that cannot use nf_tables falls
// back to the relay, which forwards most of the suite's traffic too and
// would hide the fallback. startBerthd fails the test unless berthd says
// it serves with nft and berth's table is in the router's kernel.
func startBerthd(t *testing.T, topo *topology, bin, toml string) string {
	t.Helper()
	_, failed := launch(t, topo, bin, toml, t.TempDir())
	return failed
}

// launchDurable builds berthd and the topology and starts berthd there
// with durableConfig and a fresh lease store; the test fails unless it
// serves.
func launchDurable(t *testing.T) (*topology, *berthd) {
	t.Helper()
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	d, failed := launch(t, topo, bin, durableConfig, t.TempDir())
	if failed != "" {
		t.Fatal(failed)
	}
	return topo, d
}

// launch is startBerthd with the lease store in stateDir; it also returns
// the daemon, which a test may kill and start again over the same store.
func launch(t *testing.T, topo *topology, bin, toml, stateDir string) (*berthd, string) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "berth.toml")
	if err := os.WriteFile(conf, []byte("backend = \"nft\"\n"+toml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &berthd{grew: make(chan struct{}), exit: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := inNetns(ctx, topo.router, bin, "-config", conf, "-wan", "wan0", "-lan", "lan0",
		"-state-dir", stateDir, "-log-format", "json", "-log-level", "debug")
	cmd.Stderr = &lineWriter{line: d.add}
	cmd.Stdout = cmd.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second // then SIGKILL
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting berthd: %v", err)
	}
	d.pid = cmd.Process.Pid // ip netns exec execs berthd: this is berthd's
	go func() {
		d.err = cmd.Wait()
		close(d.exit)
	}()
	d.stop = func() {
		cancel()
		<-d.exit // bounded by WaitDelay
	}
	d.kill = func() {
		cmd.Process.Kill() // ip netns exec execs berthd: this is berthd
		<-d.exit
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("berthd log:\n%s", d.dump())
		}
	})

	timeout := time.NewTimer(startWait)
	defer timeout.Stop()
	for {
		d.mu.Lock()
		grew, serving := d.grew, containsMsg(d.msgs, "berthd serving")
		d.mu.Unlock()
		if serving {
			d.requireNft(t, topo)
			return d, ""
		}
		select {
		case <-grew:
		case <-d.exit:
			return d, fmt.Sprintf("berthd exited (%v):\n%s", d.err, d.dump())
		case <-timeout.C:
			t.Fatalf("berthd did not log \"berthd serving\" within %v:\n%s", startWait, d.dump())
		}
	}
}

// requireNft fails the test unless berthd's "berthd serving" line names
// the nft backend, berthd said it runs its Go code on one thread for it
// (unless the test's environment sets GOMAXPROCS, which berthd then
// leaves alone), and the router's kernel holds berth's table.
func (d *berthd) requireNft(t *testing.T, topo *topology) {
	t.Helper()
	var backend string
	procs := -1 // no "Go scheduler" line
	d.mu.Lock()
	for _, l := range d.lines {
		var v struct {
			Msg, Backend string
			GOMAXPROCS   int
		}
		if json.Unmarshal([]byte(l), &v) != nil {
			continue
		}
		switch v.Msg {
		case "berthd serving":
			backend = v.Backend
		case "Go scheduler":
			procs = v.GOMAXPROCS
		}
	}
	d.mu.Unlock()
	if backend != "nft" {
		t.Fatalf("berthd serves with backend %q, want nft:\n%s", backend, d.dump())
	}
	want := 1
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		want = -1
	}
	if procs != want {
		t.Errorf("berthd with nft: Go scheduler line says GOMAXPROCS %d (-1: no line), want %d:\n%s", procs, want, d.dump())
	}
	if out, err := run(t, 10*time.Second, topo.router, "nft", "list", "table", "ip", "berth"); err != nil {
		t.Fatalf("berthd serves, but berth's nft table is not in the router namespace: %v\n%s", err, out)
	}
}

func containsMsg(msgs []string, msg string) bool {
	for _, m := range msgs {
		if m == msg {
			return true
		}
	}
	return false
}

// waitMsg reports whether berthd logs msg, or has logged it, within
// within: a line may reach the test after the packet berthd sent next to
// it.
func (d *berthd) waitMsg(msg string, within time.Duration) bool {
	return d.waitLine(func(_, m string) bool { return m == msg }, within)
}

// waitExpired reports whether berthd logs, or has logged, within within
// that the mapping of proto ("TCP", "UDP") on ext expired.
func (d *berthd) waitExpired(proto string, ext netip.AddrPort, within time.Duration) bool {
	want := map[string]int{"TCP": 6, "UDP": 17}[proto]
	return d.waitLine(func(l, m string) bool {
		if m != "mapping expired" {
			return false
		}
		var v struct {
			Key struct {
				Proto    int
				External string
			}
		}
		return json.Unmarshal([]byte(l), &v) == nil && v.Key.Proto == want && v.Key.External == ext.String()
	}, within)
}

// waitLine reports whether berthd logs, or has logged, within within a
// line for which match (given the line and its "msg") is true. After
// berthd exits or the time is up, it still reads what was logged until
// then.
func (d *berthd) waitLine(match func(line, msg string) bool, within time.Duration) bool {
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for seen, last := 0, false; ; {
		d.mu.Lock()
		grew, lines, msgs := d.grew, d.lines[seen:], d.msgs[seen:]
		seen = len(d.lines)
		d.mu.Unlock()
		for i, l := range lines {
			if match(l, msgs[i]) {
				return true
			}
		}
		if last {
			return false
		}
		select {
		case <-grew:
		case <-d.exit:
			last = true // read what it logged before it exited
		case <-timeout.C:
			last = true
		}
	}
}

func (d *berthd) add(s string) {
	var l struct{ Msg string }
	if json.Unmarshal([]byte(s), &l) != nil {
		l.Msg = "" // not JSON: the race detector or a panic; kept for dump
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lines = append(d.lines, s)
	d.msgs = append(d.msgs, l.Msg)
	close(d.grew)
	d.grew = make(chan struct{})
}

func (d *berthd) dump() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
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
