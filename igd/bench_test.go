package igd

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/igd/description"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// BenchmarkAddPortMapping measures a refreshing AddPortMapping over HTTP
// (keep-alive) with 10,000 other mappings in the table.
func BenchmarkAddPortMapping(b *testing.B) {
	h := newHarness(b, options{policy: func(c *policy.Config) { c.Insecure = true }})
	ctx := context.Background()
	for i := range 10000 {
		c := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
		_, err := h.svc.Map(ctx, mapping.Request{
			Client: c, Proto: mapping.UDP, Internal: netip.AddrPortFrom(c, 5000),
			Suggest: netip.AddrPortFrom(netip.Addr{}, uint16(20000+i)), Exact: true,
			Lifetime: time.Hour, Origin: mapping.Origin{Kind: mapping.KindIGD},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	body := envelope(nsV1, "AddPortMapping", "NewRemoteHost", "", "NewExternalPort", "40000",
		"NewProtocol", "TCP", "NewInternalPort", "40000", "NewInternalClient", hostA.String(),
		"NewEnabled", "1", "NewPortMappingDescription", "bench", "NewLeaseDuration", "3600")
	client := h.client(hostA)
	url := h.base + description.WANIPConnectionControl
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("SOAPAction", `"`+nsV1+`#AddPortMapping"`)
		r := h.do(b, client, req)
		if r.status != 200 {
			b.Fatalf("request %s: status %d: %s", strconv.Itoa(i), r.status, r.body)
		}
	}
}
