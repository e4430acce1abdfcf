package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The TOML text is decoded into a map[string]any and walked here rather
// than decoded into structs checked with MetaData.Undecoded: struct
// decoding matches keys case-insensitively (so "WAN" and "Wan" would be
// taken as "wan"), and its type errors are plain strings without the
// field. Walking the map lets every error, of type or of value, carry the
// exact field path, and a key the walker never asked for is an unknown
// key by construction.

// decoder collects the errors of one Parse.
type decoder struct {
	file  string
	lines lineIndex
	errs  []*Error
}

// fail records err against the field at p.
func (d *decoder) fail(p path, err error) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.lines.line(p), Field: p.String(), Err: err})
}

func (d *decoder) failf(p path, format string, args ...any) {
	d.fail(p, fmt.Errorf(format, args...))
}

// table is one TOML table being read. Each accessor marks its key as
// used; close reports the keys no accessor asked for.
type table struct {
	d    *decoder
	at   path
	m    map[string]any
	used map[string]bool
}

func (d *decoder) table(at path, m map[string]any) *table {
	return &table{d: d, at: at, m: m, used: map[string]bool{}}
}

// get returns the raw value of key and its path; ok is false when the key
// is absent.
func (t *table) get(key string) (v any, p path, ok bool) {
	t.used[key] = true
	v, ok = t.m[key]
	return v, t.at.key(key), ok
}

// close reports every key that was not asked for, in line order.
func (t *table) close() {
	var unknown []path
	for k := range t.m {
		if !t.used[k] {
			unknown = append(unknown, t.at.key(k))
		}
	}
	slices.SortFunc(unknown, func(a, b path) int {
		if c := t.d.lines.line(a) - t.d.lines.line(b); c != 0 {
			return c
		}
		return cmp.Compare(a.String(), b.String())
	})
	for _, p := range unknown {
		t.d.fail(p, errors.New("unknown key"))
	}
}

// str reads a string; ok is false when the key is absent or not a string
// (which is reported).
func (t *table) str(key string) (s string, p path, ok bool) {
	v, p, ok := t.get(key)
	if !ok {
		return "", p, false
	}
	return t.d.asString(p, v)
}

func (d *decoder) asString(p path, v any) (string, path, bool) {
	s, ok := v.(string)
	if !ok {
		d.failf(p, "want a string, got %s", typeName(v))
	}
	return s, p, ok
}

// strs reads an array of strings. Elements of the wrong type are reported
// and left out; ok is false only when the key is absent or not an array.
// The paths of the elements kept are in ps.
func (t *table) strs(key string) (ss []string, ps []path, p path, ok bool) {
	v, p, ok := t.get(key)
	if !ok {
		return nil, nil, p, false
	}
	a, ok := v.([]any)
	if !ok {
		t.d.failf(p, "want an array of strings, got %s", typeName(v))
		return nil, nil, p, false
	}
	ss = make([]string, 0, len(a))
	for i, e := range a {
		if s, ep, ok := t.d.asString(p.index(i), e); ok {
			ss = append(ss, s)
			ps = append(ps, ep)
		}
	}
	return ss, ps, p, true
}

// integer reads an integer.
func (t *table) integer(key string) (n int64, p path, ok bool) {
	v, p, ok := t.get(key)
	if !ok {
		return 0, p, false
	}
	n, ok = v.(int64)
	if !ok {
		t.d.failf(p, "want an integer, got %s", typeName(v))
	}
	return n, p, ok
}

// boolean reads true or false.
func (t *table) boolean(key string) (b bool, p path, ok bool) {
	v, p, ok := t.get(key)
	if !ok {
		return false, p, false
	}
	b, ok = v.(bool)
	if !ok {
		t.d.failf(p, "want true or false, got %s", typeName(v))
	}
	return b, p, ok
}

// duration reads a Go duration string such as "120s" or "24h"; negative
// durations are refused.
func (t *table) duration(key string) (time.Duration, path, bool) {
	s, p, ok := t.str(key)
	if !ok {
		return 0, p, false
	}
	dur, err := parseDuration(s)
	if err != nil {
		t.d.fail(p, err)
		return 0, p, false
	}
	return dur, p, true
}

// sub reads a table; it returns nil when the key is absent or not a
// table.
func (t *table) sub(key string) *table {
	v, p, ok := t.get(key)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.d.failf(p, "want a table, got %s", typeName(v))
		return nil
	}
	return t.d.table(p, m)
}

// tables reads an array of tables, written as [[key]] headers or as an
// array of inline tables.
func (t *table) tables(key string) []*table {
	v, p, ok := t.get(key)
	if !ok {
		return nil
	}
	var out []*table
	switch a := v.(type) {
	case []map[string]any:
		for i, m := range a {
			out = append(out, t.d.table(p.index(i), m))
		}
	case []any:
		for i, e := range a {
			m, ok := e.(map[string]any)
			if !ok {
				t.d.failf(p.index(i), "want a table, got %s", typeName(e))
				continue
			}
			out = append(out, t.d.table(p.index(i), m))
		}
	default:
		t.d.failf(p, "want an array of tables ([[%s]]), got %s", key, typeName(v))
	}
	return out
}

// typeName names a decoded TOML value's type for messages.
func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return "a float"
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date-time"
}
