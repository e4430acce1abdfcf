package nft

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden .nft files in testdata/")

// e2e reports whether system tests must run (BERTH_E2E=1) instead of
// skipping when root or network namespaces are not available.
func e2e() bool { return os.Getenv("BERTH_E2E") == "1" }

// skipOrFail skips the test, or fails it under BERTH_E2E=1.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if e2e() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (set BERTH_E2E=1 to make this a failure)", args...)
}

// netNS is a fresh, named network namespace (see ip-netns(8)) removed when
// the test ends, pass or fail.
type netNS struct {
	name string
	fd   int
}

// newNetNS creates a fresh network namespace, or skips.
func newNetNS(t testing.TB) *netNS {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "nft system test needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		skipOrFail(t, "nft system test needs nft(8): %v", err)
	}
	var b [4]byte
	rand.Read(b[:])
	name := "berth-nft-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		skipOrFail(t, "cannot create a network namespace: %v: %s", err, out)
	}
	ns := &netNS{name: name, fd: -1}
	t.Cleanup(func() {
		if ns.fd >= 0 {
			unix.Close(ns.fd)
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	fd, err := unix.Open(filepath.Join("/run/netns", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	ns.fd = fd
	return ns
}

// conn returns a netlink connection into the namespace.
func (ns *netNS) conn(t testing.TB) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatalf("nftables.New: %v", err)
	}
	return c
}

// lastingConn returns the netlink connection berthd uses (Dial) into the
// namespace and its port id, closed when the test ends.
func (ns *netNS) lastingConn(t testing.TB) (*nftables.Conn, uint32) {
	t.Helper()
	c, port, err := Dial(ns.fd)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.CloseLasting() })
	return c, port
}

// conntrack returns a conntrack netlink connection into the namespace,
// closed when the test ends.
func (ns *netNS) conntrack(t testing.TB) *conntrack.Conn {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns.fd})
	if err != nil {
		t.Fatalf("conntrack.Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs a command inside the namespace and returns its standard output.
func (ns *netNS) run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// ruleset is `nft list table ip <table>` inside the namespace.
func (ns *netNS) ruleset(t testing.TB, table string) string {
	t.Helper()
	return ns.run(t, "nft", "list", "table", "ip", table)
}

// tables is `nft list tables` inside the namespace.
func (ns *netNS) tables(t testing.TB) string {
	t.Helper()
	return ns.run(t, "nft", "list", "tables")
}

// sortElements sorts the elements of every "elements = { ... }" list in a
// listing: a hash map lists them in hash order, which need not be stable.
func sortElements(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "elements = { ")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		i += len("elements = { ")
		j := strings.Index(s[i:], " }")
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		es := strings.Split(s[i:i+j], ",")
		for k := range es {
			es[k] = strings.TrimSpace(es[k])
		}
		slices.Sort(es)
		b.WriteString(strings.Join(es, ",\n\t\t\t     "))
		s = s[i+j:]
	}
}

// golden compares got with testdata/<name>.nft, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = sortElements(got)
	path := filepath.Join("testdata", name+".nft")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: kernel state differs from %s\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}
