package ssdp

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseSearch: no panic; an accepted search has a valid ST, survives
// AppendTo→ParseSearch, and every answer to it is a parseable HTTP
// response of at most 1 KiB. Seeds are the testdata captures.
func FuzzParseSearch(f *testing.F) {
	for _, c := range loadCaptures(f) {
		f.Add(c.msg)
	}
	f.Add([]byte("M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n"))
	f.Add([]byte("NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSearch(b)
		if err != nil {
			return
		}
		if checkST(s.ST) != nil || s.MX > MaxMX || s.MX < -1 {
			t.Fatalf("accepted an invalid search %+v", s)
		}
		again, err := ParseSearch(s.AppendTo(nil))
		if err != nil || again.ST != s.ST || again.MX != s.MX || again.UserAgent != s.UserAgent {
			t.Fatalf("round trip: %+v → %+v, %v", s, again, err)
		}
		for _, a := range Matches(s.ST, testDevice) {
			r := Response{ST: a.ST, USN: a.USN, Location: "http://192.168.100.254:65535/rootDesc.xml",
				Server: "Linux/6.12 UPnP/1.1 berth/1.0", BootID: 1<<31 - 1, ConfigID: 1<<24 - 1,
				Date: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
			out := r.AppendTo(nil)
			if len(out) > 1024 {
				t.Fatalf("answer of %d bytes", len(out))
			}
			res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil || res.Header.Get("ST") != a.ST || (a.ST != s.ST && !strings.EqualFold(s.ST, STAll)) {
				t.Fatalf("answer unreadable (%v) or ST changed: %q", err, out)
			}
		}
	})
}
