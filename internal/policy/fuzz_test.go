package policy

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseRule checks that ParseRule never panics, that what it accepts
// is well formed, and that a rule re-parses from its Text to an equal rule.
func FuzzParseRule(f *testing.F) {
	for _, tt := range parseRuleTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("ParseRule(%q): got error %q, want a \"policy: \" prefix", s, err)
			}
			return
		}
		if r.External.Empty() || r.IntPorts.Empty() {
			t.Fatalf("ParseRule(%q): got empty port range in %+v", s, r)
		}
		if !r.Internal.IsValid() || r.Internal != r.Internal.Masked() || r.Internal.Addr().Is4In6() {
			t.Fatalf("ParseRule(%q): got Internal %v, want a valid masked prefix", s, r.Internal)
		}
		if r.Text != strings.TrimSpace(r.Text) || r.Text == "" {
			t.Fatalf("ParseRule(%q): got Text %q, want trimmed and non-empty", s, r.Text)
		}
		again, err := ParseRule(r.Text)
		if err != nil {
			t.Fatalf("ParseRule(%q) re-parsing Text %q: %v", s, r.Text, err)
		}
		if d := ruleDiff(again, r); d != "" {
			t.Fatalf("ParseRule(%q) re-parsed from Text: %s", s, d)
		}
		// The rule must also be usable in a Policy.
		if err := checkRule(r); err != nil {
			t.Fatalf("ParseRule(%q): checkRule: %v", s, err)
		}
	})
}

// FuzzParseRules checks that ParseRules never panics, that a failure names
// a line of the input, and that the rules it returns re-parse from their
// Text, one per line, to equal rules.
func FuzzParseRules(f *testing.F) {
	f.Add("# rules\nallow 1024-65535 192.168.0.0/24 1024-65535\r\n\ndeny 0-65535 0.0.0.0/0 0-65535\n")
	f.Add("allow 80 10.0.0.0/8 80 ^web\nallow 65536 10.0.0.0/8 80")
	for _, tt := range parseRuleTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseRules(s)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 || le.Line > strings.Count(s, "\n")+1 {
				t.Fatalf("ParseRules(%q): got error %v, want a *LineError within the text", s, err)
			}
			return
		}
		texts := make([]string, len(rules))
		for i, r := range rules {
			texts[i] = r.Text
		}
		again, err := ParseRules(strings.Join(texts, "\n"))
		if err != nil {
			t.Fatalf("ParseRules(%q) re-parsing Texts: %v", s, err)
		}
		if len(again) != len(rules) {
			t.Fatalf("ParseRules(%q) re-parsed: got %d rules, want %d", s, len(again), len(rules))
		}
		for i := range rules {
			if d := ruleDiff(again[i], rules[i]); d != "" {
				t.Fatalf("ParseRules(%q) rule %d re-parsed: %s", s, i, d)
			}
		}
	})
}
