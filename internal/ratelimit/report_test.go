package ratelimit

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock/clocktest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines written since the last call.
func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	l.b.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// A flood of spoofed sources is counted in full; the sources named are
// those the limiter's bounded table still holds, and the line says so.
func TestRateLimitDropSourcesBounded(t *testing.T) {
	clk := clocktest.NewFake(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	var logs lockedBuffer
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
	got := logs.lines()
	if len(got) != 1 || !strings.Contains(got[0], "dropped=164 ") || !strings.Contains(got[0], "sources=64 ") ||
		!strings.Contains(got[0], "sources_capped=true") {
		t.Fatalf("got %q, want one line counting all %d drops, naming the 64 sources the table holds, capped", got, n)
	}
}
