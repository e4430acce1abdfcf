package mapping

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestParseProtocol(t *testing.T) {
	tests := []struct {
		in      string
		want    Protocol
		wantErr bool
	}{
		{"tcp", TCP, false}, {"UDP", UDP, false}, {" Tcp ", TCP, false},
		{"", 0, true}, {"sctp", 0, true}, {"6", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseProtocol(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseProtocol(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if TCP.String() != "TCP" || Protocol(1).String() != "proto(1)" || Protocol(1).Valid() {
		t.Error("Protocol String/Valid wrong")
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr bool
	}{
		{"80", PortRange{80, 80}, false},
		{"1024-65535", PortRange{1024, 65535}, false},
		{" 0 - 5 ", PortRange{0, 5}, false},
		{"65536", PortRange{}, true},
		{"10-5", PortRange{}, true},
		{"-1", PortRange{}, true},
		{"a-b", PortRange{}, true},
		{"", PortRange{}, true},
		{"1-2-3", PortRange{}, true},
	}
	for _, tc := range tests {
		got, err := ParsePortRange(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestKeyOrder(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.2")
	r := netip.MustParseAddr("198.51.100.7")
	keys := []Key{
		{Proto: UDP, External: netip.AddrPortFrom(a, 80)},
		{Proto: TCP, External: netip.AddrPortFrom(a, 9000)},
		{Proto: TCP, External: netip.AddrPortFrom(a, 80), Remote: r},
		{Proto: TCP, External: netip.AddrPortFrom(a, 80)},
	}
	slices.SortFunc(keys, Key.Compare)
	want := []string{"TCP 203.0.113.2:80", "TCP 203.0.113.2:80 from 198.51.100.7", "UDP 203.0.113.2:80", "TCP 203.0.113.2:9000"}
	for i, k := range keys {
		if k.String() != want[i] {
			t.Errorf("position %d: got %v, want %v", i, k, want[i])
		}
	}
}

func TestFilterAndRemaining(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := netip.MustParseAddr("192.168.1.2")
	m := Mapping{
		Key:     Key{Proto: UDP, External: netip.MustParseAddrPort("203.0.113.2:5000")},
		Client:  c,
		Origin:  Origin{Kind: KindPCP},
		Expires: now.Add(90*time.Second + 700*time.Millisecond),
	}
	tests := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Proto: TCP}, false},
		{Filter{Client: c, Kind: KindPCP}, true},
		{Filter{Kind: KindIGD}, false},
		{Filter{Ports: PortRange{5000, 5000}}, true},
		{Filter{Ports: PortRange{1, 4999}}, false},
	}
	for _, tc := range tests {
		if got := tc.f.Match(m); got != tc.want {
			t.Errorf("%+v.Match = %v, want %v", tc.f, got, tc.want)
		}
	}
	if got := m.Remaining(now); got != 90*time.Second {
		t.Errorf("got remaining %v, want 90s (whole seconds)", got)
	}
	if got := m.Remaining(now.Add(time.Hour)); got != 0 {
		t.Errorf("got remaining %v after expiry, want 0", got)
	}
	if (Mapping{}).Remaining(now) != 0 || !(Mapping{}).Permanent() {
		t.Error("zero Expires must be permanent with 0 remaining")
	}
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"80", "1024-65535", "0-0", "10-5", "65536", "-", " 1 - 2 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if r.Empty() {
			t.Fatalf("%q parsed to empty range %v", s, r)
		}
		back, err := ParsePortRange(r.String())
		if err != nil || back != r {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, r, r.String(), back, err)
		}
	})
}

func FuzzParseProtocol(f *testing.F) {
	for _, s := range []string{"tcp", "UDP", "", "icmp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProtocol(s)
		if err != nil {
			return
		}
		if !p.Valid() {
			t.Fatalf("%q parsed to invalid %v", s, p)
		}
		if back, err := ParseProtocol(p.String()); err != nil || back != p {
			t.Fatalf("%q -> %v does not round-trip: %v, %v", s, p, back, err)
		}
	})
}

func TestLeaseSeconds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		left time.Duration
		want uint32
	}{
		{3600 * time.Second, 3600},
		{3599*time.Second + 600*time.Millisecond, 3600}, // nearest, not down
		{300 * time.Millisecond, 1},                     // alive: never 0
	} {
		if got := (Mapping{Expires: now.Add(tc.left)}).LeaseSeconds(now); got != tc.want {
			t.Errorf("%v left: got %d, want %d", tc.left, got, tc.want)
		}
	}
	if got := (Mapping{}).LeaseSeconds(now); got != 1<<32-1 {
		t.Errorf("permanent: got %d, want the largest value", got)
	}
}
