// Command bench is berth's benchmark (project issue 7): it runs berthd,
// and miniupnpd when Debian's miniupnpd-nftables is installed, each in its
// own copy of the end-to-end topology, and measures them side by side:
//
//	ns wan (203.0.113.1) ──veth── ns router (wan 203.0.113.2, lan 192.168.77.1/16) ──veth── ns lan (192.168.77.10)
//	                                 │ daemon; UDP echo on 192.168.77.1:15351        │ lo: 192.168.80.0/20 (client pool)
//	                                 └ route 192.168.80.0/20 via 192.168.77.10       └ UDP echo on 192.168.77.10:1050
//
// miniupnpd refuses reserved external addresses, so its copy uses
// 11.22.33.0/24 on the WAN side instead; both exist only inside the
// namespaces made here, named after the process ID, and no packet leaves
// them.
//
// With N = 0, 1k, 10k and 100k mappings present it measures NAT-PMP and
// PCP map requests (1, 16 and 64 clients: rate, p50 and p99 latency),
// renewals and deletions, SOAP AddPortMapping, and the walk of
// GetGenericPortMappingEntry; then UDP forwarding through a mapping from
// the WAN with 1 and with N mappings, the daemon's memory per mapping,
// the time from start to serving with N stored mappings, and deletions
// with a full conntrack table. The ceiling is the same request/response
// exchange with a trivial UDP echo server on the router's LAN address.
// Each level is filled once per daemon; every measurement runs -runs
// times, alternating between the daemons, and the table shows medians.
//
// berthd limits each LAN host to 50 NAT-PMP/PCP requests per second, so
// the clients are sockets that send each request from one of 4,000
// addresses of the LAN pool (IP_PKTINFO): a "client" is one outstanding
// request at a time, many LAN hosts in turn.
//
// Run as root from the module: go run ./test/bench [-quick] [-runs 3]
// [-json bench.json] [-deadline 15m]. Every phase is bounded in count and
// time and the whole run by -deadline. It cleans up its namespaces,
// processes and files, also on failure and on SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() { os.Exit(run()) }

func run() int {
	runs := flag.Int("runs", 3, "measure each daemon this many times; the table shows medians")
	quick := flag.Bool("quick", false, "a short smoke run: small N, short phases, one run")
	jsonPath := flag.String("json", "bench.json", "write all figures to this `file`")
	deadline := flag.Duration("deadline", 15*time.Minute, "stop measuring after this long and report what was measured")
	levelsFlag := flag.String("levels", "", "comma-separated N values to measure at, from 0 up (default 0,1000,10000,100000; -quick 0,1000)")
	markdown := flag.Bool("markdown", false, "print the table as Markdown")
	keep := flag.Bool("keep", false, "keep the temporary directory (daemon logs and configurations)")
	miniDebug := flag.Bool("miniupnpd-debug", false, "run miniupnpd in the foreground with -d (debug logging: slow, for diagnosis)")
	miniPath := flag.String("miniupnpd", "/usr/sbin/miniupnpd", "miniupnpd binary; \"\" skips it")
	storeMode := flag.String("berth-store", "disk", "berthd's lease store: `disk` (the run's temporary directory), tmpfs (/dev/shm: no disk syncs) or off")
	echo := flag.String("echo", "", "internal: serve UDP echo on `addr:port` (the benchmark runs itself so)")
	flag.Parse()
	if *echo != "" {
		if err := runEcho(*echo, 2); err != nil {
			fmt.Fprintln(os.Stderr, "bench echo:", err)
			return 1
		}
		return 0
	}

	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After a signal the measurements end at their next check; if
		// something hangs, clean up and leave anyway.
		<-ctx.Done()
		time.Sleep(45 * time.Second)
		fmt.Fprintln(os.Stderr, "bench: still running 45s after being stopped; cleaning up and exiting")
		runCleanups()
		os.Exit(1)
	}()
	defer runCleanups()

	if err := checkNetns(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if _, err := exec.LookPath("go"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: the go command is needed to build berthd")
		return 1
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	s := settings{
		levels:            []int{0, 1000, 10000, 100000},
		phase:             limits{ops: 1500, dur: 750 * time.Millisecond},
		cleanup:           60 * time.Second,
		prefillBudget:     240 * time.Second,
		miniPrefillBudget: 90 * time.Second,
		listBudget:        90 * time.Second,
		listOnceAbove:     10000,
		retry:             retry{attempts: 3, timeout: time.Second},
		clients:           16,
		crowd:             64,
		storeMode:         *storeMode,
		miniDebug:         *miniDebug,
		runs:              *runs,
	}
	switch *storeMode {
	case "disk", "tmpfs", "off":
	default:
		fmt.Fprintln(os.Stderr, "bench: -berth-store: want disk, tmpfs or off")
		return 2
	}
	if *quick {
		s.runs = 1
		s.levels = []int{0, 1000}
		s.phase = limits{ops: 1000, dur: 300 * time.Millisecond}
		s.prefillBudget, s.miniPrefillBudget, s.listBudget = 30*time.Second, 30*time.Second, 10*time.Second
	}
	if *levelsFlag != "" {
		ls, err := parseLevels(*levelsFlag)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -levels:", err)
			return 2
		}
		s.levels = ls
	}
	tmp, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "bench: keeping", tmp)
	} else {
		defer atCleanup(func() { os.RemoveAll(tmp) })()
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	b := &bench{s: s, tmp: tmp, self: self, root: root, berthd: filepath.Join(tmp, "berthd"), rec: newRecorder()}
	if *miniPath != "" {
		b.miniupnpd = *miniPath
		if why := missingForMini(*miniPath); why != "" {
			b.rec.addNote("miniupnpd not measured: " + why)
			fmt.Fprintln(os.Stderr, "bench: miniupnpd not measured:", why)
			b.miniupnpd = ""
		}
	}
	fmt.Fprintln(os.Stderr, "bench: building berthd")
	if err := buildBerthd(ctx, root, b.berthd); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	status := 0
	start := clk.Now()
	if err := b.measure(ctx); err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			msg = fmt.Sprintf("stopped at the -deadline of %v; the figures so far are kept", *deadline)
		case errors.Is(err, context.Canceled):
			msg = "interrupted; the figures so far are kept"
		}
		b.rec.addNote(msg)
		fmt.Fprintln(os.Stderr, "bench:", msg)
		status = 1
	}
	rows := b.rec.rows()
	fmt.Println()
	if err := writeTable(os.Stdout, rows, b.miniupnpd != "", *markdown); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	b.rec.mu.Lock()
	notes := b.rec.notes
	b.rec.mu.Unlock()
	if len(notes) > 0 {
		fmt.Println("\nNotes:")
		for _, n := range notes {
			fmt.Println("  -", n)
		}
	}
	if err := writeJSON(*jsonPath, b, rows, notes, s.runs, *quick, clk.Now().Sub(start)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		status = 1
	} else {
		fmt.Fprintf(os.Stderr, "bench: figures in %s (%.0fs)\n", *jsonPath, clk.Now().Sub(start).Seconds())
	}
	return status
}

// missingForMini says what miniupnpd's measurement lacks, or "".
func missingForMini(path string) string {
	var missing []string
	if _, err := os.Stat(path); err != nil {
		missing = append(missing, "miniupnpd-nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		missing = append(missing, "nftables")
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("%s missing; install the Debian packages: apt-get install %s", path, strings.Join(missing, " "))
}

// machine describes where the figures were taken.
type machine struct {
	Source string `json:"berth_source"` // git HEAD, and whether the tree had changes
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

func describeMachine(root string) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Source: describeSource(root)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func writeJSON(path string, b *bench, rows []row, notes []string, runs int, quick bool, took time.Duration) error {
	// NaN is not JSON: absent figures become null.
	type jrow struct {
		metric
		Berth          []float64 `json:"berth"`
		Miniupnpd      []float64 `json:"miniupnpd"`
		BerthMedian    *float64  `json:"berth_median"`
		MiniMedian     *float64  `json:"miniupnpd_median"`
		Ratio          *float64  `json:"ratio_berth_to_miniupnpd"`
		BerthOfCeiling *float64  `json:"berth_fraction_of_ceiling,omitempty"`
		MiniOfCeiling  *float64  `json:"miniupnpd_fraction_of_ceiling,omitempty"`
	}
	num := func(v float64) *float64 {
		if v != v || v > 1e300 || v < -1e300 {
			return nil
		}
		return &v
	}
	out := struct {
		Machine  machine  `json:"machine"`
		Runs     int      `json:"runs"`
		Quick    bool     `json:"quick"`
		Seconds  float64  `json:"seconds"`
		Levels   []int    `json:"levels"`
		Clients  int      `json:"clients"`
		Crowd    int      `json:"crowd"`
		Metrics  []jrow   `json:"metrics"`
		Notes    []string `json:"notes"`
		Measured []string `json:"measured"`
	}{Machine: describeMachine(b.root), Runs: runs, Quick: quick, Seconds: took.Seconds(), Levels: b.s.levels, Clients: b.s.clients, Crowd: b.s.crowd,
		Notes: notes, Measured: []string{berth}}
	if b.miniupnpd != "" {
		out.Measured = append(out.Measured, mini)
	}
	for _, r := range rows {
		out.Metrics = append(out.Metrics, jrow{metric: r.metric, Berth: r.Berth, Miniupnpd: r.Miniupnpd,
			BerthMedian: num(r.BerthMedian), MiniMedian: num(r.MiniMedian), Ratio: num(r.Ratio),
			BerthOfCeiling: num(r.BerthOfCeiling), MiniOfCeiling: num(r.MiniOfCeiling)})
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// The cleanup registry: everything that must be undone (namespaces,
// processes, the temporary directory) registers here, so that the
// watchdog in run can undo it even when the main flow hangs.
var (
	cleanupMu sync.Mutex
	cleanups  = map[int]func(){}
	cleanupID int
)

// atCleanup registers f and returns a function that runs it once and
// unregisters it.
func atCleanup(f func()) func() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanupID++
	id := cleanupID
	cleanups[id] = f
	return func() {
		cleanupMu.Lock()
		f, ok := cleanups[id]
		delete(cleanups, id)
		cleanupMu.Unlock()
		if ok {
			f()
		}
	}
}

// runCleanups runs every registered cleanup, newest first.
func runCleanups() {
	for {
		cleanupMu.Lock()
		last := 0
		for id := range cleanups {
			last = max(last, id)
		}
		f, ok := cleanups[last]
		delete(cleanups, last)
		cleanupMu.Unlock()
		if !ok {
			return
		}
		f()
	}
}

// describeSource names the commit berthd was built from, with "+changes"
// when the working tree differs from it (read-only git commands).
func describeSource(root string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (no git)"
	}
	out := strings.TrimSpace(string(head))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		out += fmt.Sprintf("+changes (%d modified files)", strings.Count(string(st), "\n"))
	}
	return out
}

// parseLevels reads "0,1000,10000": ascending, from 0, within the slots.
func parseLevels(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if n < 0 || n > maxSlots || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("%d: want ascending values from 0 to %d", n, maxSlots)
		}
		out = append(out, n)
	}
	if len(out) == 0 || out[0] != 0 {
		return nil, errors.New("the first level must be 0")
	}
	return out, nil
}
