// Command berthd is berth's port-mapping gateway daemon. It reads its
// configuration (see -h), serves until SIGINT or SIGTERM, removes its
// mappings and exits; SIGHUP reloads the policy and static forwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/daemon"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run returns the exit status: 0 after a clean stop, 2 for a bad
// configuration (also one the system cannot serve), 1 for any other
// failure.
func run(args []string, stderr io.Writer) int {
	cfg, err := config.FromArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "berthd:", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	if gc, ok := defaultGC(os.LookupEnv); ok {
		log.Debug("garbage collector", "GOGC", gc)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a clean stop; from then on the signals have
	// their default effect, so a second Ctrl-C ends a stop that hangs.
	context.AfterFunc(ctx, stop)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }() // ends the goroutine below
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	err = daemon.Run(ctx, cfg, daemon.Options{
		Logger: log,
		Reload: reload,
		Reread: func() (*config.Config, error) { return config.FromArgs(args, stderr) },
		Backend: func(name string) {
			if n, ok := defaultProcs(os.LookupEnv, name); ok {
				log.Debug("Go scheduler", "GOMAXPROCS", n, "backend", name)
			}
		},
	})
	var bad *config.Error
	if errors.As(err, &bad) {
		// A configuration the running system cannot serve (an interface
		// it lacks, a forward to a host outside the LAN): as bad as a
		// parse error.
		fmt.Fprintln(stderr, "berthd:", err)
		return 2
	}
	if err != nil {
		log.Error("berthd failed", "err", err)
		return 1
	}
	return 0
}

// gcPercent is berthd's GOGC unless the environment sets one. Nearly all of
// berthd's heap is long-lived mapping state, and the runtime's default of
// 100 lets the heap grow to twice that state before it collects: 2 KiB of
// RSS per mapping at 100,000 mappings. At 50 the heap peaks at one and a
// half times its live state, under 1 KiB per mapping; the CPU it costs
// was lost in the benchmark's noise (BENCHMARKS.md, finding 10).
const gcPercent = 50

// defaultGC sets GOGC to gcPercent when lookup (os.LookupEnv) finds no
// GOGC, and reports the value and whether it did. A GOGC that is set but
// empty counts as set: the runtime then uses its own default, 100.
func defaultGC(lookup func(string) (string, bool)) (int, bool) {
	if _, set := lookup("GOGC"); set {
		return 0, false
	}
	debug.SetGCPercent(gcPercent)
	return gcPercent, true
}

// procs is berthd's GOMAXPROCS with the nft backend, unless the
// environment sets one: the number of threads that run its Go code at
// once. berthd's work is then many short steps handed from goroutine to
// goroutine (a reader, the Service, the batch applier, the store's
// writer), each ending in a system call, while the kernel forwards the
// traffic. With a second P, most hand-offs woke a parked thread on the
// other core, and idle threads spun looking for work: 0.6 context
// switches and 40–49 µs of CPU per new NAT-PMP mapping in the benchmark,
// against 0.05 and 30–32 µs with one P, and 23–27k against 29–32k
// mappings/s (BENCHMARKS.md, finding 16). A system call that blocks hands
// the P to another thread once the runtime's monitor sees it, within
// 20 µs to 10 ms; a slow disk's syncs then hold up requests for up to
// that long, which 5 ms syncs showed in the renewal rate but not in the
// map rate. The relay backend copies every forwarded byte in Go, so with
// it the runtime keeps its default of one P per CPU.
const procs = 1

// defaultProcs sets GOMAXPROCS to procs when the backend is nft and lookup
// (os.LookupEnv) finds no GOMAXPROCS, and reports the value and whether it
// did. A GOMAXPROCS that is set, even to a value the runtime ignores, is
// left to the runtime.
func defaultProcs(lookup func(string) (string, bool), backend string) (int, bool) {
	if _, set := lookup("GOMAXPROCS"); set || backend != "nft" {
		return 0, false
	}
	runtime.GOMAXPROCS(procs)
	return procs, true
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
