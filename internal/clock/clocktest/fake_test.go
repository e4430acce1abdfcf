package clocktest

import (
	"testing"
	"time"
)

func TestFakeRunsDueFunctionsInOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFake(t0)
	var got []string
	var at []time.Duration
	record := func(name string) func() {
		return func() { got = append(got, name); at = append(at, c.Now().Sub(t0)) }
	}
	c.AfterFunc(3*time.Second, record("c"))
	c.AfterFunc(time.Second, record("a"))
	stop := c.AfterFunc(2*time.Second, record("cancelled"))
	c.AfterFunc(time.Second, record("b")) // same deadline: scheduling order
	if !stop() || stop() {
		t.Fatal("stop must report true once, then false")
	}
	c.Advance(2 * time.Second)
	if want := []string{"a", "b"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
	if at[0] != time.Second {
		t.Fatalf("function ran at %v, want at its deadline 1s", at[0])
	}
	if c.Now().Sub(t0) != 2*time.Second || c.Pending() != 1 {
		t.Fatalf("now %v, pending %d; want 2s and 1", c.Now().Sub(t0), c.Pending())
	}
	// A function scheduling another within the same Advance runs it too.
	c.AfterFunc(0, func() { c.AfterFunc(500*time.Millisecond, record("chained")) })
	c.Advance(time.Second)
	if got[len(got)-1] != "c" || got[len(got)-2] != "chained" {
		t.Fatalf("got %v, want chained then c", got)
	}
	c.Set(t0) // never backwards
	if c.Now().Sub(t0) != 3*time.Second {
		t.Fatalf("Set moved the clock back to %v", c.Now())
	}
}
