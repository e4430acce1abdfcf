package portmap

import (
	"context"
	"runtime"
	"slices"
	"sync"

	"github.com/berthd/berth/internal/backend"
	"github.com/berthd/berth/internal/mapping"
)

// The applier makes every backend call of the Service, in the order the
// Service asked for them, from one goroutine at a time, and lets
// concurrent requests share one: a new mapping is committed to the table
// under the Service's lock, its backend change queued, and the lock
// released; the request then waits for its ticket. While one batch is in
// the kernel the next requests queue theirs, and the applier commits
// them together: one netlink transaction for many mappings, as the lease
// store shares one disk sync among them.
//
// A batch of several tickets that the backend refuses is applied again
// one ticket at a time, so that each request learns its own outcome and
// one bad change does not fail the others. A sync ticket carries a
// snapshot of the table taken after every change queued before it, so
// those are applied first and the snapshot then wins.
//
// Combining keeps Backend.Apply's rule that a batch never adds or deletes
// a Key twice: a run of tickets is cut before a ticket that touches a Key
// the run already holds (runLen). Tickets queued without waiting are new
// mappings, each on a key the table did not hold, and deletions of
// mappings that have left the table (a client's, an expiry's, a reloaded
// policy's); every other change (a replacement, a static forward, an
// address move, a Sync) is queued with Service.mu held until its ticket
// is done.
//
// Lock order: Service.mu, then applier.mu. The applier's goroutine never
// takes Service.mu, so a caller may wait for a ticket with Service.mu
// held.
type applier struct {
	be backend.Backend

	mu       sync.Mutex
	queue    []*ticket
	busy     bool       // a goroutine is applying
	idle     *sync.Cond // on mu; broadcast when busy ends
	inflight map[mapping.Key]*ticket
}

// ticket is one queued backend call and, once done is closed, its
// outcome.
type ticket struct {
	changes []backend.Change
	sync    bool              // Sync to snapshot instead of applying changes
	snap    []mapping.Mapping // the table, for a sync ticket
	track   mapping.Key       // the new mapping a renewal may wait for; zero when none
	err     error
	done    chan struct{}
	one     [1]backend.Change // changes of a new mapping's ticket, in the same allocation
}

// newAddTicket is the ticket of a new mapping m, which a renewal of m
// may wait for.
func newAddTicket(m mapping.Mapping) *ticket {
	t := &ticket{track: m.Key}
	t.one[0] = backend.Change{Op: backend.Add, Mapping: m}
	t.changes = t.one[:]
	return t
}

func newApplier(be backend.Backend) *applier {
	a := &applier{be: be, inflight: make(map[mapping.Key]*ticket)}
	a.idle = sync.NewCond(&a.mu)
	return a
}

// submit queues t and starts the goroutine if none is applying.
func (a *applier) submit(t *ticket) *ticket {
	t.done = make(chan struct{})
	a.mu.Lock()
	a.queue = append(a.queue, t)
	if t.track != (mapping.Key{}) {
		a.inflight[t.track] = t
	}
	start := !a.busy
	a.busy = true
	a.mu.Unlock()
	if start {
		go a.run()
	}
	return t
}

// pending returns the ticket of the new mapping k while its backend
// change is still queued or in the kernel, or nil.
func (a *applier) pending(k mapping.Key) *ticket {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inflight[k]
}

// apply queues changes and waits for the outcome.
func (a *applier) apply(ctx context.Context, changes []backend.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := a.submit(&ticket{changes: changes})
	<-t.done
	return t.err
}

// sync queues a Sync to snap and waits for the outcome.
func (a *applier) sync(ctx context.Context, snap []mapping.Mapping) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := a.submit(&ticket{sync: true, snap: snap})
	<-t.done
	return t.err
}

// drain waits until nothing is queued or being applied.
func (a *applier) drain() {
	a.mu.Lock()
	for a.busy {
		a.idle.Wait()
	}
	a.mu.Unlock()
}

// run applies what is queued until the queue is empty.
func (a *applier) run() {
	for {
		// Requests that have arrived and are runnable queue their
		// changes before the batch is taken, and share its netlink
		// transaction: with 16 clients this halves the batches per
		// mapping (BenchmarkServiceMapParallel). When nothing else is
		// runnable, Gosched returns at once.
		runtime.Gosched()
		a.mu.Lock()
		batch := a.queue
		a.queue = nil
		if len(batch) == 0 {
			a.busy = false
			a.idle.Broadcast()
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		a.process(batch)
		a.mu.Lock()
		for _, t := range batch {
			if t.track != (mapping.Key{}) && a.inflight[t.track] == t {
				delete(a.inflight, t.track)
			}
		}
		a.mu.Unlock()
		for _, t := range batch {
			close(t.done)
		}
	}
}

// process applies batch in order: runs of change tickets as one backend
// batch each, sync tickets on their own.
func (a *applier) process(batch []*ticket) {
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	for len(batch) > 0 {
		if batch[0].sync {
			batch[0].err = a.be.Sync(ctx, batch[0].snap)
			batch[0].snap = nil
			batch = batch[1:]
			continue
		}
		n := runLen(batch)
		a.applyRun(ctx, batch[:n])
		batch = batch[n:]
	}
}

// runLen returns how many change tickets at the head of batch make one
// backend batch: up to the next sync ticket, and before a ticket that
// touches a Key an earlier one of the run touched (a deletion queued
// behind the creation of the same mapping, and a new mapping of the port
// behind that), so that the run holds each Key once but for a ticket's
// own replacement. New mappings' tickets are on keys the table did not
// hold, so a run of those alone, the usual batch, is taken whole without
// looking at its keys.
func runLen(batch []*ticket) int {
	n := 1
	for n < len(batch) && !batch[n].sync {
		n++
	}
	if !slices.ContainsFunc(batch[:n], func(t *ticket) bool { return t.track == (mapping.Key{}) }) {
		return n
	}
	keys := make(map[mapping.Key]struct{}, 2*n)
	for i, t := range batch[:n] {
		for _, c := range t.changes {
			if _, dup := keys[c.Mapping.Key]; dup {
				return i
			}
		}
		for _, c := range t.changes {
			keys[c.Mapping.Key] = struct{}{}
		}
	}
	return n
}

// applyRun applies the change tickets run as one backend batch, or one by
// one when the backend refuses the whole.
func (a *applier) applyRun(ctx context.Context, run []*ticket) {
	if len(run) == 1 {
		run[0].err = a.be.Apply(ctx, run[0].changes)
		return
	}
	size := 0
	for _, t := range run {
		size += len(t.changes)
	}
	all := make([]backend.Change, 0, size)
	for _, t := range run {
		all = append(all, t.changes...)
	}
	if a.be.Apply(ctx, all) == nil {
		return
	}
	for _, t := range run {
		t.err = a.be.Apply(ctx, slices.Clip(t.changes))
	}
}
