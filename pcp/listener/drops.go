package listener

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/ratelimit"
)

// dropReportInterval is the least time between two log lines about
// rate-limited packets: a flood is seen in the log without flooding it.
const dropReportInterval = time.Minute

// dropReport logs one Warn line a minute while the per-client rate limit
// drops packets: how many since the last line, from how many sources, and
// the source that sent the most. The limiter counts them; the first drop
// after a quiet spell starts the minute, and a minute without a drop logs
// nothing.
type dropReport struct {
	clk clock.Clock
	log *slog.Logger
	lim *ratelimit.Limiter

	// armed is set while a line is due: a drop during a flood costs one
	// atomic load. It changes only under mu.
	armed  atomic.Bool
	mu     sync.Mutex
	stop   func() bool // the pending line's timer; nil when none
	closed bool
}

func newDropReport(clk clock.Clock, log *slog.Logger, lim *ratelimit.Limiter) *dropReport {
	return &dropReport{clk: clk, log: log, lim: lim}
}

// dropped notes that the limit dropped a packet.
func (d *dropReport) dropped() {
	if d.armed.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.armed.Load() {
		return
	}
	d.armed.Store(true)
	d.stop = d.clk.AfterFunc(dropReportInterval, d.flush)
}

// flush logs what the limiter refused since the last line.
func (d *dropReport) flush() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.stop = nil
	d.armed.Store(false)
	den := d.lim.Denials()
	d.mu.Unlock()
	if den.Total == 0 {
		return
	}
	d.log.Warn("requests dropped by the per-client rate limit", "dropped", den.Total, "in", dropReportInterval,
		"sources", den.Sources, "sources_capped", den.Capped, "top", ratelimit.Source(den.Top), "top_dropped", den.TopN)
}

// close stops the pending line, if any; nothing is logged after it.
func (d *dropReport) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}
