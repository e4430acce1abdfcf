package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Daemons under test, as the table's columns name them.
const (
	berth = "berth"
	mini  = "miniupnpd"
)

// settings are the bounds of one benchmark, from the flags.
type settings struct {
	levels        []int         // N values, ascending, starting at 0
	runs          int           // repetitions of every measurement
	phase         limits        // one timed measurement
	cleanup       time.Duration // deleting what a measurement made
	prefillBudget time.Duration // reaching all levels: berthd
	// miniPrefillBudget is miniupnpd's, smaller: its requests slow down
	// as its table grows, so it reaches far fewer levels anyway.
	miniPrefillBudget time.Duration
	listBudget        time.Duration // one GetGenericPortMappingEntry walk
	listOnceAbove     int           // walk larger tables in the first run only
	retry             retry
	clients           int // the "many clients" concurrency
	// crowd is a larger concurrency for the map rows and the ceiling:
	// how far batching carries when many hosts ask at once.
	crowd     int
	storeMode string // berthd's lease store: disk, tmpfs or off
	miniDebug bool   // run miniupnpd with -d
}

// concurrency is the client counts of the map rows and the ceiling: 1,
// clients and, when larger, crowd.
func (s settings) concurrency() []int {
	ks := []int{1, s.clients}
	if s.crowd > s.clients {
		ks = append(ks, s.crowd)
	}
	return ks
}

// steady bounds a measurement that changes no state (the echo ceiling,
// forwarding) by the phase's time alone: phase.ops round trips at 80,000
// a second last 19 ms, whose rate is mostly the start and the machine's
// jitter (the 16-client ceiling scattered 40k–107k within one run).
func (s settings) steady() limits {
	return limits{ops: 100 * s.phase.ops, dur: s.phase.dur}
}

// phaseOps is the most requests of a map phase with k clients: as many
// per client as with clients when k is larger, so that the rate is not a
// warm-up's. Slots N… up to N+phaseOps are mapped in it.
func (s settings) phaseOps(k int) int {
	if k > s.clients {
		return s.phase.ops * k / s.clients
	}
	return s.phase.ops
}

// bench is the state shared by all sessions.
type bench struct {
	s         settings
	tmp       string
	self      string // this executable, for the echo servers
	root      string // the module, which berthd is built from
	berthd    string
	miniupnpd string // "" when not measured
	rec       *recorder
	// store: 0 not yet known, 1 berthd has a lease store, -1 it has none.
	store int
}

// session is one daemon in its own topology, alive for the whole
// benchmark: every level is prefilled once and measured -runs times.
type session struct {
	b        *bench
	daemon   string
	dir      string
	topo     *topology
	lan      []*udpClient // in the LAN namespace, bound to 0.0.0.0
	wan      []*udpClient // in the WAN namespace
	proc     *proc
	ctl      igdControl
	n        int    // slots [0, n) are mapped
	fwd      uint16 // external port of the forwarding mapping, 0 for none
	stateDir string // berthd's lease store or miniupnpd's lease file
	prefillT time.Duration
	rss0     float64 // KiB at start
	top      int     // the largest level reached
	undo     []func()
}

// concurrency is the client counts of s's map rows and ceiling. The
// crowd's are berthd's only: miniupnpd answers one request at a time, so
// more clients only queue, and the retransmissions of those it cannot
// answer within the timeout would keep it busy into the phases after.
func (s *session) concurrency() []int {
	ks := s.b.s.concurrency()
	if s.daemon == mini {
		ks = slices.DeleteFunc(ks, func(k int) bool { return k > s.b.s.clients })
	}
	return ks
}

// clients are the LAN clients of every phase without its own count:
// the first settings.clients of s.lan, which holds the crowd too.
func (s *session) clients() []*udpClient { return s.lan[:s.b.s.clients] }

func (s *session) rec(name, unit string, v float64) { s.b.rec.add(s.daemon, name, unit, "", v) }

// recRate records a rate with the row it is a fraction of.
func (s *session) recRate(name, ceiling string, v float64) {
	s.b.rec.add(s.daemon, name, "/s", ceiling, v)
}

func (s *session) note(format string, args ...any) {
	msg := s.daemon + ": " + fmt.Sprintf(format, args...)
	s.b.rec.addNote(msg)
	fmt.Fprintln(os.Stderr, "bench:", msg)
}

func (s *session) close() {
	for i := len(s.undo) - 1; i >= 0; i-- {
		s.undo[i]()
	}
	s.undo = nil
}

// stores reports whether the daemons keep their leases on disk: berthd
// has a store and -berth-store is not off. miniupnpd gets a lease_file
// then, so that both pay for persistence or neither does.
func (s *session) stores() bool { return s.b.store > 0 && s.b.s.storeMode != "off" }

// measure runs every measurement on every daemon: the sessions live
// side by side, each level is prefilled once per daemon, and each
// measurement runs -runs times, alternating between the daemons.
func (b *bench) measure(ctx context.Context) error {
	daemons := []string{berth}
	if b.miniupnpd != "" {
		daemons = append(daemons, mini)
	}
	var live []*session
	defer func() {
		for _, s := range live {
			s.close()
		}
	}()
	for _, d := range daemons {
		fmt.Fprintf(os.Stderr, "bench: starting %s\n", d)
		s, err := b.open(ctx, d)
		if err != nil {
			if d == berth || ctx.Err() != nil {
				return err
			}
			b.rec.addNote(fmt.Sprintf("%s not measured: %v", d, err))
			continue
		}
		live = append(live, s)
	}
	each := func(f func(s *session, run int)) {
		for r := 1; r <= b.s.runs && ctx.Err() == nil; r++ {
			for _, s := range live {
				if ctx.Err() == nil {
					f(s, r)
				}
			}
		}
	}
	for _, level := range b.s.levels {
		fmt.Fprintf(os.Stderr, "bench: N=%s\n", count(level))
		keep := live[:0]
		for _, s := range live {
			if s.prefill(ctx, level) {
				keep = append(keep, s)
			} else {
				s.finish(ctx)
				s.close()
			}
		}
		live = keep
		each(func(s *session, _ int) { s.control(ctx, level) })
		for _, s := range live {
			s.checkCount(ctx, s.n)
		}
		if level == 0 {
			each(func(s *session, _ int) { s.conntrackCost(ctx) })
			for _, s := range live {
				if err := s.mapForward(ctx); err != nil {
					s.note("no forwarding mapping: %v", err)
				}
			}
			each(func(s *session, _ int) { s.forwarding(ctx, 1) })
		} else {
			each(func(s *session, r int) {
				if r == 1 || level <= b.s.listOnceAbove {
					s.list(ctx, level)
				}
			})
		}
		for _, s := range live {
			s.memory(level)
			s.top = level
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for _, s := range live {
		s.finish(ctx)
	}
	return ctx.Err()
}

// open builds a daemon's topology, starts its echo servers and the
// daemon itself, and finds its IGD.
func (b *bench) open(ctx context.Context, daemon string) (_ *session, err error) {
	s := &session{b: b, daemon: daemon, dir: filepath.Join(b.tmp, daemon)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	w, tag := berthWAN, "b"
	if daemon == mini {
		w, tag = miniWAN, "m"
	}
	topo, err := newTopology(ctx, fmt.Sprintf("bb%d%s", os.Getpid(), tag), w)
	if err != nil {
		return nil, err
	}
	s.topo = topo
	s.undo = append(s.undo, atCleanup(func() {
		if err := topo.close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleanup:", err)
		}
	}))
	if err := nftLoad(ctx, topo.router, notrackRules); err != nil {
		return nil, err
	}
	if s.stateDir, err = b.stateDir(s.dir); err != nil {
		return nil, err
	}
	if s.lan, err = newUDPClients(topo.lan, netip.IPv4Unspecified(), max(b.s.clients, b.s.crowd)); err != nil {
		return nil, err
	}
	s.undo = append(s.undo, func() { closeUDP(s.lan) })
	if s.wan, err = newUDPClients(topo.wan, w.host, b.s.clients); err != nil {
		return nil, err
	}
	s.undo = append(s.undo, func() { closeUDP(s.wan) })
	for _, e := range []struct {
		ns   string
		addr netip.AddrPort
	}{{topo.router, ceilingAddr}, {topo.lan, netip.AddrPortFrom(lanHost, fwdPort)}} {
		p, err := startProc(e.ns, filepath.Join(s.dir, "echo-"+e.ns+".log"), b.self, "-echo", e.addr.String())
		if err != nil {
			return nil, err
		}
		s.undo = append(s.undo, atCleanup(p.kill))
		if err := s.waitEcho(ctx, e.addr); err != nil {
			return nil, err
		}
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if s.ctl, err = discoverIGD(ctx, topo.lan); err != nil {
		return nil, fmt.Errorf("%s: %w", daemon, err)
	}
	s.rss0, _ = rssKiB(s.proc.pid())
	s.rec("RSS at start", "KiB", s.rss0)
	return s, nil
}

// stateDir makes the directory for leases: under the daemon's directory
// (on disk) or, for -berth-store tmpfs, under /dev/shm.
func (b *bench) stateDir(dir string) (string, error) {
	if b.s.storeMode != "tmpfs" {
		d := filepath.Join(dir, "state")
		return d, os.MkdirAll(d, 0o755)
	}
	d, err := os.MkdirTemp("/dev/shm", "berth-bench-")
	if err != nil {
		return "", err
	}
	atCleanup(func() { os.RemoveAll(d) })
	return d, nil
}

// ceilingAddr is the trivial UDP echo server on the router's LAN address.
var ceilingAddr = netip.AddrPortFrom(routerLAN, echoPort)

func (s *session) waitEcho(ctx context.Context, dst netip.AddrPort) error {
	for range 100 {
		r := udpPhase(ctx, s.lan[:1], limits{ops: 1, dur: time.Second}, retry{attempts: 1, timeout: 50 * time.Millisecond},
			func(i int) udpOp { return echoOp(lanHost, dst, 8, i) })
		if r.OK == 1 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("echo server %v does not answer", dst)
}

// start starts the daemon and waits until it answers NAT-PMP or PCP. The
// first start of berthd finds out whether it has a lease store.
func (s *session) start(ctx context.Context) error {
	if s.daemon == mini {
		return s.startMini(ctx, false)
	}
	p, err := s.startBerth(ctx)
	if err != nil && s.b.store == 0 && p != nil && p.exited() && mentionsStore(p.tail(20)) {
		s.b.store = -1
		s.note("berthd has no lease store yet (%s)", firstLine(p.tail(5)))
		p, err = s.startBerth(ctx)
	}
	if err != nil {
		return err
	}
	if s.b.store == 0 {
		s.b.store = 1
	}
	return nil
}

func mentionsStore(log string) bool {
	l := strings.ToLower(log)
	return strings.Contains(l, "store") || strings.Contains(l, "state")
}

func firstLine(s string) string { return strings.SplitN(strings.TrimSpace(s), "\n", 2)[0] }

func (s *session) startBerth(ctx context.Context) (*proc, error) {
	conf := filepath.Join(s.dir, "berth.toml")
	toml := berthConfig("", false)
	if s.b.store >= 0 {
		toml = berthConfig(s.stateDir, s.b.s.storeMode == "off")
	}
	if err := os.WriteFile(conf, []byte(toml), 0o644); err != nil {
		return nil, err
	}
	t0 := clk.Now()
	p, err := startProc(s.topo.router, filepath.Join(s.dir, fmt.Sprintf("berthd-%d.log", len(s.undo))), s.b.berthd, "-config", conf)
	if err != nil {
		return nil, err
	}
	s.proc = p
	s.undo = append(s.undo, atCleanup(p.kill))
	_, err = waitServing(ctx, p, t0, 2*time.Minute, s.pcpReady)
	return p, err
}

func (s *session) pcpReady() bool {
	r := udpPhase(context.Background(), s.lan[:1], limits{ops: 1, dur: time.Second}, retry{attempts: 1, timeout: 20 * time.Millisecond},
		func(int) udpOp { return pcpAnnounce(lanHost) })
	return r.OK == 1
}

func (s *session) natpmpReady() bool {
	r := udpPhase(context.Background(), s.lan[:1], limits{ops: 1, dur: time.Second}, retry{attempts: 1, timeout: 20 * time.Millisecond},
		func(int) udpOp { return natpmpAddress() })
	return r.OK == 1
}

// startMini creates miniupnpd's nft chains (unless restarting) and starts
// it. Without -miniupnpd-debug it runs as it would on a router, in the
// background: with -d it logs at debug level, a line per rule on every
// pass of its event loop, and measures its logging.
func (s *session) startMini(ctx context.Context, restart bool) error {
	if !restart {
		if err := nftLoad(ctx, s.topo.router, miniupnpdTables); err != nil {
			return err
		}
	}
	lease := ""
	if s.stores() {
		lease = filepath.Join(s.stateDir, "upnp.leases")
	}
	conf := filepath.Join(s.dir, "miniupnpd.conf")
	if err := os.WriteFile(conf, []byte(miniupnpdConfig(lease)), 0o644); err != nil {
		return err
	}
	pidFile := filepath.Join(s.dir, "miniupnpd.pid")
	logFile := filepath.Join(s.dir, fmt.Sprintf("miniupnpd-%d.log", len(s.undo)))
	t0 := clk.Now()
	var p *proc
	var err error
	if s.b.s.miniDebug {
		p, err = startProc(s.topo.router, logFile, s.b.miniupnpd, "-d", "-f", conf, "-P", pidFile)
	} else {
		p, err = startBackground(ctx, s.topo.router, logFile, pidFile, s.b.miniupnpd, "-f", conf, "-P", pidFile)
	}
	if err != nil {
		return err
	}
	s.proc = p
	s.undo = append(s.undo, atCleanup(p.kill))
	_, err = waitServing(ctx, p, t0, 2*time.Minute, s.natpmpReady)
	return err
}

// finish measures what needs the largest table: forwarding, restart and
// stop.
func (s *session) finish(ctx context.Context) {
	if s.proc == nil || ctx.Err() != nil {
		return
	}
	if s.top > 1 && s.fwd != 0 {
		for range s.b.s.runs {
			s.forwarding(ctx, s.top)
		}
	}
	if s.top > 0 {
		for range s.b.s.runs {
			if !s.restart(ctx, s.top) {
				break
			}
		}
	}
	if !s.proc.exited() {
		d, err := s.proc.stop(2 * time.Minute)
		if err != nil {
			s.note("stop: %v", err)
		} else {
			s.rec(fmt.Sprintf("stop with N=%s (SIGTERM to exit)", count(s.top)), "ms", ms(d))
		}
	}
}
