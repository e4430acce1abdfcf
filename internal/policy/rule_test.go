package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// ruleDiff describes how got differs from want, or returns "" when they are
// equal. Desc is compared by its source text.
func ruleDiff(got, want Rule) string {
	var d []string
	if got.Allow != want.Allow {
		d = append(d, fmt.Sprintf("Allow: got %v, want %v", got.Allow, want.Allow))
	}
	if got.External != want.External {
		d = append(d, fmt.Sprintf("External: got %v, want %v", got.External, want.External))
	}
	if got.Internal != want.Internal {
		d = append(d, fmt.Sprintf("Internal: got %v, want %v", got.Internal, want.Internal))
	}
	if got.IntPorts != want.IntPorts {
		d = append(d, fmt.Sprintf("IntPorts: got %v, want %v", got.IntPorts, want.IntPorts))
	}
	if descText(got.Desc) != descText(want.Desc) || (got.Desc == nil) != (want.Desc == nil) {
		d = append(d, fmt.Sprintf("Desc: got %q, want %q", descText(got.Desc), descText(want.Desc)))
	}
	if got.Text != want.Text {
		d = append(d, fmt.Sprintf("Text: got %q, want %q", got.Text, want.Text))
	}
	return strings.Join(d, "; ")
}

func descText(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}

func ports(lo, hi uint16) mapping.PortRange { return mapping.PortRange{Lo: lo, Hi: hi} }

var high = ports(1024, 65535)

// parseRuleTests is shared with FuzzParseRule as its seed corpus.
var parseRuleTests = []struct {
	name    string
	in      string
	want    Rule   // Desc is compared by wantDesc
	wantRe  string // expected Desc source; "" = nil
	wantErr string // substring of the error; "" = success
}{
	{
		name: "ranges",
		in:   "allow 1024-65535 192.168.0.0/24 1024-65535",
		want: Rule{Allow: true, External: high, Internal: netip.MustParsePrefix("192.168.0.0/24"), IntPorts: high},
	},
	{
		name: "deny all v4",
		in:   "deny 0-65535 0.0.0.0/0 0-65535",
		want: Rule{External: mapping.AllPorts, Internal: netip.MustParsePrefix("0.0.0.0/0"), IntPorts: mapping.AllPorts},
	},
	{
		name:   "single ports and regex",
		in:     "allow 8080 192.168.1.10/32 80 ^web",
		want:   Rule{Allow: true, External: ports(8080, 8080), Internal: netip.MustParsePrefix("192.168.1.10/32"), IntPorts: ports(80, 80)},
		wantRe: "^web",
	},
	{
		name: "prefix is masked",
		in:   "allow 80 192.168.0.5/24 80",
		want: Rule{Allow: true, External: ports(80, 80), Internal: netip.MustParsePrefix("192.168.0.0/24"), IntPorts: ports(80, 80)},
	},
	{
		name: "mask form",
		in:   "allow 80 192.168.1.5/255.255.255.0 80",
		want: Rule{Allow: true, External: ports(80, 80), Internal: netip.MustParsePrefix("192.168.1.0/24"), IntPorts: ports(80, 80)},
	},
	{
		name: "mask form zero",
		in:   "deny 0-65535 10.1.2.3/0.0.0.0 0-65535",
		want: Rule{External: mapping.AllPorts, Internal: netip.MustParsePrefix("0.0.0.0/0"), IntPorts: mapping.AllPorts},
	},
	{
		name: "bare ipv4 address",
		in:   "allow 80 192.168.1.5 80",
		want: Rule{Allow: true, External: ports(80, 80), Internal: netip.MustParsePrefix("192.168.1.5/32"), IntPorts: ports(80, 80)},
	},
	{
		name: "bare ipv6 address",
		in:   "allow 80 fd00::1 80",
		want: Rule{Allow: true, External: ports(80, 80), Internal: netip.MustParsePrefix("fd00::1/128"), IntPorts: ports(80, 80)},
	},
	{
		name: "ipv6 prefix masked",
		in:   "allow 1024-65535 fd00:1::5/64 1024-65535",
		want: Rule{Allow: true, External: high, Internal: netip.MustParsePrefix("fd00:1::/64"), IntPorts: high},
	},
	{
		name: "port zero",
		in:   "deny 0 10.0.0.1 0",
		want: Rule{External: ports(0, 0), Internal: netip.MustParsePrefix("10.0.0.1/32"), IntPorts: ports(0, 0)},
	},
	{
		name:   "regex with spaces keeps inner spacing",
		in:     "allow 80 10.0.0.0/8 80   my game  server (v[0-9]+) ",
		want:   Rule{Allow: true, External: ports(80, 80), Internal: netip.MustParsePrefix("10.0.0.0/8"), IntPorts: ports(80, 80)},
		wantRe: "my game  server (v[0-9]+)",
	},
	{
		name: "tabs and surrounding space",
		in:   "\t allow\t80\t10.0.0.0/8\t80 \r\n",
		want: Rule{Allow: true, External: ports(80, 80), Internal: netip.MustParsePrefix("10.0.0.0/8"), IntPorts: ports(80, 80)},
	},
	{
		name:   "regex containing hash",
		in:     "deny 0-65535 0.0.0.0/0 0-65535 #bad",
		want:   Rule{External: mapping.AllPorts, Internal: netip.MustParsePrefix("0.0.0.0/0"), IntPorts: mapping.AllPorts},
		wantRe: "#bad",
	},

	{name: "empty", in: "  ", wantErr: "empty rule"},
	{name: "wrong action", in: "permit 80 10.0.0.0/8 80", wantErr: `bad action "permit"`},
	{name: "action is case sensitive", in: "Allow 80 10.0.0.0/8 80", wantErr: `bad action "Allow"`},
	{name: "missing external ports", in: "allow", wantErr: "missing external ports"},
	{name: "missing prefix", in: "allow 80", wantErr: "missing internal prefix"},
	{name: "missing internal ports", in: "allow 80 10.0.0.0/8", wantErr: "missing internal ports"},
	{name: "port 65536", in: "allow 65536 10.0.0.0/8 80", wantErr: `bad external ports "65536"`},
	{name: "port 99999", in: "allow 99999 10.0.0.0/8 80", wantErr: `policy: rule "allow 99999 10.0.0.0/8 80": bad external ports "99999"`},
	{name: "negative port", in: "allow -1 10.0.0.0/8 80", wantErr: `bad external ports "-1"`},
	{name: "inverted range", in: "allow 10-5 10.0.0.0/8 80", wantErr: `bad external ports "10-5"`},
	{name: "open range", in: "allow 10- 10.0.0.0/8 80", wantErr: `bad external ports "10-"`},
	{name: "bad internal ports", in: "allow 80 10.0.0.0/8 1-99999", wantErr: `bad internal ports "1-99999"`},
	{name: "prefix too long", in: "allow 80 10.0.0.0/33 80", wantErr: `bad internal prefix "10.0.0.0/33"`},
	{name: "bad address", in: "allow 80 10.0.0.256/8 80", wantErr: `bad internal prefix "10.0.0.256/8"`},
	{name: "hostname", in: "allow 80 router.lan 80", wantErr: `bad internal prefix "router.lan"`},
	{name: "empty length", in: "allow 80 10.0.0.0/ 80", wantErr: `bad internal prefix "10.0.0.0/"`},
	{name: "leading zero length", in: "allow 80 10.0.0.0/08 80", wantErr: `bad internal prefix "10.0.0.0/08"`},
	{name: "signed length", in: "allow 80 10.0.0.0/+8 80", wantErr: `bad internal prefix "10.0.0.0/+8"`},
	{name: "non-contiguous mask", in: "allow 80 10.0.0.0/255.0.255.0 80", wantErr: "not contiguous"},
	{name: "mask on ipv6", in: "allow 80 fd00::/255.255.0.0 80", wantErr: `bad netmask "255.255.0.0"`},
	{name: "ipv4-mapped", in: "allow 80 ::ffff:10.0.0.1 80", wantErr: "ipv4-mapped"},
	{name: "zone", in: "allow 80 fe80::1%eth0 80", wantErr: "zones are not allowed"},
	{name: "bad regex", in: "allow 80 10.0.0.0/8 80 (unclosed", wantErr: `bad description regexp "(unclosed"`},
}

func TestParseRule(t *testing.T) {
	for _, tt := range parseRuleTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRule(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseRule(%q): got %+v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "policy: ") {
					t.Errorf("ParseRule(%q): got error %q, want %q inside", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRule(%q): got error %v, want nil", tt.in, err)
			}
			want := tt.want
			want.Text = strings.TrimSpace(tt.in)
			if (got.Desc != nil) != (tt.wantRe != "") || descText(got.Desc) != tt.wantRe {
				t.Errorf("ParseRule(%q): got Desc %q, want %q", tt.in, descText(got.Desc), tt.wantRe)
			}
			got.Desc = nil
			if d := ruleDiff(got, want); d != "" {
				t.Errorf("ParseRule(%q): %s", tt.in, d)
			}
		})
	}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []string // Text of each rule
		wantLine int      // 0 = no error
		wantErr  string
	}{
		{
			name: "comments blank lines and crlf",
			in: "# berth rules\r\n\r\nallow 1024-65535 192.168.0.0/24 1024-65535\r\n" +
				"   # indented comment\n\tdeny 0-65535 0.0.0.0/0 0-65535\n",
			want: []string{"allow 1024-65535 192.168.0.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"},
		},
		{name: "empty text gives no rules", in: "", want: []string{}},
		{name: "only comments", in: "# nothing\n\n#\n", want: []string{}},
		{
			name:     "bad ports on line 3",
			in:       "# head\nallow 80 10.0.0.0/8 80\nallow 65536 10.0.0.0/8 80\ndeny 0-65535 0.0.0.0/0 0-65535\n",
			wantLine: 3,
			wantErr:  `policy: line 3: rule "allow 65536 10.0.0.0/8 80": bad external ports "65536"`,
		},
		{name: "bad action on line 1", in: "alow 80 10.0.0.0/8 80", wantLine: 1, wantErr: `bad action "alow"`},
		{name: "missing token on line 2", in: "\ndeny 80", wantLine: 2, wantErr: "missing internal prefix"},
		{name: "bad prefix on line 2", in: "#\nallow 80 10.0.0/8 80", wantLine: 2, wantErr: `bad internal prefix "10.0.0/8"`},
		{name: "bad regex on line 4", in: "\n\n\nallow 80 10.0.0.0/8 80 a[", wantLine: 4, wantErr: `bad description regexp "a["`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRules(tt.in)
			if tt.wantLine != 0 {
				var le *LineError
				if !errors.As(err, &le) {
					t.Fatalf("ParseRules: got error %v (%T), want *LineError", err, err)
				}
				if le.Line != tt.wantLine {
					t.Errorf("ParseRules: got line %d, want %d", le.Line, tt.wantLine)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseRules: got error %q, want %q inside", err, tt.wantErr)
				}
				if strings.Count(err.Error(), "policy:") != 1 {
					t.Errorf("ParseRules: got error %q, want one \"policy:\" prefix", err)
				}
				if errors.Unwrap(err) != le.Err {
					t.Errorf("ParseRules: Unwrap got %v, want %v", errors.Unwrap(err), le.Err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRules: got error %v, want nil", err)
			}
			if got == nil {
				t.Fatalf("ParseRules: got nil slice, want non-nil")
			}
			var texts []string
			for _, r := range got {
				texts = append(texts, r.Text)
			}
			if strings.Join(texts, "|") != strings.Join(tt.want, "|") {
				t.Errorf("ParseRules: got rules %q, want %q", texts, tt.want)
			}
		})
	}
}

func TestDefaultRules(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.0.7/24"), netip.MustParsePrefix("fd00::/64")}
	got := DefaultRules(lan)
	want := []string{
		"allow 1024-65535 192.168.0.0/24 1024-65535",
		"allow 1024-65535 fd00::/64 1024-65535",
		"deny 0-65535 0.0.0.0/0 0-65535",
		"deny 0-65535 ::/0 0-65535",
	}
	if len(got) != len(want) {
		t.Fatalf("DefaultRules: got %d rules, want %d", len(got), len(want))
	}
	for i, w := range want {
		t.Run(w, func(t *testing.T) {
			// Each default rule must be exactly what parsing its Text gives.
			parsed, err := ParseRule(w)
			if err != nil {
				t.Fatalf("ParseRule(%q): %v", w, err)
			}
			if d := ruleDiff(got[i], parsed); d != "" {
				t.Errorf("DefaultRules()[%d]: %s", i, d)
			}
		})
	}
}
