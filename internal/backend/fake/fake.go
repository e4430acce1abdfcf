// Package fake is a Backend for tests: it records every batch, keeps the
// resulting mapping set, and fails on demand.
package fake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// ErrInjected is the error returned when a failure was injected with Fail.
var ErrInjected = errors.New("fake: injected failure")

// Backend records calls. The zero value is ready to use; it is safe for
// concurrent use.
type Backend struct {
	mu      sync.Mutex
	state   map[mapping.Key]mapping.Mapping
	batches [][]backend.Change
	syncs   int
	fail    []error
	closed  bool
}

// Fail makes the next len(errs) calls of Apply or Sync fail with those
// errors in order (nil lets a call through).
func (b *Backend) Fail(errs ...error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = append(b.fail, errs...)
}

func (b *Backend) nextErr() error {
	if len(b.fail) == 0 {
		return nil
	}
	err := b.fail[0]
	b.fail = b.fail[1:]
	return err
}

// Apply records the batch and applies it to the state all-or-nothing.
func (b *Backend) Apply(ctx context.Context, cs []backend.Change) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("fake: closed")
	}
	if err := b.nextErr(); err != nil {
		return err
	}
	// The batch is checked against an overlay of the keys it touches, so
	// that its cost does not grow with the state (benchmarks run on this
	// backend with many mappings present).
	type slot struct {
		m  mapping.Mapping
		ok bool
	}
	overlay := make(map[mapping.Key]slot, len(cs))
	// Backend.Apply's rule: a batch adds a Key at most once and deletes
	// it at most once.
	type seen struct{ added, deleted bool }
	once := make(map[mapping.Key]seen, len(cs))
	present := func(k mapping.Key) bool {
		if s, ok := overlay[k]; ok {
			return s.ok
		}
		_, ok := b.state[k]
		return ok
	}
	for _, c := range cs {
		o := once[c.Mapping.Key]
		if (c.Op == backend.Add && o.added) || (c.Op == backend.Delete && o.deleted) {
			return fmt.Errorf("fake: batch %ss %v twice", c.Op, c.Mapping.Key)
		}
		o.added, o.deleted = o.added || c.Op == backend.Add, o.deleted || c.Op == backend.Delete
		once[c.Mapping.Key] = o
		switch c.Op {
		case backend.Add:
			// Like a kernel map, a key is added once: a replace must delete
			// the old mapping first in the same batch.
			if present(c.Mapping.Key) {
				return fmt.Errorf("fake: add of present %v", c.Mapping.Key)
			}
			overlay[c.Mapping.Key] = slot{c.Mapping, true}
		case backend.Delete:
			if !present(c.Mapping.Key) {
				return fmt.Errorf("fake: delete of absent %v", c.Mapping.Key)
			}
			overlay[c.Mapping.Key] = slot{}
		default:
			return fmt.Errorf("fake: bad op %v", c.Op)
		}
	}
	if b.state == nil {
		b.state = make(map[mapping.Key]mapping.Mapping)
	}
	for k, s := range overlay {
		if s.ok {
			b.state[k] = s.m
		} else {
			delete(b.state, k)
		}
	}
	b.batches = append(b.batches, slices.Clone(cs))
	return nil
}

// Sync replaces the state with want.
func (b *Backend) Sync(ctx context.Context, want []mapping.Mapping) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.nextErr(); err != nil {
		return err
	}
	b.syncs++
	b.state = make(map[mapping.Key]mapping.Mapping, len(want))
	for _, m := range want {
		b.state[m.Key] = m
	}
	return nil
}

// Close empties the state.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.state = nil
	return nil
}

// Batches returns a copy of every successful batch, in order.
func (b *Backend) Batches() [][]backend.Change {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

// Syncs is the number of successful Sync calls.
func (b *Backend) Syncs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.syncs
}

// State returns the installed mappings sorted by key.
func (b *Backend) State() []mapping.Mapping {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]mapping.Mapping, 0, len(b.state))
	for _, m := range b.state {
		out = append(out, m)
	}
	slices.SortFunc(out, func(x, y mapping.Mapping) int { return x.Key.Compare(y.Key) })
	return out
}

// Closed reports whether Close was called.
func (b *Backend) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Interface guard.
var _ backend.Backend = (*Backend)(nil)
