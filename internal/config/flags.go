package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// FromArgs parses berthd's command-line arguments (without the program
// name), loads the configuration file they name, and applies the other
// flags on top of it: a flag given on the command line overrides the
// file, a flag not given leaves the file's value. The flags are:
//
//	-config PATH      TOML configuration file; none means built-in defaults
//	-wan NAME         WAN interface; "" means detect from the default route
//	-lan NAMES        LAN interfaces, comma-separated; "" means detect
//	-external IP      fixed external address; "" means the WAN interface's
//	-backend NAME     auto, relay or nft
//	-log-format NAME  text or json
//	-log-level NAME   debug, info, warn or error
//	-state-dir DIR    lease store directory; "none" keeps no leases on disk
//	-h, -help         print usage to stderr and return flag.ErrHelp
//
// Usage and flag syntax errors are printed to stderr (nil discards them).
// A bad flag value is a *Error whose Field is "flag -NAME" and whose File
// and Line are empty; errors in the file are as from Load.
func FromArgs(args []string, stderr io.Writer) (*Config, error) {
	if stderr == nil {
		stderr = io.Discard
	}
	fs := flag.NewFlagSet("berthd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "TOML configuration `file`; none means built-in defaults")
	wan := fs.String("wan", "", "WAN interface `name`; empty means the default route's interface")
	lan := fs.String("lan", "", "LAN interface `names`, comma-separated; empty means detect")
	external := fs.String("external", "", "fixed external `address`; empty means the WAN interface's")
	backend := fs.String("backend", "auto", "port-mapping `backend`: auto, relay or nft")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	stateDir := fs.String("state-dir", "", "lease store `directory`; \"none\" keeps no leases on disk")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: berthd [flags]\n\nFlags override the configuration file.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}

	// Check every flag given before reading the file; apply them after.
	var apply []func(*Config)
	var errs []error
	check := func(name string, err error) bool {
		if err != nil {
			errs = append(errs, &Error{Field: "flag -" + name, Err: err})
		}
		return err == nil
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "wan":
			if *wan == "" || check(f.Name, checkIfName(*wan)) {
				apply = append(apply, func(c *Config) { c.WAN = *wan; c.setByFlag("wan", "-wan") })
			}
		case "lan":
			names := splitList(*lan)
			if _, err := checkIfNames(names); check(f.Name, err) {
				apply = append(apply, func(c *Config) { c.LAN = names; c.setByFlag("lan", "-lan") })
			}
		case "external":
			var a netip.Addr
			var err error
			if *external != "" {
				a, err = parseUnicast(*external)
			}
			if check(f.Name, err) {
				apply = append(apply, func(c *Config) { c.ExternalAddr = a; c.setByFlag("external_address", "-external") })
			}
		case "backend":
			b, err := parseBackend(*backend)
			if check(f.Name, err) {
				apply = append(apply, func(c *Config) { c.Backend = b })
			}
		case "log-format":
			lf, err := parseLogFormat(*logFormat)
			if check(f.Name, err) {
				apply = append(apply, func(c *Config) { c.LogFormat = lf })
			}
		case "state-dir":
			switch {
			case *stateDir == "none":
				apply = append(apply, func(c *Config) { c.Store.Enabled = false })
			case check(f.Name, checkDir(*stateDir)):
				apply = append(apply, func(c *Config) { c.Store.Enabled, c.Store.Dir = true, *stateDir })
			}
		case "log-level":
			l, err := parseLogLevel(*logLevel)
			if check(f.Name, err) {
				apply = append(apply, func(c *Config) { c.LogLevel = l })
			}
		}
	})
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
	c, err := Load(*file)
	if err != nil {
		return nil, err
	}
	for _, f := range apply {
		f(c)
	}
	return c, nil
}

// splitList splits a comma-separated list, trimming spaces; "" gives nil.
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(f))
	}
	return out
}
