package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Row names shared by several measurements.
func ceilingRow(k int) string { return fmt.Sprintf("ceiling: UDP echo on the router, %s", clients(k)) }

func clients(k int) string {
	if k == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", k)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ceiling measures the request/response rate of a trivial UDP echo
// server on the router's LAN address: what NAT-PMP and PCP could reach.
func (s *session) ceiling(ctx context.Context) {
	for _, k := range s.concurrency() {
		r := udpPhase(ctx, s.lan[:k], s.b.s.steady(), s.b.s.retry, func(i int) udpOp {
			return echoOp(poolAddr(i), ceilingAddr, 60, i)
		})
		s.recLatency(ceilingRow(k), "", r)
	}
}

// prefill maps slots up to level (the forwarding mapping counts). berthd
// gets PCP and SOAP requests at once (its PCP workers wait for the lease
// store's disk sync, HTTP handlers share one); miniupnpd, which handles
// one request at a time, gets PCP only. The prefill stops early when the
// rate so far cannot reach the level within the daemon's budget. It
// reports false when the level was not reached.
func (s *session) prefill(ctx context.Context, level int) bool {
	want := level
	if s.fwd != 0 {
		want--
	}
	if want <= s.n {
		return true
	}
	if want > maxSlots-s.b.s.phaseOps(s.b.s.crowd) {
		s.note("N=%d needs more ports than one external address has", level)
		return false
	}
	budget := s.b.s.prefillBudget
	if s.daemon == mini {
		budget = s.b.s.miniPrefillBudget
	}
	from, t0 := s.n, clk.Now()
	var failed int
	var firstErr error
	for s.n < want && ctx.Err() == nil {
		left := budget - s.prefillT
		if left <= 0 {
			break
		}
		chunk := limits{ops: want - s.n, dur: min(left, 10*time.Second)}
		r := s.prefillChunk(ctx, chunk)
		s.prefillT += r.Elapsed
		s.n += r.Issued
		failed += r.Failed
		if firstErr == nil {
			firstErr = r.FirstErr
		}
		if s.n < want && r.rate() > 0 && float64(want-s.n)/r.rate() > (budget-s.prefillT).Seconds() {
			s.note("prefill to N=%s stopped at N=%d: at %.0f maps/s the rest would take %.0fs, more than the %.0fs left of the %v budget",
				count(level), s.n, r.rate(), float64(want-s.n)/r.rate(), (budget - s.prefillT).Seconds(), budget)
			break
		}
	}
	took := clk.Now().Sub(t0)
	name := fmt.Sprintf("prefill %s→%s", count(max(from, s.top)), count(level))
	if took > 0 && s.n > from {
		s.recRate(name, "", float64(s.n-from)/took.Seconds())
	}
	if failed > 0 {
		s.note("prefill to N=%d: %d requests failed (first: %v)", level, failed, firstErr)
	}
	if s.n < want {
		s.note("prefill reached N=%d of %d in %.0fs; N=%s and above not measured", s.n, level, took.Seconds(), count(level))
		s.top = s.n
		if s.fwd != 0 {
			s.top++
		}
		return false
	}
	return true
}

// prefillChunk maps slots from s.n on, for at most l: slot s.n+i is the
// i-th operation, whichever protocol makes it, so that the slots made
// are [s.n, s.n+Issued).
func (s *session) prefillChunk(ctx context.Context, l limits) phaseResult {
	if s.daemon == mini {
		return slotPhase(ctx, s.clients(), l, s.b.s.retry, "pcp", s.n, lifetime)
	}
	// SOAP requests come from the slot's own pool address, one connection
	// each, so that mappings spread over the LAN hosts as PCP's do (a
	// host with thousands of mappings is another benchmark).
	cs := s.clients()
	k := len(cs)
	from := s.n
	return runPhase(ctx, 2*k, l, func(ctx context.Context, w, i int) error {
		if w < k {
			return cs[w].roundTrip(ctx, pcpOp(from+i, lifetime), s.b.s.retry)
		}
		c := newSOAPClient(s.topo.lan, slotOf(from+i).client)
		c.tr.DisableKeepAlives = true
		defer c.close()
		return c.addPortMapping(ctx, s.ctl, from+i)
	})
}

// control measures NAT-PMP, PCP and SOAP requests at level N and leaves
// the table as it found it.
// The ceiling is measured again next to every level's measurements, so
// that the fractions of it are taken at the same time: the machine may
// be shared.
func (s *session) control(ctx context.Context, level int) {
	s.ceiling(ctx)
	lim, rt, c := s.b.s.phase, s.b.s.retry, s.b.s.clients
	del := limits{dur: s.b.s.cleanup}
	for _, proto := range []string{"natpmp", "pcp"} {
		pname := map[string]string{"natpmp": "NAT-PMP", "pcp": "PCP"}[proto]
		for _, k := range s.concurrency() {
			name := fmt.Sprintf("N=%s: %s map, %s", count(level), pname, clients(k))
			r := slotPhase(ctx, s.lan[:k], limits{ops: s.b.s.phaseOps(k), dur: lim.dur}, rt, proto, s.n, lifetime)
			s.recLatency(name, ceilingRow(k), r)
			s.failures(name, r)
			if k == c {
				rr := slotPhase(ctx, s.lan[:k], limits{ops: r.Issued, dur: lim.dur}, rt, proto, s.n, lifetime)
				s.recRate(fmt.Sprintf("N=%s: %s renew (unchanged), %s", count(level), pname, clients(k)), ceilingRow(k), rr.rate())
				s.failures(name+" renew", rr)
			}
			del.ops = r.Issued
			d := slotPhase(ctx, s.lan[:k], del, rt, proto, s.n, 0)
			if k == c {
				s.recRate(fmt.Sprintf("N=%s: %s unmap, %s", count(level), pname, clients(k)), "", d.rate())
			}
			s.failures(name+" unmap", d)
		}
	}
	for _, k := range []int{1, c} {
		ws := soapWorkers(s.topo.lan, k)
		name := fmt.Sprintf("N=%s: SOAP AddPortMapping, %s", count(level), clients(k))
		owner := make([]int, lim.ops)
		r := runPhase(ctx, k, lim, func(ctx context.Context, w, i int) error {
			owner[i] = w
			return ws[w].addPortMapping(ctx, s.ctl, s.n+i)
		})
		s.recLatency(name, "", r)
		s.failures(name, r)
		// Secure mode: a mapping is deleted by the host that made it.
		lists := make([][]int, k)
		for i := range r.Issued {
			lists[owner[i]] = append(lists[owner[i]], i)
		}
		d := listPhase(ctx, lists, del.dur, func(ctx context.Context, w, i int) error {
			return ws[w].deletePortMapping(ctx, s.ctl, s.n+i)
		})
		s.failures(name+" delete", d)
		closeSOAP(ws)
	}
}

// failures notes failed operations of a phase.
func (s *session) failures(name string, r phaseResult) {
	if r.Failed > 0 {
		s.note("%s: %d of %d failed (first: %v)", name, r.Failed, r.Issued, r.FirstErr)
	}
}

// recLatency records a rate with its median and 99th percentile latency.
func (s *session) recLatency(name, ceiling string, r phaseResult) {
	if r.OK == 0 {
		s.note("%s: no successful operation", name)
		return
	}
	s.recRate(name, ceiling, r.rate())
	s.rec(name+" p50", "µs", us(percentile(r.Lat, 50)))
	s.rec(name+" p99", "µs", us(percentile(r.Lat, 99)))
}

// checkCount notes when the daemon does not list exactly want mappings
// besides the forwarding one: a measurement left some behind or lost
// some.
func (s *session) checkCount(ctx context.Context, want int) {
	if s.fwd != 0 {
		want++
	}
	counter, where := s.countMappings, "lists"
	if want >= maxIndex {
		counter, where = s.kernelCount, "has in the kernel"
	}
	if n, err := counter(ctx); err != nil {
		s.note("counting mappings: %v", err)
	} else if n != want {
		s.note("the daemon %s %d mappings, the benchmark expected %d", where, n, want)
	}
}

// maxIndex is the number of entries GetGenericPortMappingEntry can
// reach: its index is a ui2 (WANIPConnection:1 §2.2).
const maxIndex = 1 << 16

func (s *session) kernelCount(ctx context.Context) (int, error) {
	return kernelMappings(ctx, s.topo.router, s.daemon)
}

// countMappings finds the number of mappings the IGD lists: the first
// index GetGenericPortMappingEntry refuses, by exponential and binary
// search.
func (s *session) countMappings(ctx context.Context) (int, error) {
	c := newSOAPClient(s.topo.lan, lanHost)
	defer c.close()
	ok := func(i int) (bool, error) {
		err := c.getGeneric(ctx, s.ctl, i)
		var f *soapFault
		if errors.As(err, &f) {
			return false, nil
		}
		return err == nil, err
	}
	lo, hi := -1, 1 // ok(lo) (or lo = -1), !ok(hi) once found
	for {
		o, err := ok(hi - 1)
		if err != nil {
			return 0, err
		}
		if !o {
			break
		}
		if hi >= maxIndex {
			return 0, fmt.Errorf("the IGD lists %d or more mappings, more than its index can count", maxIndex)
		}
		lo, hi = hi-1, hi*2
	}
	hi-- // !ok(hi)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		o, err := ok(mid)
		if err != nil {
			return 0, err
		}
		if o {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}

// conntrackEntries is the size of the conntrack table for the unmap
// measurement that depends on it.
const conntrackEntries = 20000

// conntrackCost measures PCP deletions with a full conntrack table (the
// nft backend flushes the flows of a deleted mapping).
func (s *session) conntrackCost(ctx context.Context) {
	name := fmt.Sprintf("N=0: PCP unmap, %s, %s conntrack entries", clients(s.b.s.clients), count(conntrackEntries))
	if err := fillConntrack(s.topo.router, s.topo.wanNet, conntrackEntries); err != nil {
		s.note("%s: %v", name, err)
		return
	}
	flush := func() {
		if err := flushConntrack(s.topo.router); err != nil {
			s.note("%s: %v", name, err)
		}
	}
	lim, rt := s.b.s.phase, s.b.s.retry
	lim.ops = min(lim.ops, 2000)
	r := slotPhase(ctx, s.clients(), lim, rt, "pcp", s.n, lifetime)
	s.failures(name+" (map)", r)
	d := slotPhase(ctx, s.clients(), limits{ops: r.Issued, dur: lim.dur}, rt, "pcp", s.n, 0)
	s.failures(name, d)
	if d.OK > 0 {
		s.recRate(name, "", d.rate())
	}
	flush()
	if d.Issued < r.Issued { // the rest, with an empty table
		rest := slotPhase(ctx, s.clients(), limits{ops: r.Issued - d.Issued, dur: s.b.s.cleanup}, rt, "pcp", s.n+d.Issued, 0)
		s.failures(name+" (rest)", rest)
	}
}

// memory records the daemon's RSS at a level and its growth per mapping
// since the daemon started (a Go heap holds garbage up to its GC target,
// so small N give noisy figures).
func (s *session) memory(level int) {
	rss, err := rssKiB(s.proc.pid())
	if err != nil {
		s.note("RSS at N=%d: %v", level, err)
		return
	}
	s.rec(fmt.Sprintf("RSS, N=%s", count(level)), "KiB", rss)
	if level > 0 && s.rss0 > 0 {
		s.rec(fmt.Sprintf("RSS growth per mapping (from start), N=%s", count(level)), "B", s.perMapping(rss, level))
	}
}

// perMapping is the growth of the daemon's RSS (KiB) since it started, in
// bytes per mapping of level.
func (s *session) perMapping(rss float64, level int) float64 {
	return (rss - s.rss0) * 1024 / float64(level)
}

// mapForward maps UDP fwdPort of the LAN host with PCP, for forwarding.
func (s *session) mapForward(ctx context.Context) error {
	var ext uint16
	nonce := pcpNonce(-1)
	r := udpPhase(ctx, s.lan[:1], limits{ops: 1, dur: time.Minute}, s.b.s.retry, func(int) udpOp {
		return pcpMap(lanHost, 17, fwdPort, fwdPort, nonce, lifetime, &ext)
	})
	if r.OK != 1 {
		if r.FirstErr == nil {
			r.FirstErr = ctx.Err()
		}
		return fmt.Errorf("pcp map of %v: %v", fwdPort, r.FirstErr)
	}
	s.fwd = ext
	return nil
}

// forwarding measures UDP round trips from the WAN through the mapping
// to the echo server in the LAN.
func (s *session) forwarding(ctx context.Context, level int) {
	if s.fwd == 0 {
		return
	}
	dst := netip.AddrPortFrom(s.topo.wanNet.router, s.fwd)
	for _, k := range []int{1, s.b.s.clients} {
		name := fmt.Sprintf("forwarding: UDP round trips WAN→LAN, N=%s, %s", count(level), clients(k))
		r := udpPhase(ctx, s.wan[:k], s.b.s.steady(), s.b.s.retry, func(i int) udpOp {
			return echoOp(netip.Addr{}, dst, 60, i)
		})
		s.recLatency(name, "", r)
		s.failures(name, r)
	}
}

// list walks GetGenericPortMappingEntry 0…N-1 on one connection.
func (s *session) list(ctx context.Context, level int) {
	c := newSOAPClient(s.topo.lan, lanHost)
	defer c.close()
	walk := min(level, maxIndex)
	r := runPhase(ctx, 1, limits{ops: walk, dur: s.b.s.listBudget}, func(ctx context.Context, _, i int) error {
		return c.getGeneric(ctx, s.ctl, i)
	})
	name := fmt.Sprintf("N=%s: list all (GetGenericPortMappingEntry 0…N-1)", count(level))
	if walk < level {
		name = fmt.Sprintf("N=%s: list the first %d (the index is a ui2)", count(level), walk)
	}
	if r.OK < walk {
		s.note("%s: %d of %d entries in %.1fs (budget %v; first error: %v); total not recorded",
			name, r.OK, walk, r.Elapsed.Seconds(), s.b.s.listBudget, r.FirstErr)
		if r.OK > 0 {
			s.rec(fmt.Sprintf("N=%s: list, per entry (first %d entries only)", count(level), r.OK), "µs", us(r.Elapsed)/float64(r.OK))
		}
		return
	}
	s.rec(name, "ms", ms(r.Elapsed))
	s.rec(fmt.Sprintf("N=%s: list, per entry", count(level)), "µs", us(r.Elapsed)/float64(walk))
}

// restart stops the daemon with N stored mappings and measures the time
// from starting it again until it answers, then checks that the mappings
// are back. It reports whether another restart makes sense.
func (s *session) restart(ctx context.Context, level int) bool {
	name := fmt.Sprintf("restart with N=%s stored: start to serving", count(level))
	if !s.stores() {
		switch {
		case s.b.s.storeMode == "off":
			s.note("%s: not measured: -berth-store off", name)
		case s.daemon == berth:
			s.note("%s: not measured: berthd has no lease store yet", name)
		default:
			s.note("%s: not measured (no berth figure to compare with; miniupnpd would need lease_file)", name)
		}
		return false
	}
	before, err := s.kernelCount(ctx)
	if err != nil {
		s.note("restart: %v", err)
		return false
	}
	d, err := s.proc.stop(2 * time.Minute)
	if err != nil {
		s.note("restart: %v", err)
		return false
	}
	s.rec(fmt.Sprintf("stop with N=%s (SIGTERM to exit)", count(level)), "ms", ms(d))
	if s.daemon == mini {
		// berthd removes its mappings at a clean stop and installs them
		// again from its store; miniupnpd starts from the same place.
		if err := nftLoad(ctx, s.topo.router, "flush chain inet filter miniupnpd\nflush chain inet filter prerouting_miniupnpd\nflush chain inet filter postrouting_miniupnpd\n"); err != nil {
			s.note("restart: %v", err)
			return false
		}
	}
	t0 := clk.Now()
	if s.daemon == mini {
		err = s.startMini(ctx, true)
	} else {
		_, err = s.startBerth(ctx)
	}
	serving := clk.Now().Sub(t0)
	if err != nil {
		s.note("restart: %v", err)
		return false
	}
	if s.daemon == berth { // a new HTTP port
		if s.ctl, err = discoverIGD(ctx, s.topo.lan); err != nil {
			s.note("restart: %v", err)
			return false
		}
	}
	after, err := s.kernelCount(ctx)
	if err != nil {
		s.note("restart: %v", err)
		return false
	}
	if after != before {
		s.note("%s: not recorded: %d mappings in the kernel before the restart, %d when it answered", name, before, after)
		return false
	}
	s.rec(name, "ms", ms(serving))
	// What a restart leaves resident: the restore's garbage counts until
	// the daemon gives it back.
	time.Sleep(time.Second)
	if rss, err := rssKiB(s.proc.pid()); err == nil {
		s.rec(fmt.Sprintf("RSS 1 s after the restart, N=%s", count(level)), "KiB", rss)
		if level > 0 && s.rss0 > 0 {
			s.rec(fmt.Sprintf("RSS per mapping (from start) after the restart, N=%s", count(level)), "B", s.perMapping(rss, level))
		}
	}
	return true
}
