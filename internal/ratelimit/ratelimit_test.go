package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(10, 3, 16)
	a := netip.MustParseAddr("192.168.1.2")
	for i := range 3 {
		if !l.Allow(a, t0) {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.Allow(a, t0) {
		t.Fatal("fourth request in the same instant allowed")
	}
	if !l.Allow(a, t0.Add(100*time.Millisecond)) {
		t.Fatal("a token did not come back after 1/rate")
	}
}

// A full table must not lock newcomers out (review finding: a LAN host
// spraying spoofed sources did), and its size stays bounded.
func TestFullTableAdmitsNewcomers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(50, 100, 64)
	for i := range 10_000 {
		spoofed := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		l.Allow(spoofed, t0)
	}
	if !l.Allow(netip.MustParseAddr("192.168.1.2"), t0) {
		t.Fatal("a real client was refused because the table was full")
	}
	if n := l.Len(); n != 64 {
		t.Fatalf("table holds %d buckets, want the bound 64", n)
	}
}

func TestKeysIPv6By64(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(1, 2, 16)
	l.Allow(netip.MustParseAddr("2001:db8:1:2::1"), t0)
	l.Allow(netip.MustParseAddr("2001:db8:1:2::2"), t0)
	if l.Allow(netip.MustParseAddr("2001:db8:1:2:ffff::3"), t0) {
		t.Fatal("a third address of the same /64 got its own bucket")
	}
	if !l.Allow(netip.MustParseAddr("2001:db8:1:3::1"), t0) {
		t.Fatal("another /64 shares the bucket")
	}
}

// TestDenials: the refusals are counted per client (by Key) and in all,
// the client refused most is named, and each call starts over. Clients
// that leave the full table stay in the total and mark the sources as a
// lower bound.
func TestDenials(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(1e-6, 1, 4)
	try := func(a string, n int) {
		for range n {
			l.Allow(netip.MustParseAddr(a), t0)
		}
	}
	try("192.168.1.2", 5)     // 4 refused
	try("192.168.1.3", 2)     // 1 refused
	try("2001:db8:1:2::1", 2) // 1 refused
	try("2001:db8:1:2::2", 3) // the same /64: 3 refused
	want := Denials{Total: 9, Sources: 3, Top: netip.MustParseAddr("192.168.1.2"), TopN: 4}
	if got := l.Denials(); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got := l.Denials(); got != (Denials{}) {
		t.Fatalf("second call: got %+v, want nothing refused", got)
	}
	try("2001:db8:1:2::9", 2)
	if got := l.Denials(); got.TopN != 2 || Source(got.Top) != "2001:db8:1:2::/64" {
		t.Fatalf("got top %s refused %d times, want 2001:db8:1:2::/64 twice", Source(got.Top), got.TopN)
	}
	// Spoofed sources beyond the table of 4: all counted, sources capped.
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		l.Allow(a, t0)
		l.Allow(a, t0)
	}
	if got := l.Denials(); got.Total != 10 || got.Sources != 4 || !got.Capped {
		t.Fatalf("got %+v, want 10 refused, 4 sources still in the table, capped", got)
	}
	if Source(netip.MustParseAddr("192.168.1.2")) != "192.168.1.2" {
		t.Error("an IPv4 source is named by its address")
	}
}
