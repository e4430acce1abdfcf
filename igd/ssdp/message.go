// Package ssdp is the discovery part of berth's UPnP IGD responder: it
// answers M-SEARCH requests and multicasts NOTIFY ssdp:alive/ssdp:byebye
// announcements (UPnP Device Architecture 1.1 §1, "Discovery").
//
// The codec in this file is deliberately more tolerant than net/http when
// reading (COMPAT S7: clients in the wild send LF-only lines, tabs, no space
// after colons, extra blank lines) and strict when writing (COMPAT S3: CRLF,
// exactly one space after each colon, parseable by net/http.ReadResponse).
package ssdp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxSearchLen is the largest M-SEARCH accepted. Real requests are
// 100–300 bytes; anything bigger is not a client we know.
const MaxSearchLen = 2048

// MaxMX is the largest MX honoured (UDA 1.1 §1.3.2: "should be between 1
// and 5"). The server never waits that long anyway (COMPAT S6).
const MaxMX = 5

// maxST bounds the search target. Known targets are < 100 bytes.
const maxST = 256

// maxUA bounds the stored User-Agent.
const maxUA = 256

// DefaultMaxAge is the CACHE-CONTROL max-age sent when none is given
// (miniupnpd uses 1800 s; COMPAT S3).
const DefaultMaxAge = 1800

// MulticastHost is the HOST of multicast SSDP messages.
const MulticastHost = "239.255.255.250:1900"

// dateLayout is http.TimeFormat, without importing net/http.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

// Search is a decoded M-SEARCH request (UDA 1.1 §1.3.2):
//
//	M-SEARCH * HTTP/1.1
//	HOST: 239.255.255.250:1900
//	MAN: "ssdp:discover"
//	MX: seconds to delay response
//	ST: search target
//	USER-AGENT: OS/version UPnP/1.1 product/version
type Search struct {
	// ST is the search target, trimmed; never empty and only printable
	// ASCII without spaces, because answers echo it verbatim (S2).
	ST string
	// MX is the maximum wait in seconds capped at MaxMX, or -1 when the
	// header is absent or not a number (answered anyway; S7).
	MX int
	// UserAgent is the USER-AGENT header without control characters,
	// at most 256 bytes; "" when absent.
	UserAgent string
	// Man is the MAN header without surrounding quotes; "" when absent.
	// It is not checked: miniupnpd drops bad MANs only under UPNP_STRICT.
	Man string
}

// ParseError says why a message was refused and where.
type ParseError struct {
	Field string // "length", "start-line", "header", "ST"
	Off   int    // byte offset of the offending line
	Msg   string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("ssdp: %s at offset %d: %s", e.Field, e.Off, e.Msg)
}

// ErrNotSearch is wrapped by the ParseError for well-formed SSDP traffic
// that is not an M-SEARCH (NOTIFYs and search responses from other
// devices), so the server can ignore it without counting it as garbage.
var ErrNotSearch = errors.New("not an M-SEARCH")

// Unwrap returns ErrNotSearch for other devices' messages.
func (e *ParseError) Unwrap() error {
	if e.Field == "start-line" && e.Msg == ErrNotSearch.Error() {
		return ErrNotSearch
	}
	return nil
}

// ParseSearch decodes an M-SEARCH request. Tolerated (COMPAT S7):
// header names in any case, no or extra spaces and tabs around values, LF
// or CRLF line ends, blank lines anywhere (libtorrent ends with three
// CRLFs), missing MAN and MX, a start line with extra blanks, HTTP/1.0.
// Refused: more than MaxSearchLen bytes, another method, header lines
// without a colon, a missing or empty ST, an ST with spaces or control
// characters.
func ParseSearch(b []byte) (Search, error) {
	if len(b) > MaxSearchLen {
		return Search{}, &ParseError{Field: "length", Off: MaxSearchLen, Msg: "message too long"}
	}
	s := Search{MX: -1}
	off, start := 0, true
	var haveST, haveMX, haveMan, haveUA bool
	for off < len(b) {
		lineOff := off
		line := b[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, off = line[:i], off+i+1
		} else {
			off = len(b)
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.Trim(line, " \t")) == 0 {
			continue // blank line: libtorrent sends extras; nothing follows a request
		}
		if start {
			if err := parseStartLine(line, lineOff); err != nil {
				return Search{}, err
			}
			start = false
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return Search{}, &ParseError{Field: "header", Off: lineOff, Msg: "no name or colon"}
		}
		name := string(bytes.Trim(line[:colon], " \t"))
		if name == "" || strings.ContainsAny(name, " \t") {
			return Search{}, &ParseError{Field: "header", Off: lineOff, Msg: "blank in header name"}
		}
		value := string(bytes.Trim(line[colon+1:], " \t"))
		switch {
		case strings.EqualFold(name, "ST") && !haveST:
			haveST = true
			s.ST = value
		case strings.EqualFold(name, "MX") && !haveMX:
			haveMX = true
			s.MX = parseMX(value)
		case strings.EqualFold(name, "MAN") && !haveMan:
			haveMan = true
			s.Man = strings.Trim(value, `"`)
		case strings.EqualFold(name, "USER-AGENT") && !haveUA:
			haveUA = true
			// Trimmed again: dropping control bytes or cutting at maxUA
			// may leave a blank at either end, which a header cannot keep.
			s.UserAgent = strings.Trim(printable(value, maxUA), " ")
		}
	}
	if start {
		return Search{}, &ParseError{Field: "start-line", Off: 0, Msg: "empty message"}
	}
	if err := checkST(s.ST); err != nil {
		return Search{}, err
	}
	return s, nil
}

func parseStartLine(line []byte, off int) error {
	f := strings.Fields(string(line))
	if len(f) != 3 {
		return &ParseError{Field: "start-line", Off: off, Msg: "want three fields"}
	}
	switch {
	case strings.HasPrefix(f[0], "HTTP/"), strings.EqualFold(f[0], "NOTIFY"):
		// A search answer or an announcement from another device.
		return &ParseError{Field: "start-line", Off: off, Msg: ErrNotSearch.Error()}
	case !strings.EqualFold(f[0], "M-SEARCH"):
		return &ParseError{Field: "start-line", Off: off, Msg: "unknown method"}
	case f[1] != "*":
		return &ParseError{Field: "start-line", Off: off, Msg: "request target is not *"}
	case !strings.EqualFold(f[2], "HTTP/1.1") && !strings.EqualFold(f[2], "HTTP/1.0"):
		return &ParseError{Field: "start-line", Off: off, Msg: "unsupported version"}
	}
	return nil
}

// parseMX returns the MX in seconds capped at MaxMX, or -1 if unusable.
func parseMX(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1
	}
	return min(n, MaxMX)
}

func checkST(st string) error {
	if st == "" {
		return &ParseError{Field: "ST", Msg: "missing search target"}
	}
	if len(st) > maxST {
		return &ParseError{Field: "ST", Msg: "search target too long"}
	}
	for i := 0; i < len(st); i++ {
		if st[i] <= ' ' || st[i] >= 0x7f {
			return &ParseError{Field: "ST", Msg: "search target has a space or control character"}
		}
	}
	return nil
}

// printable drops control and non-ASCII bytes and truncates to max bytes:
// header values end up in logs and, for the User-Agent, in personality
// decisions (COMPAT "Security history": log injection).
func printable(v string, max int) string {
	var sb strings.Builder
	for i := 0; i < len(v) && sb.Len() < max; i++ {
		if c := v[i]; c >= ' ' && c < 0x7f {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// AppendTo appends the M-SEARCH in the canonical multicast form. MX < 0
// omits the MX header; an empty Man writes "ssdp:discover".
func (s Search) AppendTo(b []byte) []byte {
	b = append(b, "M-SEARCH * HTTP/1.1\r\nHOST: "+MulticastHost+"\r\nMAN: \""...)
	if s.Man == "" {
		b = append(b, "ssdp:discover"...)
	} else {
		b = appendValue(b, s.Man)
	}
	b = append(b, "\"\r\n"...)
	if s.MX >= 0 {
		b = append(b, "MX: "...)
		b = strconv.AppendInt(b, int64(s.MX), 10)
		b = append(b, "\r\n"...)
	}
	b = header(b, "ST", s.ST)
	if s.UserAgent != "" {
		b = header(b, "USER-AGENT", s.UserAgent)
	}
	return append(b, "\r\n"...)
}

// Response is one answer to a search (UDA 1.1 §1.3.3). AppendTo writes
// exactly the lines COMPAT S3 lists, in this order:
//
//	HTTP/1.1 200 OK
//	CACHE-CONTROL: max-age=1800
//	DATE: Mon, 23 Nov 2026 12:00:00 GMT
//	EXT:
//	LOCATION: http://192.168.1.1:5000/rootDesc.xml
//	SERVER: Linux/6.12 UPnP/1.1 berth/1.0
//	ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
//	USN: uuid:…::urn:schemas-upnp-org:device:InternetGatewayDevice:1
//	BOOTID.UPNP.ORG: 7
//	CONFIGID.UPNP.ORG: 1
//	OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01
//	01-NLS: 7
type Response struct {
	ST, USN  string
	Location string // absolute http URL with an IP literal and explicit port
	Server   string // "<os>/<ver> UPnP/1.1 <prod>/<ver>"
	BootID   uint32 // BOOTID.UPNP.ORG and 01-NLS; new per start
	ConfigID uint32 // CONFIGID.UPNP.ORG; changes with the description
	MaxAge   int    // seconds; 0 means DefaultMaxAge
	Date     time.Time
}

// AppendTo appends the response. Control characters in the caller's
// strings are dropped, so no value can start a header of its own.
func (r Response) AppendTo(b []byte) []byte {
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	b = appendMaxAge(b, r.MaxAge)
	if !r.Date.IsZero() {
		b = header(b, "DATE", r.Date.UTC().Format(dateLayout))
	}
	// EXT has no value; miniupnpc and Go's textproto accept "EXT:".
	b = append(b, "EXT:\r\n"...)
	b = header(b, "LOCATION", r.Location)
	b = header(b, "SERVER", r.Server)
	b = header(b, "ST", r.ST)
	b = header(b, "USN", r.USN)
	b = appendIDs(b, r.BootID, r.ConfigID)
	return append(b, "\r\n"...)
}

// Notify is an announcement (UDA 1.1 §1.2.2 ssdp:alive, §1.2.4
// ssdp:byebye). A byebye carries only HOST, NT, NTS, USN and the IDs.
type Notify struct {
	Host     string // HOST; "" means MulticastHost
	NT, USN  string
	Byebye   bool
	Location string // alive only
	Server   string // alive only
	BootID   uint32
	ConfigID uint32
	MaxAge   int // alive only; seconds, 0 means DefaultMaxAge
}

// AppendTo appends the NOTIFY request.
func (n Notify) AppendTo(b []byte) []byte {
	host := n.Host
	if host == "" {
		host = MulticastHost
	}
	b = append(b, "NOTIFY * HTTP/1.1\r\n"...)
	b = header(b, "HOST", host)
	if !n.Byebye {
		b = appendMaxAge(b, n.MaxAge)
		b = header(b, "LOCATION", n.Location)
		b = header(b, "SERVER", n.Server)
	}
	b = header(b, "NT", n.NT)
	if n.Byebye {
		b = append(b, "NTS: ssdp:byebye\r\n"...)
	} else {
		b = append(b, "NTS: ssdp:alive\r\n"...)
	}
	b = header(b, "USN", n.USN)
	b = appendIDs(b, n.BootID, n.ConfigID)
	return append(b, "\r\n"...)
}

// Alive returns the ssdp:alive NOTIFY for a target.
func Alive(a Answer, location, server string, bootID, configID uint32, maxAge int) Notify {
	return Notify{NT: a.ST, USN: a.USN, Location: location, Server: server,
		BootID: bootID, ConfigID: configID, MaxAge: maxAge}
}

// Byebye returns the ssdp:byebye NOTIFY for a target.
func Byebye(a Answer, bootID, configID uint32) Notify {
	return Notify{NT: a.ST, USN: a.USN, Byebye: true, BootID: bootID, ConfigID: configID}
}

func appendMaxAge(b []byte, maxAge int) []byte {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	b = append(b, "CACHE-CONTROL: max-age="...)
	b = strconv.AppendInt(b, int64(maxAge), 10)
	return append(b, "\r\n"...)
}

// appendIDs writes BOOTID/CONFIGID and the UDA 1.0 equivalents OPT and
// 01-NLS that miniupnpd also sends.
func appendIDs(b []byte, bootID, configID uint32) []byte {
	// UDA 1.1 §1.2.2: the IDs are 31-bit values.
	bootID &= 1<<31 - 1
	configID &= 1<<24 - 1 // "0 to 16777215"
	b = append(b, "BOOTID.UPNP.ORG: "...)
	b = strconv.AppendUint(b, uint64(bootID), 10)
	b = append(b, "\r\nCONFIGID.UPNP.ORG: "...)
	b = strconv.AppendUint(b, uint64(configID), 10)
	b = append(b, "\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: "...)
	b = strconv.AppendUint(b, uint64(bootID), 10)
	return append(b, "\r\n"...)
}

// header appends "NAME: value\r\n" with exactly one space after the colon
// (miniupnpc skips spaces but not tabs; COMPAT S3).
func header(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = appendValue(b, value)
	return append(b, "\r\n"...)
}

// appendValue appends v without control characters and without leading
// blanks (which would make two spaces after the colon).
func appendValue(b []byte, v string) []byte {
	v = strings.TrimLeft(v, " \t")
	for i := 0; i < len(v); i++ {
		if c := v[i]; c >= ' ' && c != 0x7f {
			b = append(b, c)
		}
	}
	return b
}
