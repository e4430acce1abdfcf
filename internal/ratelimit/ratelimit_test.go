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
