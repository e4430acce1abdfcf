package main

import (
	"bytes"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/config"
)

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var out []time.Duration
		for _, v := range vs {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(rangeInts(1, 100)...), 99, 99 * time.Millisecond},
		{"p99 of 1000", ms(rangeInts(1, 1000)...), 99, 990 * time.Millisecond},
		{"p100 is the max", ms(3, 9, 1), 100, 9 * time.Millisecond},
		{"p0 is the min", ms(3, 9, 1), 0, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tt.ds...)
			if got := percentile(tt.ds, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for i := range in {
				if in[i] != tt.ds[i] {
					t.Fatalf("input modified: got %v, want %v", tt.ds, in)
				}
			}
		})
	}
}

func rangeInts(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		vs   []float64
		want float64
	}{
		{"one", []float64{4}, 4},
		{"odd", []float64{9, 1, 5}, 5},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.vs); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil): got %v, want NaN", got)
	}
}

func TestNumberAndCell(t *testing.T) {
	tests := []struct {
		vs   []float64
		want string
	}{
		{nil, "—"},
		{[]float64{12345.6}, "12,346"},
		{[]float64{1234567}, "1,234,567"},
		{[]float64{-4321}, "-4,321"},
		{[]float64{42.25}, "42.2"},
		{[]float64{3.14159}, "3.14"},
		{[]float64{math.NaN()}, "—"},
		{[]float64{300, 100, 200}, "200 (100–300)"},
		{[]float64{20000, 18000, 21000, 19000}, "19,500 (18,000–21,000)"},
	}
	for _, tt := range tests {
		if got := cell(tt.vs); got != tt.want {
			t.Errorf("cell(%v): got %q, want %q", tt.vs, got, tt.want)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 1: "1", 1000: "1k", 100000: "100k", 1500: "1500"} {
		if got := count(n); got != want {
			t.Errorf("count(%d): got %q, want %q", n, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	r := newRecorder()
	ceil := "ceiling, 1 client"
	for _, v := range []float64{100, 120, 110} {
		r.add(berth, ceil, "/s", "", v)
		r.add(mini, ceil, "/s", "", v*2)
	}
	for _, v := range []float64{50, 55, 60} {
		r.add(berth, "PCP map, 1 client", "/s", ceil, v)
		r.add(mini, "PCP map, 1 client", "/s", ceil, v/5)
	}
	r.add(berth, "RSS", "KiB", "", 2048)
	rows := r.rows()
	if len(rows) != 3 || rows[0].Name != ceil || rows[2].Name != "RSS" {
		t.Fatalf("got rows %+v, want the three metrics in the order first seen", rows)
	}
	if got, want := rows[1].Ratio, 55.0/11; math.Abs(got-want) > 1e-9 {
		t.Errorf("ratio: got %v, want %v", got, want)
	}
	if got, want := rows[1].BerthOfCeiling, 0.5; math.Abs(got-want) > 1e-9 {
		t.Errorf("berth of ceiling: got %v, want %v", got, want)
	}
	if got, want := rows[1].MiniOfCeiling, 11.0/220; math.Abs(got-want) > 1e-9 {
		t.Errorf("miniupnpd of ceiling: got %v, want %v", got, want)
	}
	var b bytes.Buffer
	if err := writeTable(&b, rows, true, true); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"| metric | unit | berth median (min–max) | miniupnpd median (min–max) | berth/miniupnpd | of ceiling (berth / miniupnpd) |",
		"|---|---|---|---|---|---|",
		"| ceiling, 1 client | /s | 110 (100–120) | 220 (200–240) | 0.50 |  |",
		"| PCP map, 1 client | /s | 55.0 (50.0–60.0) | 11.0 (10.0–12.0) | 5.00 | 50% / 5% |",
		"| RSS | KiB | 2,048 | — |  |  |",
		"",
	}, "\n")
	if got := b.String(); got != want {
		t.Errorf("got table\n%s\nwant\n%s", got, want)
	}
	b.Reset()
	if err := writeTable(&b, rows, false, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || strings.Contains(b.String(), "miniupnpd") {
		t.Errorf("got plain table without miniupnpd\n%s\nwant 4 lines and no miniupnpd column", b.String())
	}
}

func TestPoolAddr(t *testing.T) {
	pool := netip.MustParsePrefix(poolNet)
	seen := map[netip.Addr]bool{}
	for i := range poolSize {
		a := poolAddr(i)
		if !pool.Contains(a) {
			t.Fatalf("poolAddr(%d) = %v, outside %v", i, a, pool)
		}
		if b := a.As4(); b[3] == 0 || b[3] == 255 {
			t.Fatalf("poolAddr(%d) = %v, a .0 or .255 address", i, a)
		}
		if seen[a] {
			t.Fatalf("poolAddr(%d) = %v, seen before", i, a)
		}
		seen[a] = true
	}
	if poolAddr(poolSize) != poolAddr(0) {
		t.Errorf("poolAddr does not wrap at poolSize")
	}
}

func TestSlots(t *testing.T) {
	type key struct {
		udp  bool
		port uint16
	}
	seen := map[key]int{}
	for s := range maxSlots {
		sl := slotOf(s)
		if sl.port < portBase {
			t.Fatalf("slot %d: port %d below %d", s, sl.port, portBase)
		}
		for _, r := range reservedPorts {
			if sl.port == r {
				t.Fatalf("slot %d: reserved port %d", s, r)
			}
		}
		k := key{sl.udp, sl.port}
		if prev, ok := seen[k]; ok {
			t.Fatalf("slots %d and %d share %v", prev, s, k)
		}
		seen[k] = s
	}
	if last := slotOf(maxSlots - 1); last.port != 65535 {
		t.Errorf("last slot: got port %d, want 65535", last.port)
	}
	if a, b := pcpNonce(1), pcpNonce(1<<16+1); a == b {
		t.Errorf("slots 1 and 65537 share a nonce")
	}
}

func TestParseLevels(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"0,1000,10000", []int{0, 1000, 10000}, false},
		{" 0, 5 ", []int{0, 5}, false},
		{"1000", nil, true},
		{"0,10,5", nil, true},
		{"0,x", nil, true},
		{"0,1000000", nil, true},
		{"0,100000", []int{0, 100000}, false},
	}
	for _, tt := range tests {
		got, err := parseLevels(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseLevels(%q): got %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// A crowd's map phase sends as many requests per client as the 16
// clients' does, and that is the headroom a level must leave below
// maxSlots.
func TestPhaseOps(t *testing.T) {
	s := settings{phase: limits{ops: 1500}, clients: 16, crowd: 64}
	for k, want := range map[int]int{1: 1500, 16: 1500, 64: 6000} {
		if got := s.phaseOps(k); got != want {
			t.Errorf("phaseOps(%d) = %d, want %d", k, got, want)
		}
	}
	if got := s.concurrency(); len(got) != 3 || got[2] != 64 {
		t.Errorf("concurrency() = %v, want [1 16 64]", got)
	}
	s.crowd = 0
	if got := s.concurrency(); len(got) != 2 {
		t.Errorf("concurrency() without a crowd = %v, want [1 16]", got)
	}
}

// The daemon's configuration is valid, and it lifts the per-host UPnP
// request limit that the SOAP and listing phases would otherwise measure.
func TestBerthConfig(t *testing.T) {
	for _, c := range []struct {
		dir string
		off bool
	}{{"", false}, {t.TempDir(), false}, {"", true}} {
		cfg, err := config.Parse("bench.toml", []byte(berthConfig(c.dir, c.off)))
		if err != nil {
			t.Fatalf("store dir %q, off %t: %v", c.dir, c.off, err)
		}
		if cfg.UPnP.RateLimit != 0 || cfg.Backend != "nft" || cfg.Store.Enabled == c.off {
			t.Errorf("store dir %q, off %t: rate limit %d, backend %q, store %t", c.dir, c.off, cfg.UPnP.RateLimit, cfg.Backend, cfg.Store.Enabled)
		}
	}
}
