package interop

import (
	"bufio"
	"context"
	"encoding/hex"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend/fake"
	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/natpmp"
	"github.com/berthd/berth/pcp"
	"github.com/berthd/berth/pcp/listener"
)

type capture struct{ name, req, reply []byte }

// loadCaptures reads test/captures/miniupnpd-2.3.1.txt: name, request and
// reply hex per line, made by test/captures/miniupnpd.sh.
func loadCaptures(t *testing.T) []capture {
	t.Helper()
	f, err := os.Open("../captures/miniupnpd-2.3.1.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capture
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		fs := strings.Fields(line)
		c := capture{name: []byte(fs[0])}
		if c.req, err = hex.DecodeString(fs[1]); err != nil {
			t.Fatalf("%s: %v", fs[0], err)
		}
		if len(fs) > 2 {
			if c.reply, err = hex.DecodeString(fs[2]); err != nil {
				t.Fatalf("%s: %v", fs[0], err)
			}
		}
		out = append(out, c)
	}
	return out
}

// TestSameAnswersAsMiniupnpd replays the requests miniupnpd 2.3.1 was sent,
// in order, to berth's handlers set up like it (same addresses, same
// rules) and compares the replies byte for byte apart from the epoch. The
// cases where berth answers differently on purpose are listed with the
// reason and berth's answer is checked instead.
func TestSameAnswersAsMiniupnpd(t *testing.T) {
	lan := netip.MustParsePrefix("192.168.77.0/24")
	pol, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Lifetime: map[mapping.Kind]policy.Lifetimes{
		mapping.KindNATPMP: {Min: 120 * time.Second, Max: 86400 * time.Second},
		mapping.KindPCP:    {Min: 120 * time.Second, Max: 86400 * time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	svc := portmap.New(portmap.Config{Backend: &fake.Backend{}, Policy: pol, Clock: clocktest.NewFake(now),
		External: netip.MustParseAddr("11.22.33.2")})
	defer svc.Close()
	pmpH := &natpmp.Handler{Mapper: svc, Epoch: svc.Epoch}
	pcpH := &pcp.Handler{Mapper: svc, Epoch: svc.Epoch}
	from := netip.MustParseAddrPort("192.168.77.10:55229")

	differs := map[string]func(t *testing.T, ours []byte){
		// COMPAT N2: a version berth does not speak gets the version
		// negotiation answer; miniupnpd took the 2 bytes for a short PCP
		// packet and stayed silent.
		"natpmp-version1": func(t *testing.T, ours []byte) {
			if len(ours) < 4 || ours[0] != pcp.Version || ours[3] != byte(pcp.UnsuppVersion) {
				t.Fatalf("got % x, want a version 2 UNSUPP_VERSION reply", ours)
			}
		},
		// COMPAT C8: the answer to another version carries version 2;
		// miniupnpd answers in the pre-standard version 1.
		"pcp-version1": func(t *testing.T, ours []byte) {
			if len(ours) < 4 || ours[0] != pcp.Version || ours[3] != byte(pcp.UnsuppVersion) {
				t.Fatalf("got % x, want a version 2 UNSUPP_VERSION reply", ours)
			}
		},
		// COMPAT C2, C6: a refusal is answered at once, with the MAP body
		// and a long error lifetime; miniupnpd searched for another port
		// for longer than 10 s and sent nothing, so clients time out.
		"pcp-map-tcp-privileged": func(t *testing.T, ours []byte) {
			r, err := pcp.ParseResponse(ours)
			if err != nil || len(ours) != 60 || r.Result != pcp.NotAuthorized || r.InternalPort != 22 {
				t.Fatalf("got % x (%v), want a 60-byte NOT_AUTHORIZED for port 22", ours, err)
			}
		},
		// RFC 6887 §15.1 (erratum 3621): a delete's reply copies the
		// suggested external address and port of the request (here
		// ::ffff:0.0.0.0 and 6000), so that a retransmitted delete is
		// answered alike (§8); miniupnpd puts its external address there.
		"pcp-map-delete": func(t *testing.T, ours []byte) {
			r, err := pcp.ParseResponse(ours)
			if err != nil || len(ours) != 60 || r.Result != pcp.Success || r.Lifetime != 0 || r.Protocol != 17 ||
				r.InternalPort != 5000 || r.ExternalPort != 6000 || r.ExternalAddr != netip.IPv4Unspecified() {
				t.Fatalf("got % x (%v), want a 60-byte SUCCESS for UDP 5000, lifetime 0, copying 0.0.0.0:6000", ours, err)
			}
		},
		// COMPAT N3: the same for NAT-PMP, 16 bytes, result 2.
		"natpmp-map-tcp-privileged": func(t *testing.T, ours []byte) {
			r, err := natpmp.ParseResponse(ours)
			if err != nil || len(ours) != 16 || r.Result != natpmp.NotAuthorized || r.InternalPort != 22 {
				t.Fatalf("got % x (%v), want a 16-byte NotAuthorized for port 22", ours, err)
			}
		},
	}
	cases := loadCaptures(t)
	if len(cases) < 10 {
		t.Fatalf("only %d captured cases", len(cases))
	}
	for _, c := range cases {
		name := string(c.name)
		t.Run(name, func(t *testing.T) {
			h := listener.Handler(pcpH)
			if c.req[0] == 0 {
				h = pmpH
			}
			ours := h.Handle(context.Background(), c.req, from, now, nil)
			if check, ok := differs[name]; ok {
				check(t, ours)
				return
			}
			if got, want := withoutEpoch(ours), withoutEpoch(c.reply); got != want {
				t.Fatalf("berth % x\nminiupnpd % x\n(epoch masked)", ours, c.reply)
			}
		})
	}
}

// withoutEpoch returns the reply as hex with the epoch field zeroed:
// bytes 4-7 for NAT-PMP (RFC 6886 §3.2), 8-11 for PCP (RFC 6887 §7.2).
func withoutEpoch(b []byte) string {
	c := append([]byte(nil), b...)
	switch {
	case len(c) >= 8 && c[0] == 0:
		copy(c[4:8], make([]byte, 4))
	case len(c) >= 12:
		copy(c[8:12], make([]byte, 4))
	}
	return hex.EncodeToString(c)
}
