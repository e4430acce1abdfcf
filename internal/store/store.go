// Package store is berth's durable lease store: every mapping acknowledged
// to a client (UPnP IGD, NAT-PMP RFC 6886, PCP RFC 6887) is on disk before
// the reply leaves, and a restart gets the mappings and the NAT-PMP/PCP
// epoch (RFC 6886 §3.6, RFC 6887 §8.5) back.
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
	"sync"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// File names in Options.Dir.
const (
	journalName = "leases.journal"
	tempName    = "leases.journal.tmp"     // a compaction in progress
	damagedName = "leases.journal.damaged" // the last damaged journal, kept for inspection
)

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
	// Lost is true when any record could not be read.
	Lost bool
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
	log    *slog.Logger
	noSync bool
	ratio  int
	minRec int

	mu       sync.Mutex
	pending  []byte // encoded records not yet taken by the writer
	issued   Seq    // the last Seq handed out
	queued   Seq    // the last Seq whose record was queued (issued, except after Close)
	done     Seq    // every change up to done has an outcome
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
		log:     log.With("component", "store"),
		noSync:  o.NoSync,
		ratio:   o.CompactRatio,
		minRec:  o.CompactMin,
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
		ld.Lost = len(ld.Damage) > 0
	}
	if ld.Lost {
		// The epoch restarts when state is lost; a crash before the
		// caller records the new one must not bring back the old.
		s.w.epoch = ""
		s.saveDamaged(data)
	}
	if !exists || ld.Lost || s.w.shouldCompact(0, s.ratio, s.minRec) {
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
	ld.Mappings = s.w.mappings()
	if s.w.epoch != "" {
		r, _, _ := DecodeRecord([]byte(s.w.epoch))
		ld.EpochBase = r.EpochBase
	}
	go s.run()
	return s, ld, nil
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
func (s *Store) Put(m mapping.Mapping) Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.discardLocked()
	}
	s.pending = appendPut(s.pending, m)
	return s.queueLocked()
}

// Delete records that the mapping with key k is gone. Like Put, it never
// blocks on I/O and never fails.
func (s *Store) Delete(k mapping.Key) Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.discardLocked()
	}
	s.pending = appendDelete(s.pending, k)
	return s.queueLocked()
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
	return s.queueLocked()
}

// Last returns the sequence number of the last change recorded: Wait for
// it returns once every change recorded so far is durable.
func (s *Store) Last() Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

func (s *Store) queueLocked() Seq {
	s.issued++
	s.queued = s.issued
	select {
	case s.kick <- struct{}{}:
	default: // the writer is already due to look
	}
	return s.issued
}

func (s *Store) discardLocked() Seq {
	s.issued++
	return s.issued
}

// Wait returns when every change up to seq is durable (written and, unless
// NoSync, fsynced), with nil; or with the write error of the batch that
// held seq (wrapping the system error, such as syscall.ENOSPC, EROFS or
// EIO); or with ctx.Err(). Wait(ctx, 0) returns nil at once.
func (s *Store) Wait(ctx context.Context, seq Seq) error {
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

// finish records the outcome of the batch of changes lo..hi and wakes
// the waiters.
func (s *Store) finish(lo, hi Seq, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
