package ratelimit

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/logtest"
)

// A flood of spoofed sources is counted in full; the sources named are
// those the limiter's bounded table still holds, and the line says so.
func TestRateLimitDropSourcesBounded(t *testing.T) {
	clk := clocktest.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	var logs logtest.Buffer
	lim := New(1e-6, 1, 64)
	d := NewReport(clk, slog.New(slog.NewTextHandler(&logs, nil)), lim)
	defer d.Close()
	n := 164
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		for range 2 { // the second is refused
			if !lim.Allow(a, clk.Now()) {
				d.Dropped()
			}
		}
	}
	clk.Advance(ReportInterval)
	got := logs.Lines()
	if len(got) != 1 || !strings.Contains(got[0], "dropped=164 ") || !strings.Contains(got[0], "sources=64 ") ||
		!strings.Contains(got[0], "sources_capped=true") {
		t.Fatalf("got %q, want one line counting all %d drops, naming the 64 sources the table holds, capped", got, n)
	}
}
