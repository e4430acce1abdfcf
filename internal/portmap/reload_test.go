package portmap

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/policy"
)

// TestSetPolicyWithdraws: a reloaded policy takes away the dynamic
// mappings it denies, in one backend batch with a Removed event each, and
// leaves the rest: mappings it still allows, static forwards, and
// mappings of a client now over a lowered quota.
func TestSetPolicyWithdraws(t *testing.T) {
	h := newHarness(t, func(c *policy.Config) { c.Insecure = true })
	keep := h.mustMap(t, igd(hostA, mapping.TCP, 8000, 8000, time.Hour))
	keepB := h.mustMap(t, pmp(hostB, mapping.UDP, 9000, 9000, time.Hour))
	denied := h.mustMap(t, igd(hostA, mapping.TCP, 8080, 8080, time.Hour))
	third := igd(hostA, mapping.UDP, 7000, 7070, time.Hour) // for hostB, made by hostA
	third.Internal = netip.AddrPortFrom(hostB, 7000)
	foreign := h.mustMap(t, third)
	if err := h.SetStatic(ctx, []Forward{{Name: "web", Proto: mapping.TCP, External: 8081, Internal: netip.AddrPortFrom(hostB, 80)}}); err != nil {
		t.Fatal(err)
	}
	lifetimes := map[mapping.Kind]policy.Lifetimes{
		mapping.KindNATPMP: {Min: 120 * time.Second, Max: 24 * time.Hour},
		mapping.KindIGD:    {Max: 7 * 24 * time.Hour},
	}
	sub := h.Subscribe(8)
	before := len(h.be.Batches())

	// The same policy again withdraws nothing and calls no backend.
	same, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Insecure: true, Lifetime: lifetimes})
	if err != nil {
		t.Fatal(err)
	}
	if gone := h.SetPolicy(same); len(gone) != 0 || len(h.be.Batches()) != before {
		t.Fatalf("an unchanged policy withdrew %v with %d batches", gone, len(h.be.Batches())-before)
	}

	rules, err := policy.ParseRules("deny 8080-8081 0.0.0.0/0 0-65535\nallow 1024-65535 192.168.77.0/24 1024-65535\n")
	if err != nil {
		t.Fatal(err)
	}
	strict, err := policy.New(policy.Config{LAN: []netip.Prefix{lan}, Rules: rules, MaxPerClient: 1, Lifetime: lifetimes})
	if err != nil {
		t.Fatal(err)
	}
	gone := h.SetPolicy(strict)
	keys := func(ms []mapping.Mapping) []mapping.Key {
		out := make([]mapping.Key, len(ms))
		for i, m := range ms {
			out[i] = m.Key
		}
		slices.SortFunc(out, func(a, b mapping.Key) int { return a.Compare(b) })
		return out
	}
	if got, want := keys(gone), keys([]mapping.Mapping{denied, foreign}); !slices.Equal(got, want) {
		t.Fatalf("withdrew %v, want %v (the denied port and the other host's mapping)", got, want)
	}
	batches := h.be.Batches()
	if len(batches) != before+1 {
		t.Fatalf("got %d backend batches, want 1", len(batches)-before)
	}
	var deleted []mapping.Mapping
	for _, c := range batches[len(batches)-1] {
		if c.Op != backend.Delete {
			t.Fatalf("batch holds %v, want only deletes", c)
		}
		deleted = append(deleted, c.Mapping)
	}
	if !slices.Equal(keys(deleted), keys(gone)) {
		t.Fatalf("backend deleted %v, want %v", keys(deleted), keys(gone))
	}
	for range gone {
		if e := <-sub.C(); e.Kind != Removed || !slices.Contains(keys(gone), e.Mapping.Key) {
			t.Fatalf("got event %v %v, want Removed for a withdrawn mapping", e.Kind, e.Mapping.Key)
		}
	}
	left := keys(h.List(mapping.Filter{}))
	for _, m := range []mapping.Mapping{keep, keepB} {
		if !slices.Contains(left, m.Key) {
			t.Errorf("%v is gone; the new policy allows it (hostA is over the new quota of 1, which applies to new requests)", m.Key)
		}
	}
	if len(left) != 3 {
		t.Errorf("left %v, want the two allowed mappings and the static forward", left)
	}
	// The new policy decides new requests too.
	if _, err := h.Map(ctx, igd(hostB, mapping.TCP, 8080, 8080, time.Hour)); err == nil {
		t.Error("the new policy's denied port was granted")
	}
}
