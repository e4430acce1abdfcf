package ratelimit

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthd/berth/internal/clock"
)

// ReportInterval is the least time between two log lines about
// rate-limited requests: a flood is seen in the log without flooding it.
const ReportInterval = time.Minute

// Report logs one Warn line a minute while a Limiter refuses requests: how
// many since the last line, from how many sources, and the source that
// sent the most. The Limiter counts them; the first refusal after a quiet
// spell starts the minute, and a minute without one logs nothing.
type Report struct {
	clk clock.Clock
	log *slog.Logger
	lim *Limiter

	// armed is set while a line is due: a drop during a flood costs one
	// atomic load. It changes only under mu.
	armed  atomic.Bool
	mu     sync.Mutex
	stop   func() bool // the pending line's timer; nil when none
	closed bool
}

// NewReport returns the Report of lim's refusals, logged to log.
func NewReport(clk clock.Clock, log *slog.Logger, lim *Limiter) *Report {
	return &Report{clk: clk, log: log, lim: lim}
}

// Dropped notes that the limit refused a request.
func (d *Report) Dropped() {
	if d.armed.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.armed.Load() {
		return
	}
	d.armed.Store(true)
	d.stop = d.clk.AfterFunc(ReportInterval, d.flush)
}

// flush logs what the limiter refused since the last line.
func (d *Report) flush() {
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
	d.log.Warn("requests dropped by the per-client rate limit", "dropped", den.Total, "in", ReportInterval,
		"sources", den.Sources, "sources_capped", den.Capped, "top", Source(den.Top), "top_dropped", den.TopN)
}

// Close stops the pending line, if any; nothing is logged after it.
func (d *Report) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}
