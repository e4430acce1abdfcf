package eventing

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestParseCallback(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fd00::/64")}
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "<http://192.168.1.20:5000/notify>", "http://192.168.1.20:5000/notify"},
		{"no port", "<http://192.168.1.20/>", "http://192.168.1.20/"},
		{"ipv6", "<http://[fd00::5]:2869/upnp>", "http://[fd00::5]:2869/upnp"},
		{"mapped v4", "<http://[::ffff:192.168.1.9]/>", "http://[::ffff:192.168.1.9]/"},
		{"two URLs", "<http://192.168.1.2/a> <http://192.168.1.3/b>", "http://192.168.1.2/a"},
		{"upper scheme", "<HTTP://192.168.1.2/a>", "http://192.168.1.2/a"},
		{"outside", "<http://198.51.100.1/>", ""},
		{"hostname", "<http://router.lan/>", ""},
		{"decimal IP", "<http://3232235796/>", ""},
		{"userinfo", "<http://u@192.168.1.2/>", ""},
		{"zone", "<http://[fe80::1%25eth0]/>", ""},
		{"port 0", "<http://192.168.1.2:0/>", ""},
		{"port text", "<http://192.168.1.2:x/>", ""},
		{"ftp", "<ftp://192.168.1.2/>", ""},
		{"unterminated", "<http://192.168.1.2/", ""},
		{"trailing junk", "<http://192.168.1.2/>x", ""},
		{"too many", "<http://192.168.1.2/><http://192.168.1.2/><http://192.168.1.2/><http://192.168.1.2/><http://192.168.1.2/>", ""},
	} {
		got, err := parseCallback(tc.in, lan)
		if tc.want == "" {
			if !errors.Is(err, errCallback) {
				t.Errorf("%s: got %q, %v; want errCallback", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestParseTimeout(t *testing.T) {
	lo, hi := 60*time.Second, 1800*time.Second
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"Second-300", 300 * time.Second},
		{"second-1800", hi},
		{"Second-5", lo},
		{"Second-99999999", hi},
		{"Second-99999999999999", hi},
		{"Second-infinite", hi},
		{"", hi},
		{"Second--1", hi},
		{"300", hi},
	} {
		if got := parseTimeout(tc.in, lo, hi); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNextSeq(t *testing.T) {
	for _, tc := range []struct{ in, want uint32 }{{0, 1}, {1, 2}, {4294967294, 4294967295}, {4294967295, 1}} {
		if got := nextSeq(tc.in); got != tc.want {
			t.Errorf("nextSeq(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestPropertySetEscapes(t *testing.T) {
	got := string(propertySet([]Var{{"ExternalIPAddress", `<a&"b'>`}}))
	want := `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><ExternalIPAddress>&lt;a&amp;&#34;b&#39;&gt;</ExternalIPAddress></e:property></e:propertyset>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestNewSID(t *testing.T) {
	a, b := newSID(), newSID()
	if a == b || len(a) != 41 || a[:5] != "uuid:" || a[19] != '4' {
		t.Errorf("SIDs %q, %q", a, b)
	}
}
