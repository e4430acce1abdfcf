package listener

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
)

// sent is one announcement handed to writeAnnouncement.
type sent struct {
	at  time.Duration // since the start of the test
	msg string        // "natpmp <external address> <epoch>" or "pcp <epoch>"
	dst netip.AddrPort
}

// announceRig is a Server with both protocols whose announcements are
// recorded, not sent, so that the production destinations (the defaults
// of Config) can be seen on a host whose loopback does not deliver them.
type announceRig struct {
	clk   *clocktest.Fake
	t0    time.Time
	srv   *Server
	mu    sync.Mutex
	log   []sent
	ext   netip.Addr // what NAT-PMP announces
	has6  bool       // an IPv6 bind too
	epoch uint32
}

func newAnnounceRig(t *testing.T) *announceRig {
	t.Helper()
	r := &announceRig{t0: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), ext: netip.MustParseAddr("203.0.113.2"), epoch: 77}
	r.clk = clocktest.NewFake(r.t0)
	binds := []Bind{{Addr: netip.MustParseAddr("127.0.0.100")}}
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		c.Close()
		r.has6 = true
		binds = append(binds, Bind{Addr: netip.IPv6Loopback()})
	} else if os.Getenv("BERTH_E2E") == "1" {
		// Without it the [ff02::1] announcements go unchecked; CI has it.
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	var err error
	r.srv, err = New(Config{Clock: r.clk, Binds: binds, PCP: &pcp.Handler{}, NATPMP: &natpmp.Handler{},
		Epoch: func() uint32 { r.mu.Lock(); defer r.mu.Unlock(); return r.epoch },
		NATPMPAnnouncement: func(epoch uint32) []byte {
			r.mu.Lock()
			defer r.mu.Unlock()
			return natpmp.Announcement(epoch, r.ext).AppendTo(nil)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Close() })
	r.srv.writeAnnouncement = func(from Bind, payload []byte, dst netip.AddrPort) error {
		var msg string
		if resp, err := natpmp.ParseResponse(payload); err == nil && payload[0] == 0 {
			msg = "natpmp " + resp.ExternalAddr.String() + " " + itoa(resp.Epoch)
		} else if resp, err := pcp.ParseResponse(payload); err == nil && resp.Op == pcp.OpAnnounce {
			msg = "pcp " + itoa(resp.Epoch)
		} else {
			t.Errorf("announcement % x is neither NAT-PMP nor PCP ANNOUNCE", payload)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.log = append(r.log, sent{at: r.clk.Now().Sub(r.t0), msg: msg, dst: dst})
		return nil
	}
	return r
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// taken returns what was sent since the last call.
func (r *announceRig) taken() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

// wantRound is one round of announcements from every bind at at: NAT-PMP
// to 224.0.0.1 on 5350 and on 5351 (pre-RFC clients, COMPAT N10), PCP
// ANNOUNCE to 224.0.0.1 and ff02::1 on 5350 only (RFC 6887 §14.1.3).
func (r *announceRig) wantRound(at time.Duration, ext string, epoch uint32) []string {
	e := itoa(epoch)
	out := []string{
		at.String() + " natpmp " + ext + " " + e + " -> 224.0.0.1:5350",
		at.String() + " natpmp " + ext + " " + e + " -> 224.0.0.1:5351",
		at.String() + " pcp " + e + " -> 224.0.0.1:5350",
	}
	if r.has6 {
		out = append(out, at.String()+" pcp "+e+" -> [ff02::1]:5350")
	}
	slices.Sort(out)
	return out
}

func render(ss []sent) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.at.String() + " " + s.msg + " -> " + s.dst.String()
	}
	slices.Sort(out)
	return out
}

// due are the instants of the 10 announcements of a series, from its
// start: at once, then after 250 ms, doubling (RFC 6886 §3.2.1, RFC 6887
// §14.1.3).
var due = []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond,
	3750 * time.Millisecond, 7750 * time.Millisecond, 15750 * time.Millisecond, 31750 * time.Millisecond,
	63750 * time.Millisecond, 127750 * time.Millisecond}

// checkSeries advances the clock from start (a series just began there
// and its first round was taken) through the rest of the series: nothing
// before each due instant, one round at it. upTo limits the rounds (the
// whole series when 0).
func (r *announceRig) checkSeries(t *testing.T, start time.Duration, ext string, upTo int) {
	t.Helper()
	if upTo == 0 {
		upTo = len(due)
	}
	for i := 1; i < upTo; i++ {
		at := start + due[i]
		r.clk.Set(r.t0.Add(at - time.Millisecond))
		if got := r.taken(); len(got) != 0 {
			t.Fatalf("round %d: sent before %v: %v", i+1, at, render(got))
		}
		r.clk.Set(r.t0.Add(at))
		if got, want := render(r.taken()), r.wantRound(at, ext, r.epoch); !slices.Equal(got, want) {
			t.Fatalf("round %d at %v:\ngot  %s\nwant %s", i+1, at, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
		}
	}
}

// COMPAT N10, C9: 10 rounds, the first at once and then 250 ms apart,
// doubling; NAT-PMP to 224.0.0.1:5350 and :5351, PCP to 224.0.0.1:5350
// and [ff02::1]:5350; then nothing more.
func TestAnnouncementSchedule(t *testing.T) {
	r := newAnnounceRig(t)
	r.srv.Announce()
	if got, want := render(r.taken()), r.wantRound(0, "203.0.113.2", r.epoch); !slices.Equal(got, want) {
		t.Fatalf("first round:\ngot  %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	r.checkSeries(t, 0, "203.0.113.2", 0)
	r.clk.Advance(time.Hour)
	if got := r.taken(); len(got) != 0 || r.clk.Pending() != 0 {
		t.Fatalf("after the 10th round: sent %v, %d timers pending; want nothing", render(got), r.clk.Pending())
	}
}

// A new external address (the daemon calls Announce on the change)
// restarts the series for PCP as well as NAT-PMP: a round at once with the
// new address, then the whole schedule again from there, and nothing of
// the old series.
func TestAnnouncementRestart(t *testing.T) {
	r := newAnnounceRig(t)
	r.srv.Announce()
	r.taken()
	r.checkSeries(t, 0, "203.0.113.2", 4) // rounds 2-4, the last at 1750 ms
	restart := 2 * time.Second            // between rounds 4 and 5
	r.clk.Set(r.t0.Add(restart))
	r.mu.Lock()
	r.ext, r.epoch = netip.MustParseAddr("198.51.100.9"), 78
	r.mu.Unlock()
	r.srv.Announce()
	if got, want := render(r.taken()), r.wantRound(restart, "198.51.100.9", 78); !slices.Equal(got, want) {
		t.Fatalf("at the change:\ngot  %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	r.checkSeries(t, restart, "198.51.100.9", 0)
	r.clk.Advance(time.Hour)
	if got := r.taken(); len(got) != 0 || r.clk.Pending() != 0 {
		t.Fatalf("after the restarted series: sent %v, %d timers pending; want nothing", render(got), r.clk.Pending())
	}
}
