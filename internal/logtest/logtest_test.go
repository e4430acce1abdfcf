package logtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	var b Buffer
	if got := b.Lines(); got != nil {
		t.Fatalf("empty: %q", got)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
	}
	wg.Wait()
	got := b.Lines()
	slices.Sort(got)
	if want := []string{"line 0", "line 1", "line 2", "line 3"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := b.Lines(); got != nil {
		t.Fatalf("nothing new: %q", got)
	}
	fmt.Fprintln(&b, "more")
	if got := b.Lines(); !slices.Equal(got, []string{"more"}) {
		t.Fatalf("after one more line: %q", got)
	}
	if got := b.String(); len(got) != len("line 0\n")*4+len("more\n") {
		t.Fatalf("String kept %q", got)
	}
}
