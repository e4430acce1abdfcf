package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// The file's layout: one method per table, each reading its keys into c
// and closing the table so that unknown keys are reported.

// config reads the top-level table.
func (d *decoder) config(c *Config, t *table) {
	if s, p, ok := t.str("wan"); ok {
		if err := checkIfName(s); err != nil {
			d.fail(p, err)
		} else {
			c.WAN = s
		}
	}
	if names, ps, _, ok := t.strs("lan"); ok {
		// lan = [] means detect, as when the key is absent: c.LAN stays nil.
		if i, err := checkIfNames(names); err != nil {
			d.fail(ps[i], err)
		} else if len(names) > 0 {
			c.LAN = names
		}
	}
	if ss, ps, _, ok := t.strs("lan_routed"); ok {
		c.LANRouted = nil
		for i, s := range ss {
			if pr, err := parseRouted(s); err != nil {
				d.fail(ps[i], err)
			} else if !slices.Contains(c.LANRouted, pr) {
				c.LANRouted = append(c.LANRouted, pr)
			}
		}
	}
	if ss, ps, _, ok := t.strs("virtual_addresses"); ok {
		c.VirtualAddrs = nil
		for i, s := range ss {
			a, err := parseVirtual(s)
			switch {
			case err != nil:
				d.fail(ps[i], err)
			case slices.Contains(c.VirtualAddrs, a):
				d.failf(ps[i], "virtual address %s listed twice", a)
			default:
				c.VirtualAddrs = append(c.VirtualAddrs, a)
			}
		}
	}
	if s, p, ok := t.str("external_address"); ok {
		if a, err := parseUnicast(s); err != nil {
			d.fail(p, err)
		} else {
			c.ExternalAddr = a
		}
	}
	if s, p, ok := t.str("backend"); ok {
		if b, err := parseBackend(s); err != nil {
			d.fail(p, err)
		} else {
			c.Backend = b
		}
	}
	if lt := t.sub("log"); lt != nil {
		d.log(c, lt)
	}
	if pt := t.sub("policy"); pt != nil {
		d.policy(&c.Policy, pt)
	}
	if nt := t.sub("natpmp"); nt != nil {
		if b, _, ok := nt.boolean("enabled"); ok {
			c.NATPMP.Enabled = b
		}
		nt.close()
	}
	if pt := t.sub("pcp"); pt != nil {
		if b, _, ok := pt.boolean("enabled"); ok {
			c.PCP.Enabled = b
		}
		if b, _, ok := pt.boolean("allow_third_party"); ok {
			c.PCP.AllowThirdParty = b
		}
		pt.close()
	}
	if ut := t.sub("upnp"); ut != nil {
		if b, _, ok := ut.boolean("enabled"); ok {
			c.UPnP.Enabled = b
		}
		if m, p, ok := ut.str("mode"); ok {
			switch m {
			case "auto", "v1", "v2":
				c.UPnP.Mode = m
			default:
				d.fail(p, fmt.Errorf("mode %q: want auto, v1 or v2", m))
			}
		}
		if n, ok := d.quota(ut, "rate_limit"); ok {
			c.UPnP.RateLimit = n
		}
		ut.close()
	}
	if st := t.sub("store"); st != nil {
		d.store(&c.Store, st)
	}
	if nt := t.sub("nft"); nt != nil {
		if b, _, ok := nt.boolean("hairpin"); ok {
			c.NFT.Hairpin = b
		}
		if b, _, ok := nt.boolean("preserve_source_port"); ok {
			c.NFT.PreserveSourcePort = b
		}
		nt.close()
	}
	c.Forwards = d.forwards(t.tables("forward"))
	t.close()
}

// store reads [store].
func (d *decoder) store(s *Store, t *table) {
	if b, _, ok := t.boolean("enabled"); ok {
		s.Enabled = b
	}
	if dir, p, ok := t.str("dir"); ok {
		if err := checkDir(dir); err != nil {
			d.fail(p, err)
		} else {
			s.Dir = dir
		}
	}
	if b, _, ok := t.boolean("keep_kernel_state"); ok {
		s.KeepKernelState = b
	}
	if b, _, ok := t.boolean("sync_every_answer"); ok {
		s.SyncEveryAnswer = b
	}
	t.close()
}

// log reads [log].
func (d *decoder) log(c *Config, t *table) {
	if s, p, ok := t.str("format"); ok {
		if f, err := parseLogFormat(s); err != nil {
			d.fail(p, err)
		} else {
			c.LogFormat = f
		}
	}
	if s, p, ok := t.str("level"); ok {
		if l, err := parseLogLevel(s); err != nil {
			d.fail(p, err)
		} else {
			c.LogLevel = l
		}
	}
	t.close()
}

// policy reads [policy].
func (d *decoder) policy(pol *Policy, t *table) {
	if b, _, ok := t.boolean("secure_mode"); ok {
		pol.SecureMode = b
	}
	if n, ok := d.quota(t, "max_per_client"); ok {
		pol.MaxPerClient = n
	}
	if n, ok := d.quota(t, "max_total"); ok {
		pol.MaxTotal = n
	}
	if lines, ps, _, ok := t.strs("rules"); ok {
		pol.Rules = make([]policy.Rule, 0, len(lines))
		for i, s := range lines {
			r, err := policy.ParseRule(s)
			if err != nil {
				d.fail(ps[i], err)
				continue
			}
			pol.Rules = append(pol.Rules, r)
		}
	}
	if specs, ps, _, ok := t.strs("reserved_ports"); ok {
		for i, s := range specs {
			r, err := parseReserved(s)
			if err != nil {
				d.fail(ps[i], err)
				continue
			}
			pol.Reserved = append(pol.Reserved, r)
		}
	}
	if lt := t.sub("lifetime"); lt != nil {
		d.lifetimes(pol.Lifetime, lt)
	}
	t.close()
}

// quota reads a non-negative count that fits an int32.
func (d *decoder) quota(t *table, key string) (int, bool) {
	n, p, ok := t.integer(key)
	switch {
	case !ok:
		return 0, false
	case n < 0:
		d.failf(p, "negative limit %d", n)
		return 0, false
	case n > math.MaxInt32:
		d.failf(p, "limit %d too large (at most %d)", n, math.MaxInt32)
		return 0, false
	}
	return int(n), true
}

// lifetimeKinds are the [policy.lifetime.NAME] tables.
var lifetimeKinds = []struct {
	name string
	kind mapping.Kind
}{
	{"upnp", mapping.KindIGD},
	{"natpmp", mapping.KindNATPMP},
	{"pcp", mapping.KindPCP},
}

// lifetimes reads [policy.lifetime] and its sub-tables into m, which holds
// the defaults.
func (d *decoder) lifetimes(m map[mapping.Kind]policy.Lifetimes, t *table) {
	for _, k := range lifetimeKinds {
		kt := t.sub(k.name)
		if kt == nil {
			continue
		}
		lt := m[k.kind]
		minD, minP, minOK := kt.duration("min")
		maxD, maxP, maxOK := kt.duration("max")
		if minOK {
			lt.Min = minD
		}
		if maxOK {
			lt.Max = maxD
		}
		if lt.Max != 0 && lt.Min > lt.Max {
			p := maxP
			if !maxOK {
				p = minP
			}
			d.failf(p, "min %s above max %s", lt.Min, lt.Max)
		} else {
			m[k.kind] = lt
		}
		kt.close()
	}
	t.close()
}

// forwardKey is what two forwards may not share.
type forwardKey struct {
	proto    mapping.Protocol
	external uint16
	remote   netip.Addr
}

// forwards reads the [[forward]] tables.
func (d *decoder) forwards(ts []*table) []Forward {
	var out []Forward
	names := map[string]path{}
	keys := map[forwardKey]path{}
	for _, t := range ts {
		f, ok := d.forward(t)
		t.close()
		if !ok {
			continue
		}
		if prev, dup := names[f.Name]; dup {
			d.failf(t.at.key("name"), "name %q already used by %s", f.Name, prev)
			continue
		}
		names[f.Name] = t.at
		k := forwardKey{f.Proto, f.External, f.Remote}
		if prev, dup := keys[k]; dup {
			d.failf(t.at.key("external_port"), "%s port %d already forwarded by %s", f.Proto, f.External, prev)
			continue
		}
		keys[k] = t.at
		out = append(out, f)
	}
	return out
}

// forward reads one [[forward]]; ok is false if any field was bad or
// missing (each is reported).
func (d *decoder) forward(t *table) (f Forward, ok bool) {
	ok = true
	bad := func(p path, err error) {
		d.fail(p, err)
		ok = false
	}
	// need reports a missing required key.
	need := func(key, want string) bool {
		if _, there := t.m[key]; there {
			return true
		}
		bad(t.at.key(key), fmt.Errorf("missing (want %s)", want))
		return false
	}
	if need("name", "a unique name") {
		if s, p, good := t.str("name"); !good {
			ok = false
		} else if err := checkName(s); err != nil {
			bad(p, err)
		} else {
			f.Name = s
		}
	}
	if need("proto", `"tcp" or "udp"`) {
		if s, p, good := t.str("proto"); !good {
			ok = false
		} else if proto, err := parseProto(s); err != nil {
			bad(p, err)
		} else {
			f.Proto = proto
		}
	}
	if need("external_port", "a port 1-65535") {
		if n, p, good := t.integer("external_port"); !good {
			ok = false
		} else if n < 1 || n > 65535 {
			bad(p, fmt.Errorf("port %d out of range 1-65535", n))
		} else {
			f.External = uint16(n)
		}
	}
	if need("internal", `an address:port like "192.168.1.10:80"`) {
		if s, p, good := t.str("internal"); !good {
			ok = false
		} else if ap, err := parseAddrPort(s); err != nil {
			bad(p, err)
		} else {
			f.Internal = ap
		}
	}
	if _, there := t.m["remote"]; there {
		if s, p, good := t.str("remote"); !good {
			ok = false
		} else if a, err := parseUnicast(s); err != nil {
			bad(p, err)
		} else {
			f.Remote = a
		}
	}
	return f, ok
}
