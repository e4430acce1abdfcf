// Package config reads berth's configuration, a TOML file (TOML v1.0.0,
// https://toml.io/en/v1.0.0) and berthd's command-line flags, into a
// validated Config.
//
// Every value is checked when it is read; nothing is checked later. Each
// error is a *Error naming the file, the line and the field, in the form
// "berth.toml:12: policy.rules[1]: ...". Unknown keys are errors, so a
// misspelt key never silently falls back to a default. The full file
// format, with every key and its default, is testdata/example.toml.
//
// A Config is not modified after Parse, Load or FromArgs returns it;
// callers treat it (and the slices and map it holds) as read-only.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// Config is berth's whole configuration.
type Config struct {
	// File is the path the configuration came from; "" means built-in
	// defaults.
	File string
	// WAN is the WAN interface name; "" means detect it from the default
	// route.
	WAN string
	// LAN lists the LAN interface names; empty means detect them.
	LAN []string
	// LANRouted are subnets behind a LAN router whose hosts are served as
	// if they were on a LAN link (COMPAT S9): their requests still arrive
	// on a LAN interface, from an address no LAN prefix holds. Masked.
	LANRouted []netip.Prefix
	// VirtualAddrs are virtual gateway addresses (VRRP, CARP) that LAN
	// hosts use as their default gateway and that only the active router
	// of a pair carries (COMPAT S4): unicast, not loopback or link-local,
	// IPv4-mapped addresses unmapped, none repeated. berthd serves
	// NAT-PMP, PCP and UPnP on each whether or not the router carries it
	// at the moment; it refuses to start when no LAN interface has a
	// prefix holding one.
	VirtualAddrs []netip.Addr
	// ExternalAddr is a fixed external address; the zero Addr means use
	// the WAN interface's address.
	ExternalAddr netip.Addr
	// Backend is "auto", "relay" or "nft".
	Backend string
	// LogFormat is "text" or "json".
	LogFormat string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// Policy holds the mapping policy.
	Policy Policy
	// Forwards are the static port forwards, in file order.
	Forwards []Forward
	// NATPMP and PCP switch the responders on UDP port 5351.
	NATPMP NATPMP
	PCP    PCP
	// UPnP is the IGD responder (SSDP, HTTP, SOAP, GENA).
	UPnP UPnP
	// Store is where leases are kept across restarts.
	Store Store
	// NFT tunes the nft backend.
	NFT NFT

	// lines locates the file's fields for Errorf; flags names the
	// top-level keys a command-line flag set ("lan" → "-lan").
	lines lineIndex
	flags map[string]string
}

// Errorf returns a *Error for a problem with field (as Error.Field names
// it: "lan[1]", "forward[2].internal") that only the running system can
// reveal, such as an interface that does not exist: it names the line
// where the file sets the field, or the flag that set it.
func (c *Config) Errorf(field, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	root, _, _ := strings.Cut(field, ".")
	root, _, _ = strings.Cut(root, "[")
	if flag, ok := c.flags[root]; ok {
		return &Error{Field: "flag " + flag, Err: err}
	}
	return &Error{File: c.File, Line: c.lines.lineOf(field), Field: field, Err: err}
}

// setByFlag records that flag (such as "-lan") set the top-level key.
func (c *Config) setByFlag(key, flag string) {
	if c.flags == nil {
		c.flags = map[string]string{}
	}
	c.flags[key] = flag
}

// Store is the [store] table.
type Store struct {
	// Enabled keeps every lease on disk before the client is answered, so
	// a restart or a crash loses none; default true.
	Enabled bool
	// Dir holds the lease journal; "" means DefaultStoreDir().
	Dir string
	// KeepKernelState leaves the mappings in the kernel at a clean stop
	// (the next start reconciles them with the store); default false.
	KeepKernelState bool
	// SyncEveryAnswer makes NAT-PMP and PCP answers wait for the lease's
	// disk sync, as UPnP answers do; by default they wait until it is
	// written (see store.Store.PutLazy); default false.
	SyncEveryAnswer bool
}

// NFT is the [nft] table: what the nft backend does besides forwarding
// mapped ports. Read at start only.
type NFT struct {
	// Hairpin lets LAN hosts reach a mapping through the external
	// address; default true.
	Hairpin bool
	// PreserveSourcePort sends outbound UDP from a mapped internal
	// address and port from the mapped external port, as consoles and
	// peer-to-peer games expect; default true.
	PreserveSourcePort bool
}

// UPnP is the [upnp] table.
type UPnP struct {
	// Enabled serves UPnP IGD; default true.
	Enabled bool
	// Mode is the description a client gets: "auto" (v1 for Windows and
	// Xbox user agents, v2 otherwise), "v1" or "v2"; default "auto".
	Mode string
	// RateLimit is the mapping changes per second one LAN host may ask
	// for, with bursts of twice as many; any request counts against ten
	// times as many (igd.Config.Rate). 0 means no limit. Default
	// DefaultUPnPRateLimit.
	RateLimit int
}

// DefaultUPnPRateLimit is [upnp] rate_limit's default: far above what a
// client mapping a few ports needs, and 5,000 requests a second for
// listings, more than miniupnpc makes with a connection per request.
const DefaultUPnPRateLimit = 500

// NATPMP is the [natpmp] table.
type NATPMP struct {
	// Enabled serves NAT-PMP (RFC 6886); default true.
	Enabled bool
}

// PCP is the [pcp] table.
type PCP struct {
	// Enabled serves PCP (RFC 6887); default true.
	Enabled bool
	// AllowThirdParty lets a client map ports for another host with the
	// THIRD_PARTY option; default false. Secure mode must be off too.
	AllowThirdParty bool
}

// Policy is the [policy] table.
type Policy struct {
	// SecureMode lets a client map ports only to itself (default true).
	SecureMode bool
	// MaxPerClient is the most mappings one client may hold (default
	// 256); 0 means no limit.
	MaxPerClient int
	// MaxTotal is the most mappings in all (default 100000); 0 means no
	// limit.
	MaxTotal int
	// Rules are the permission rules in order, first match wins. It is
	// nil when the file has no rules key: use policy.DefaultRules for the
	// LAN prefixes. "rules = []" gives a non-nil empty slice, which
	// denies everything.
	Rules []policy.Rule
	// Reserved are the configured reserved ports, each with Why
	// "configured".
	Reserved []policy.Reserved
	// Lifetime bounds the lease a client may ask for, per origin. Every
	// Kind but KindNone has an entry; see Default for the values.
	Lifetime map[mapping.Kind]policy.Lifetimes
}

// Forward is one [[forward]] table: a static port forward.
type Forward struct {
	// Name identifies the forward in logs and listings; unique.
	Name string
	// Proto is TCP or UDP.
	Proto mapping.Protocol
	// External is the external port, 1-65535.
	External uint16
	// Internal is where traffic goes; its port is not 0.
	Internal netip.AddrPort
	// Remote restricts the forward to one remote host; the zero Addr
	// means any.
	Remote netip.Addr
}

// Default lifetime bounds (see Default).
const (
	// DefaultUPnPMax caps a UPnP lease, including a "permanent" one
	// (NewLeaseDuration 0), at 7 days.
	DefaultUPnPMax = 7 * 24 * time.Hour
	// DefaultPMPMin is the shortest NAT-PMP or PCP lease granted: 120 s,
	// the lifetime RFC 6886 §3.3 recommends clients ask for, so a client
	// asking for less is not made to renew every few seconds.
	DefaultPMPMin = 120 * time.Second
	// DefaultPMPMax is the longest NAT-PMP or PCP lease granted: 24 h.
	DefaultPMPMax = 24 * time.Hour
)

// Default returns the built-in configuration: detect the WAN and LAN
// interfaces, backend "auto", text logs at info, secure mode, 256
// mappings per client and 100000 in all, the policy's default rules, and
// leases of 0-7 days for UPnP, 120 s-24 h for NAT-PMP and PCP, unbounded
// for static forwards and triggers. Each call returns a new Config.
func Default() *Config {
	return &Config{
		Backend:   "auto",
		LogFormat: "text",
		LogLevel:  slog.LevelInfo,
		Policy: Policy{
			SecureMode:   true,
			MaxPerClient: 256,
			MaxTotal:     100000,
			Lifetime: map[mapping.Kind]policy.Lifetimes{
				mapping.KindIGD:     {Min: 0, Max: DefaultUPnPMax},
				mapping.KindNATPMP:  {Min: DefaultPMPMin, Max: DefaultPMPMax},
				mapping.KindPCP:     {Min: DefaultPMPMin, Max: DefaultPMPMax},
				mapping.KindStatic:  {},
				mapping.KindTrigger: {},
			},
		},
		NATPMP: NATPMP{Enabled: true},
		PCP:    PCP{Enabled: true},
		UPnP:   UPnP{Enabled: true, Mode: "auto", RateLimit: DefaultUPnPRateLimit},
		Store:  Store{Enabled: true},
		NFT:    NFT{Hairpin: true, PreserveSourcePort: true},
	}
}

// DefaultStoreDir is the lease store's directory when the configuration
// names none: /var/lib/berth as root; otherwise $XDG_STATE_HOME/berth, or
// ~/.local/state/berth, so that an unprivileged berthd keeps its leases
// too. It is "" when neither root nor a home directory is known.
func DefaultStoreDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/berth"
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "berth")
	}
	if h, err := os.UserHomeDir(); err == nil && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "berth")
	}
	return ""
}

// Load reads the file at path and parses it. The path "" gives Default().
// A file that cannot be read gives a *Error with File set.
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in Error.File
		}
		return nil, &Error{File: path, Err: fmt.Errorf("read: %w", err)}
	}
	return Parse(path, data)
}

// Parse parses TOML configuration text. file is used only in messages and
// as Config.File. Keys that are absent keep their defaults.
//
// The error, when not nil, is a *Error, or several of them joined with
// errors.Join (sorted by line) when the file has more than one problem;
// errors.As finds the first.
func Parse(file string, data []byte) (*Config, error) {
	// The TOML decoder skips one byte-order mark; so must the line index,
	// or it would not see the first line, nor how deep it nests. The
	// decoder gets the text as it came: given the stripped text it would
	// skip a second mark that the index does not.
	text := data
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if after, ok := bytes.CutPrefix(data, []byte(bom)); ok {
			text = after
			break
		}
	}
	lines, deep := indexLines(string(text))
	if deep > 0 {
		return nil, &Error{File: file, Line: deep, Err: fmt.Errorf("keys, tables or arrays nested deeper than %d levels", maxDepth)}
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: file, Line: pe.Position.Line, Err: syntaxError{pe}}
		}
		return nil, &Error{File: file, Err: err}
	}
	d := &decoder{file: file, lines: lines}
	c := Default()
	c.File = file
	c.lines = d.lines
	d.config(c, d.table(nil, raw))
	if len(d.errs) == 0 {
		return c, nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return a.Line - b.Line })
	if len(d.errs) == 1 {
		return nil, d.errs[0]
	}
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return nil, errors.Join(errs...)
}

// Error is a configuration error: where, which field, and why.
type Error struct {
	// File is the configuration file; "" for flags.
	File string
	// Line is the 1-based line in File; 0 when unknown.
	Line int
	// Field is the dotted TOML path with indexes ("forward[2].internal"),
	// or "flag -NAME" for a command-line flag; "" for the file as a whole.
	Field string
	// Err is the reason.
	Err error
}

// Error formats the error as "file:line: field: reason", leaving out the
// parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	for _, s := range []string{e.Field, fmt.Sprint(e.Err)} {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(s)
	}
	return oneLine(b.String())
}

// oneLine escapes control characters, such as a newline inside a quoted
// TOML value that a reason repeats, so that each error is one line.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Err }

// syntaxError is a TOML syntax error without the line, which Error
// already shows. Unwrap gives the toml.ParseError.
type syntaxError struct{ pe toml.ParseError }

func (e syntaxError) Error() string { return "toml syntax: " + e.pe.Message }
func (e syntaxError) Unwrap() error { return e.pe }
