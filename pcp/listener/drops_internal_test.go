package listener

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/logtest"
	"github.com/berthd/berth/internal/ratelimit"
)

// The operator learns of rate-limited packets from one Warn line a minute
// at most, while there are any: how many, from how many sources, and the
// source that sent the most (its IPv6 /64); Stats counts every one.
func TestRateLimitDropsLogged(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clk := clocktest.NewFake(t0)
	var logs logtest.Buffer
	h := &countHandler{}
	// A bucket of 1 that never refills within the test.
	s, err := New(Config{Clock: clk, PCP: h, Rate: 1e-6, Burst: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Binds:  []Bind{{Addr: netip.MustParseAddr("127.0.0.100")}},
		LAN:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/48")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	logs.Lines() // the start-up lines
	send := func(from string, n int) {
		t.Helper()
		for range n {
			s.handle([]byte{2, 1, 0, 0}, netip.MustParseAddrPort(from), nil)
		}
	}
	send("127.0.0.1:5350", 5)    // 1 served, 4 dropped
	send("127.0.0.2:5350", 3)    // 1 served, 2 dropped
	send("[fd00:0:0:7::1]:1", 2) // 1 served, 1 dropped
	send("[fd00:0:0:7::2]:1", 2) // the same /64: 2 dropped
	if h.n != 3 {
		t.Fatalf("%d packets handled, want 3", h.n)
	}
	clk.Advance(ratelimit.ReportInterval - time.Millisecond)
	if got := logs.Lines(); len(got) != 0 {
		t.Fatalf("logged before the minute was up: %q", got)
	}
	clk.Advance(time.Millisecond)
	got := logs.Lines()
	if len(got) != 1 || !strings.Contains(got[0], "level=WARN") ||
		!strings.Contains(got[0], "dropped=9 ") || !strings.Contains(got[0], "sources=3 ") ||
		!strings.Contains(got[0], "top=127.0.0.1 top_dropped=4") {
		t.Fatalf("got %q, want one Warn line: 9 dropped from 3 sources, most (4) from 127.0.0.1", got)
	}
	if st := s.Stats(); st.RateLimited != 9 {
		t.Fatalf("Stats counts %d rate-limited, want 9", st.RateLimited)
	}

	// The next minute starts with the next drop, and counts only its own.
	clk.Advance(10 * time.Second)
	send("[fd00:0:0:7::3]:1", 3)
	send("127.0.0.1:5350", 1)
	clk.Advance(ratelimit.ReportInterval - time.Millisecond)
	if got := logs.Lines(); len(got) != 0 {
		t.Fatalf("logged before the minute was up: %q", got)
	}
	clk.Advance(time.Millisecond)
	got = logs.Lines()
	if len(got) != 1 || !strings.Contains(got[0], "dropped=4 ") || !strings.Contains(got[0], "sources=2 ") ||
		!strings.Contains(got[0], "top=fd00:0:0:7::/64 top_dropped=3") {
		t.Fatalf("got %q, want one line: 4 dropped from 2 sources, most (3) from fd00:0:0:7::/64", got)
	}

	// A quiet minute logs nothing and leaves no timer.
	clk.Advance(10 * ratelimit.ReportInterval)
	if got := logs.Lines(); len(got) != 0 || clk.Pending() != 0 {
		t.Fatalf("quiet: logged %q with %d timers pending, want nothing", got, clk.Pending())
	}

	// Close drops a pending report.
	send("127.0.0.2:5350", 1)
	s.Close()
	clk.Advance(ratelimit.ReportInterval)
	if got := logs.Lines(); len(got) != 0 || clk.Pending() != 0 {
		t.Fatalf("after Close: logged %q with %d timers pending, want nothing", got, clk.Pending())
	}
}
