package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles berthd once per test binary run.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "berthd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBadConfigExits2WithPosition: a configuration berthd cannot parse,
// and one the system cannot serve (an interface it does not have), both
// exit 2 naming the file, line and field.
func TestBadConfigExits2WithPosition(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct{ name, src, want string }{
		{"invalid value", "backend = \"relay\"\n[policy]\nmax_total = -1\n", "bad.toml:3: policy.max_total"},
		{"missing interface", "backend = \"relay\"\nwan = \"lo\"\nlan = [\"lo\", \"nosuch0\"]\n", `bad.toml:3: lan[1]: no interface "nosuch0"`},
	} {
		path := filepath.Join(t.TempDir(), "bad.toml")
		if err := os.WriteFile(path, []byte(tc.src), 0o600); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-config", path, "-state-dir", "none")
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("%s: got exit %d (%v), want 2; stderr:\n%s", tc.name, code, err, stderr.String())
		} else if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: stderr %q does not contain %q", tc.name, stderr.String(), tc.want)
		}
	}
}

func TestHelpExits0(t *testing.T) {
	bin := build(t)
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "-config") {
		t.Fatalf("help does not mention -config:\n%s", out)
	}
}

// TestStartsAndStopsOnSignal is the README's promise: berthd starts with
// no configuration, says what it detected and which backend it uses,
// reloads on SIGHUP and stops cleanly on SIGTERM.
func TestStartsAndStopsOnSignal(t *testing.T) {
	bin := build(t)
	// The responders stay off: this berthd runs on the host's own
	// interfaces, and their announcements (NAT-PMP, PCP, SSDP multicast)
	// must not leave the machine from a test. They are tested on loopback
	// and in network namespaces.
	conf := filepath.Join(t.TempDir(), "quiet.toml")
	quiet := "backend = \"relay\"\n[natpmp]\nenabled = false\n[pcp]\nenabled = false\n[upnp]\nenabled = false\n"
	if err := os.WriteFile(conf, []byte(quiet), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", conf, "-state-dir", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	wait := func(substr string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("berthd ended before logging %q; log:\n%s", substr, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.Contains(l, substr) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q within 20s; log:\n%s", substr, strings.Join(seen, "\n"))
			}
		}
	}
	wait("berthd serving")
	last := seen[len(seen)-1]
	for _, want := range []string{"backend=relay", "wan=", "external="} {
		if !strings.Contains(last, want) {
			t.Errorf("start line %q lacks %q", last, want)
		}
	}
	// SIGHUP re-reads the file: a good one is applied, a bad one is
	// refused while berthd keeps serving.
	reload := func(src, want string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		wait(want)
	}
	reload(quiet+"[policy]\nrules = [\"deny 0-65535 0.0.0.0/0 0-65535\"]\n", "reloaded")
	if last := seen[len(seen)-1]; !strings.Contains(last, "rules=1") {
		t.Errorf("reload line %q does not show the file's one rule", last)
	}
	reload(quiet+"[policy]\nmax_total = -1\n", "configuration rejected")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wait("stopped")
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestDefaultGC: berthd collects at GOGC=50 unless the environment says
// otherwise, in which case the runtime's own reading of GOGC stands.
func TestDefaultGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	unset := func(string) (string, bool) { return "", false }
	if gc, ok := defaultGC(unset); !ok || gc != gcPercent {
		t.Errorf("defaultGC without GOGC = %d, %v; want %d, true", gc, ok, gcPercent)
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d after defaultGC, want %d", got, gcPercent)
	}
	set := func(k string) (string, bool) { return "200", k == "GOGC" }
	if _, ok := defaultGC(set); ok {
		t.Error("defaultGC changed the GC percent although GOGC is set")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d with GOGC set, want it left at 100", got)
	}
}

// TestDefaultProcs: with the nft backend berthd runs its Go code on procs
// threads, unless the environment sets GOMAXPROCS, in which case the
// runtime's own reading of it stands; with the relay, which copies the
// forwarded traffic in Go, the runtime's default stays.
func TestDefaultProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(3)
	defer runtime.GOMAXPROCS(prev)
	unset := func(string) (string, bool) { return "", false }
	if n, ok := defaultProcs(unset, "nft"); !ok || n != procs {
		t.Errorf("defaultProcs(nft) without GOMAXPROCS = %d, %v; want %d, true", n, ok, procs)
	}
	if got := runtime.GOMAXPROCS(3); got != procs {
		t.Errorf("GOMAXPROCS %d after defaultProcs(nft), want %d", got, procs)
	}
	if _, ok := defaultProcs(unset, "relay"); ok {
		t.Error("defaultProcs changed GOMAXPROCS for the relay backend")
	}
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d after defaultProcs(relay), want it left at 3", got)
	}
	set := func(k string) (string, bool) { return "3", k == "GOMAXPROCS" }
	if _, ok := defaultProcs(set, "nft"); ok {
		t.Error("defaultProcs changed GOMAXPROCS although the environment sets it")
	}
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d with the environment's set, want it left at 3", got)
	}
}
