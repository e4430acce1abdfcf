package eventing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits on the CALLBACK header: UDA allows several URLs, clients send one.
const (
	maxCallbackLen  = 512
	maxCallbackURLs = 4
)

// errCallback is returned for a CALLBACK header berth refuses; it is
// answered with 412 Precondition Failed (UDA 1.1 §4.1.2).
var errCallback = errors.New("eventing: bad callback")

// parseCallback parses a CALLBACK header ("<http://ip:port/path>" one or
// more times) and returns the URL to deliver to: the first one.
//
// CallStranger (CVE-2020-12695): every URL must be http:// with an IP
// literal host inside one of the lan prefixes, so NOTIFYs can never be
// aimed at the WAN or at a name resolved elsewhere. The requester's own
// address is not required: Windows subscribes over IPv6 with an IPv4
// callback. One bad URL fails the whole header (fail closed); no
// connection is attempted for a refused subscription.
func parseCallback(h string, lan []netip.Prefix) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" || len(h) > maxCallbackLen {
		return "", fmt.Errorf("%w: empty or longer than %d bytes", errCallback, maxCallbackLen)
	}
	var first string
	for n := 0; h != ""; n++ {
		if n == maxCallbackURLs {
			return "", fmt.Errorf("%w: more than %d URLs", errCallback, maxCallbackURLs)
		}
		if h[0] != '<' {
			return "", fmt.Errorf("%w: %q: want <url>", errCallback, h)
		}
		end := strings.IndexByte(h, '>')
		if end < 0 {
			return "", fmt.Errorf("%w: %q: missing >", errCallback, h)
		}
		u, err := checkCallbackURL(h[1:end], lan)
		if err != nil {
			return "", err
		}
		if first == "" {
			first = u
		}
		h = strings.TrimLeft(h[end+1:], " \t")
	}
	return first, nil
}

// checkCallbackURL validates one callback URL and returns it normalised.
func checkCallbackURL(raw string, lan []netip.Prefix) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCallback, err)
	}
	if !strings.EqualFold(u.Scheme, "http") || u.User != nil || u.Opaque != "" {
		return "", fmt.Errorf("%w: %q: want http://ip[:port]/path", errCallback, raw)
	}
	addr, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return "", fmt.Errorf("%w: %q: host is not an IP literal", errCallback, raw)
	}
	addr = addr.Unmap()
	if addr.Zone() != "" || addr.IsUnspecified() || addr.IsMulticast() || !inLAN(addr, lan) {
		return "", fmt.Errorf("%w: %q: address outside the LAN", errCallback, raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("%w: %q: bad port", errCallback, raw)
		}
	}
	u.Scheme = "http"
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}

func inLAN(a netip.Addr, lan []netip.Prefix) bool {
	for _, p := range lan {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseTimeout parses a TIMEOUT header ("Second-N" or "Second-infinite",
// case-insensitive) and clamps it to [lo, hi]. A missing or garbled
// header, and "infinite", mean hi.
func parseTimeout(h string, lo, hi time.Duration) time.Duration {
	h = strings.TrimSpace(h)
	const prefix = "second-"
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return hi
	}
	n, err := strconv.ParseUint(h[len(prefix):], 10, 32)
	if err != nil {
		return hi
	}
	return min(hi, max(lo, time.Duration(n)*time.Second))
}

// formatTimeout renders d as a TIMEOUT header value.
func formatTimeout(d time.Duration) string {
	return "Second-" + strconv.FormatInt(int64(d/time.Second), 10)
}

// newSID returns a fresh "uuid:..." subscription identifier (a random,
// version 4 UUID).
func newSID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
