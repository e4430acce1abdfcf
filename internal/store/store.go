// Package store is berth's durable lease store: every mapping acknowledged
// to a client (UPnP IGD, NAT-PMP RFC 6886, PCP RFC 6887) is in the journal
// before the reply leaves (on disk, or for NAT-PMP and PCP leases written
// and synced soon after: see PutLazy), and a restart gets the mappings and
// the NAT-PMP/PCP epoch (RFC 6886 §3.6, RFC 6887 §8.5) back.
//
// The store is a journal: one file, "leases.journal", of CRC-framed
// records (see format.go) that are only ever appended to, plus a live set
// in memory from which the file is compacted (a snapshot written to a temp
// file, fsynced and renamed over the journal) when it holds more than
// CompactRatio times as many records as there are live mappings, and at
// Close when more than an eighth of its records are superseded, so that a
// clean restart reads little more than the live leases.
//
// Why a journal and not go.etcd.io/bbolt:
//
//   - Group commit without blocking the caller. portmap.Service makes
//     changes under its own mutex and must not hold it across an fsync.
//     Put and Delete only encode a record into a queue, in the order the
//     changes happen; one writer goroutine writes everything queued with
//     one write and one fsync, so concurrent requests share an fsync.
//     bbolt serialises writers in Update (one fsync each) or batches them
//     in Batch, which blocks the calling goroutine and may reorder or
//     retry the functions.
//   - O(1) work per change: a change appends one record (about 70 bytes
//     for a typical mapping), and compaction, which rewrites the live
//     set, runs once per CompactRatio-1 times as many changes as there
//     are live mappings. A bbolt commit rewrites the B+tree pages on the
//     path to each changed key, the freelist and the meta page.
//   - Damage stays local. Every record carries its own length and CRC-32C,
//     so a torn tail after a crash or a corrupt sector loses only the
//     records it touches: Open skips them, resynchronises on the next
//     record whose framing checks out, reports what it skipped and
//     rewrites a clean file. A damaged bbolt page (meta, freelist or a
//     branch) can make the whole file unopenable.
//   - No dependency: the standard library only.
//
// Put and Delete never fail and never wait; Wait gives the outcome. A
// change whose Wait failed stays in the store's live set (see Store), so
// the caller undoes it with another change.
//
// PutLazy and DeleteLazy are for leases whose clients learn of lost state
// from the NAT-PMP/PCP epoch: WaitWritten returns once such a change is
// written to the journal, where a crash of berthd does not lose it, and
// its sync follows within syncDelay (at once when a Put, a Delete or a
// Wait asks for one). While lazy changes may be unsynced, the file
// "leases.open" holds the machine's boot ID; Open finds it only when the
// store was not closed, and when the machine restarted since, the lazy
// changes of the last moments may be lost: Open then reports Lost, and
// the epoch restarts, so that clients map again (RFC 6886 §3.6, RFC 6887
// §8.5).
//
// The store never reads the clock: expiry times are the caller's, and
// expired mappings are returned by Open for the caller to drop.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
)

// File names in Options.Dir.
const (
	journalName = "leases.journal"
	tempName    = "leases.journal.tmp"     // a compaction in progress
	damagedName = "leases.journal.damaged" // the last damaged journal, kept for inspection
	openName    = "leases.open"            // the boot ID, while lazy changes may be unsynced
)

// syncDelay bounds how long a lazy change waits for its sync when nothing
// asks for one sooner: what a power cut may lose of them. Under a stream
// of NAT-PMP or PCP requests it makes one sync of many batches, where a
// sync per batch cost as much CPU as the requests (BENCHMARKS.md).
const syncDelay = 10 * time.Millisecond

// bootIDFile is where Linux tells the boot ID, which changes at every
// boot; a variable for the tests.
var bootIDFile = "/proc/sys/kernel/random/boot_id"

// Options configure a Store.
type Options struct {
	// Dir holds the files: the journal "leases.journal", plus
	// "leases.journal.tmp" during a compaction and
	// "leases.journal.damaged", a copy of the last journal that Open
	// found damaged. It is created with mode 0700 if missing.
	Dir string
	// Logger gets compaction and recovery events; nil discards them.
	Logger *slog.Logger
	// NoSync skips every fsync (tests, benchmarks). The default, false,
	// makes Wait mean "on stable storage".
	NoSync bool
	// Strict makes PutLazy and DeleteLazy the same as Put and Delete, and
	// WaitWritten the same as Wait: every change is synced at once.
	// Changes are lazy only when the store knows the machine's boot ID.
	Strict bool
	// BootID identifies the machine's current boot; "" reads it from
	// /proc/sys/kernel/random/boot_id. Tests set it to play a reboot.
	BootID string
	// Clock runs the delayed syncs of lazy changes; nil is the system
	// clock.
	Clock clock.Clock
	// CompactRatio and CompactMin: the journal is compacted when it holds
	// more than CompactRatio times as many records as there are live
	// ones, and more than CompactMin records. Zero means the defaults, 4
	// and 4096.
	CompactRatio int
	CompactMin   int
}

// Loaded is what Open recovered.
type Loaded struct {
	// Mappings are the live mappings in the file, sorted by Key, with
	// their times in UTC. Expired ones are included: the caller owns the
	// clock and drops them.
	Mappings []mapping.Mapping
	// EpochBase is the wall time the NAT-PMP/PCP epoch started. It is
	// zero when the store is new or state was lost (Lost), and the caller
	// then starts a new epoch and records it with SetEpochBase.
	EpochBase time.Time
	// Damage reports what Open skipped, one line each, such as
	// "leases.journal: offset 1234: bad checksum; skipped 57 bytes". It is
	// empty when the file was clean.
	Damage []string
	// Lost is true when any record could not be read, or when Unclean.
	Lost bool
	// Unclean is true when the store was not closed before the machine
	// restarted: lazy changes of its last moments may not have reached
	// the disk.
	Unclean bool
}

// Seq numbers the changes given to a Store, from 1, in the order they
// were made. Wait(ctx, s) waits for every change up to s.
type Seq uint64

// ErrClosed is the error of Wait for a change made after Close.
var ErrClosed = errors.New("store: closed")

// maxFailures bounds how many failed batch ranges Wait can still report.
// Adjacent failures with the same error share one range, so only a store
// that fails and recovers more than this many times between a Put and
// its Wait gets errForgotten.
const maxFailures = 1024

var errForgotten = errors.New("store: outcome of the change is no longer known")

// failure is the error of the batches that held the changes lo..hi.
type failure struct {
	lo, hi Seq
	err    error
}

// Store is a durable lease store. Its methods are safe for concurrent
// use. Put, Delete and SetEpochBase never block on I/O and never fail;
// the outcome of a change is known through Wait.
//
// The store's live set is what the caller asked for, whether or not it
// reached the disk: a change whose Wait failed is still in it, and the
// store writes it again with a later batch or compaction. A caller that
// undoes a change whose Wait failed (portmap.Service deletes a mapping
// it could not make durable) does so with another Put or Delete.
type Store struct {
	fs     fsys
	dir    string
	path   string // the journal
	tmp    string // compaction temp file
	open   string // openName's path
	log    *slog.Logger
	noSync bool
	ratio  int
	minRec int
	clk    clock.Clock
	boot   string // the boot ID; "" when unknown
	// lazy says lazy changes are allowed: openName holds the boot ID, and
	// openF, openName kept open, is how the writer puts the store in
	// doubt. The writer may clear lazy, with mu held.
	lazy  bool
	openF file
	// doubted says openName was overwritten by doubt and not yet given
	// its boot ID back by trust. Writer only.
	doubted bool

	mu       sync.Mutex
	pending  []byte // encoded records not yet taken by the writer
	issued   Seq    // the last Seq handed out
	queued   Seq    // the last Seq whose record was queued (issued, except after Close)
	written  Seq    // every change up to written is written, or has an outcome
	done     Seq    // every change up to done has an outcome: synced or failed
	strict   Seq    // changes up to strict are to be synced at once
	armed    bool   // a delayed sync is due (stopSync cancels it)
	stopSync func() bool
	failures []failure
	forgot   Seq // outcomes up to forgot were dropped from failures
	closed   bool
	changed  chan struct{} // closed and replaced when done moves
	kick     chan struct{} // wakes the writer; closed by Close

	exited   chan struct{} // closed when the writer returns
	closeErr error         // set before exited is closed

	w writer // owned by the writer goroutine (by Open before it starts)

	lock *os.File // the directory's flock; nil with a test file system
}

// Open opens the store in o.Dir, creating it if needed, and returns what
// it recovered. It fails only when the store cannot be used at all (the
// directory cannot be created, the journal cannot be read or written). A
// damaged journal is not an error: Open recovers every record it can
// read, reports the rest in Loaded.Damage, and rewrites a clean file.
func Open(o Options) (*Store, Loaded, error) {
	return open(o, osFS{})
}

func open(o Options, sys fsys) (*Store, Loaded, error) {
	if o.Dir == "" {
		return nil, Loaded{}, errors.New("store: open: no directory")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		fs:      sys,
		dir:     o.Dir,
		path:    filepath.Join(o.Dir, journalName),
		tmp:     filepath.Join(o.Dir, tempName),
		open:    filepath.Join(o.Dir, openName),
		log:     log.With("component", "store"),
		noSync:  o.NoSync,
		ratio:   o.CompactRatio,
		minRec:  o.CompactMin,
		clk:     o.Clock,
		boot:    o.BootID,
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		exited:  make(chan struct{}),
		w:       writer{live: map[string]string{}},
	}
	if s.ratio <= 0 {
		s.ratio = 4
	}
	if s.minRec <= 0 {
		s.minRec = 4096
	}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.boot == "" {
		if b, err := os.ReadFile(bootIDFile); err == nil {
			s.boot = strings.TrimSpace(string(b))
		}
	}
	if err := sys.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, Loaded{}, fmt.Errorf("store: open: %w", err)
	}
	if _, real := sys.(osFS); real {
		l, err := lockDir(o.Dir)
		if err != nil {
			return nil, Loaded{}, err
		}
		s.lock = l
	}
	st, ld, err := s.load(sys, o)
	if err != nil && s.lock != nil {
		s.lock.Close()
	}
	return st, ld, err
}

// load does the rest of open's work once the directory is locked.
func (s *Store) load(sys fsys, o Options) (*Store, Loaded, error) {
	if err := sys.Remove(s.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, Loaded{}, fmt.Errorf("store: open: remove stale temp file: %w", err)
	}
	data, err := sys.ReadFile(s.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, Loaded{}, fmt.Errorf("store: open: %w", err)
	}
	if !exists && !s.noSync {
		// A new store: make Dir's own entry durable, in case MkdirAll just
		// made it. Best effort: the parent may not be readable.
		if err := sys.SyncDir(filepath.Dir(o.Dir)); err != nil {
			s.log.Debug("cannot sync the parent directory", "dir", filepath.Dir(o.Dir), "err", err)
		}
	}
	var ld Loaded
	end := 0
	if exists {
		ld.Damage, end = s.w.load(journalName, data)
	}
	// openName is there when the last run did not close the store. It
	// wrote every change, so what it wrote is in the page cache, unless
	// the machine restarted since (another boot ID).
	mark, err := sys.ReadFile(s.open)
	unclosed := err == nil
	switch {
	case unclosed:
		ld.Unclean = s.boot == "" || strings.TrimSpace(string(mark)) != s.boot
	case !errors.Is(err, fs.ErrNotExist):
		unclosed, ld.Unclean = true, true // unreadable: assume the worst
		s.log.Warn("cannot read the store's open marker; assuming the machine stopped", "err", err)
	}
	ld.Lost = len(ld.Damage) > 0 || ld.Unclean
	if ld.Lost {
		// The epoch restarts when state is lost; a crash before the
		// caller records the new one must not bring back the old.
		s.w.epoch = ""
	}
	if len(ld.Damage) > 0 {
		s.saveDamaged(data)
	}
	// After a run that did not close the store, the compaction makes what
	// it wrote durable.
	if !exists || ld.Lost || unclosed || s.w.shouldCompact(0, s.ratio, s.minRec) {
		if err := s.compact(); err != nil {
			return nil, Loaded{}, fmt.Errorf("store: open: %w", err)
		}
	} else {
		f, err := sys.OpenFile(s.path, os.O_RDWR, 0)
		if err != nil {
			return nil, Loaded{}, fmt.Errorf("store: open: %w", err)
		}
		s.w.f, s.w.size, s.w.alloc = f, int64(end), int64(len(data))
	}
	s.mark(o, unclosed)
	ld.Mappings = s.w.mappings()
	if s.w.epoch != "" {
		r, _, _ := DecodeRecord([]byte(s.w.epoch))
		ld.EpochBase = r.EpochBase
	}
	go s.run()
	return s, ld, nil
}

// mark writes openName, durably, when lazy changes are allowed, and
// removes one left by an earlier run (unclosed) otherwise. A failure to
// write it makes every change strict.
func (s *Store) mark(o Options, unclosed bool) {
	if !o.Strict && !s.noSync && s.boot != "" {
		f, err := s.writeOpen()
		if err == nil {
			s.lazy, s.openF = true, f
			return
		}
		s.log.Warn("cannot write the store's open marker; every change is synced at once", "file", s.open, "err", err)
	} else if !unclosed {
		return
	}
	if err := s.fs.Remove(s.open); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cannot remove the store's open marker; the next start will restart the epoch", "file", s.open, "err", err)
	} else if !s.noSync {
		s.fs.SyncDir(s.dir) // best effort: a marker that comes back only restarts the epoch
	}
}

// writeOpen writes openName with the boot ID, makes it durable, and
// returns it open.
func (s *Store) writeOpen() (file, error) {
	f, err := s.fs.OpenFile(s.open, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write([]byte(s.boot + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// inDoubt is what openName says after a failed sync: no boot ID.
const inDoubt = "sync failed"

// doubt makes the next Open doubt the lazy changes, even in this boot,
// after a failed sync: the kernel may have dropped their pages. It
// overwrites the boot ID in openName, through the file kept open for it
// (no new file descriptor needed). When that write fails (a full
// copy-on-write file system cannot overwrite in place), it empties the
// file instead, which frees space and says "not this boot" as well. If
// the marker cannot be made durable either way, lazy changes stop, as it
// can no longer speak for them. Called by the writer.
func (s *Store) doubt() {
	if s.openF == nil {
		return
	}
	err := s.rewriteOpen(inDoubt)
	if werr := (*writeAtError)(nil); errors.As(err, &werr) {
		if err = s.openF.Truncate(0); err == nil {
			err = s.openF.Sync()
		}
		if err == nil {
			s.log.Warn("cannot write the lease store's marker after a failed sync; emptied it instead", "file", s.open, "err", werr)
		} else {
			err = errors.Join(werr, err)
		}
	}
	if err != nil {
		s.log.Error("cannot mark the lease store in doubt after a failed sync; every change is synced at once from now", "file", s.open, "err", err)
		s.mu.Lock()
		s.lazy = false
		s.mu.Unlock()
		return
	}
	s.doubted = true
}

// writeAtError is rewriteOpen's failure to write, as opposed to sync.
type writeAtError struct{ err error }

func (e *writeAtError) Error() string { return e.err.Error() }
func (e *writeAtError) Unwrap() error { return e.err }

// trust gives openName its boot ID back after doubt, once a compaction
// has written the whole live set to a fresh file and synced it: nothing
// answered before is in doubt any longer, and a crash in this boot need
// not restart the epoch. On failure the marker stays in doubt, which
// only costs a new epoch. Called by the writer.
func (s *Store) trust() {
	if !s.doubted {
		return
	}
	if err := s.rewriteOpen(s.boot); err != nil {
		s.log.Warn("cannot clear the lease store's doubt after a compaction; a crash will restart the epoch", "file", s.open, "err", err)
		return
	}
	s.doubted = false
}

// rewriteOpen overwrites openName with line, padded with spaces to cover
// both the boot ID and inDoubt, through openF, and syncs it.
func (s *Store) rewriteOpen(line string) error {
	pad := max(len(s.boot), len(inDoubt)) - len(line)
	if _, err := s.openF.WriteAt([]byte(line+strings.Repeat(" ", pad)+"\n"), 0); err != nil {
		return &writeAtError{err}
	}
	return s.openF.Sync()
}

// saveDamaged keeps a copy of a damaged journal for inspection. It is
// best effort: the recovered state is what counts.
func (s *Store) saveDamaged(data []byte) {
	name := filepath.Join(s.dir, damagedName)
	f, err := s.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.log.Warn("cannot keep a copy of the damaged journal", "file", name, "err", err)
		return
	}
	s.log.Warn("journal damaged; copy kept", "file", name)
}

// Put records m under m.Key, replacing any earlier record for that key.
// It never blocks on I/O and never fails: the outcome is Wait's. After
// Close it does nothing, and Wait for its Seq returns ErrClosed.
func (s *Store) Put(m mapping.Mapping) Seq { return s.put(m, false) }

// PutLazy is Put for a lease whose client learns of lost state from the
// NAT-PMP/PCP epoch: its sync may wait up to syncDelay (see WaitWritten).
// With Options.Strict, or when the store does not know the boot ID, it
// is Put.
func (s *Store) PutLazy(m mapping.Mapping) Seq { return s.put(m, true) }

// Delete records that the mapping with key k is gone. Like Put, it never
// blocks on I/O and never fails.
func (s *Store) Delete(k mapping.Key) Seq { return s.del(k, false) }

// DeleteLazy is Delete for a lease PutLazy would record.
func (s *Store) DeleteLazy(k mapping.Key) Seq { return s.del(k, true) }

func (s *Store) put(m mapping.Mapping, lazy bool) Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.discardLocked()
	}
	s.pending = appendPut(s.pending, m)
	return s.queueLocked(!lazy || !s.lazy)
}

func (s *Store) del(k mapping.Key, lazy bool) Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.discardLocked()
	}
	s.pending = appendDelete(s.pending, k)
	return s.queueLocked(!lazy || !s.lazy)
}

// SetEpochBase records the wall time the NAT-PMP/PCP epoch started. Like
// Put, it never blocks on I/O and never fails.
func (s *Store) SetEpochBase(t time.Time) Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.discardLocked()
	}
	s.pending = appendEpoch(s.pending, t)
	return s.queueLocked(true)
}

// Last returns the sequence number of the last change recorded: Wait for
// it returns once every change recorded so far is durable.
func (s *Store) Last() Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// queueLocked numbers the change just queued; a strict one is synced at
// once.
func (s *Store) queueLocked(strict bool) Seq {
	s.issued++
	s.queued = s.issued
	if strict {
		s.strict = s.issued
	}
	s.kickLocked()
	return s.issued
}

// kickLocked wakes the writer, unless closed (the writer then drains and
// syncs everything anyway).
func (s *Store) kickLocked() {
	if s.closed {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default: // the writer is already due to look
	}
}

func (s *Store) discardLocked() Seq {
	s.issued++
	return s.issued
}

// Wait returns when every change up to seq is durable (written and, unless
// NoSync, fsynced), with nil; or with the write error of the batch that
// held seq (wrapping the system error, such as syscall.ENOSPC, EROFS or
// EIO); or with ctx.Err(). Wait(ctx, 0) returns nil at once. A lazy
// change waited for is synced at once.
func (s *Store) Wait(ctx context.Context, seq Seq) error {
	return s.wait(ctx, seq, false)
}

// WaitWritten is Wait for lazy changes: it returns nil once every change
// up to seq is written to the journal (in the page cache: a crash of
// berthd does not lose it, a power cut might), without waiting for the
// sync, and the error of a write that failed. Without lazy changes
// (Options.Strict, no boot ID) it is Wait.
func (s *Store) WaitWritten(ctx context.Context, seq Seq) error {
	return s.wait(ctx, seq, true)
}

func (s *Store) wait(ctx context.Context, seq Seq, written bool) error {
	if seq == 0 {
		return nil
	}
	for {
		s.mu.Lock()
		switch {
		case seq > s.issued:
			s.mu.Unlock()
			return fmt.Errorf("store: wait: change %d was never made", seq)
		case seq <= s.done:
			err := s.outcomeLocked(seq)
			s.mu.Unlock()
			return err
		case seq > s.queued:
			s.mu.Unlock()
			return ErrClosed
		case written && s.lazy && seq <= s.written:
			s.mu.Unlock()
			return nil
		}
		if !(written && s.lazy) && s.strict < seq {
			s.strict = seq
			s.kickLocked()
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// outcomeLocked returns the error of the batch that held seq <= s.done.
func (s *Store) outcomeLocked(seq Seq) error {
	if seq <= s.forgot {
		return errForgotten
	}
	i, found := slices.BinarySearchFunc(s.failures, seq, func(f failure, seq Seq) int {
		switch {
		case f.hi < seq:
			return -1
		case f.lo > seq:
			return 1
		}
		return 0
	})
	if found {
		return s.failures[i].err
	}
	return nil
}

// finish records the outcome of the changes after done up to hi and wakes
// the waiters.
func (s *Store) finish(hi Seq, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo := s.done + 1
	if err != nil {
		n := len(s.failures)
		if n > 0 && s.failures[n-1].hi+1 == lo && s.failures[n-1].err.Error() == err.Error() {
			s.failures[n-1].hi = hi
		} else {
			if n == maxFailures {
				s.forgot = s.failures[0].hi
				s.failures = slices.Delete(s.failures, 0, 1)
			}
			s.failures = append(s.failures, failure{lo: lo, hi: hi, err: err})
		}
	}
	s.done = hi
	s.written = max(s.written, hi)
	s.wakeLocked()
}

// markWritten records that the changes up to hi are written, not synced,
// and wakes WaitWritten's callers, if any can be.
func (s *Store) markWritten(hi Seq) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = hi
	if s.lazy {
		s.wakeLocked()
	}
}

func (s *Store) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close writes the changes still queued, waits for them, and closes the
// file. It returns the error of the last write if that failed and a last
// attempt to write the store's state failed too. Close is idempotent;
// later calls return the first call's result.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.kick)
		if s.stopSync != nil {
			s.stopSync()
		}
	}
	s.mu.Unlock()
	<-s.exited
	s.mu.Lock()
	if s.lock != nil {
		s.lock.Close() // after the writer's last sync
		s.lock = nil
	}
	s.mu.Unlock()
	return s.closeErr
}
