package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"slices"

	"github.com/berthd/berth/internal/mapping"
)

const (
	// maxRetry bounds the failed batches kept to be written again; past
	// it the next batch compacts instead.
	maxRetry = 1 << 20
	// maxSpare bounds the queue buffer kept for reuse between batches.
	maxSpare = 1 << 20
)

// writer is the state of the writer goroutine. Open uses it before the
// goroutine starts; afterwards only the goroutine does.
type writer struct {
	f    file
	size int64 // length of the journal up to the last good record
	// alloc is the file's length: past size it holds zeros, written ahead
	// (growJournal) so that appending changes no metadata and
	// fdatasync writes the records alone.
	alloc int64
	// noReserve is set when zeros could not be written ahead (a quota, a
	// disk that filled) or the file system had too little free space:
	// appends go on without, and without a fstatfs each, until the next
	// compaction.
	noReserve bool
	records   int // records in the journal, superseded ones included

	// live maps the key bytes of each live mapping to its encoded put
	// record; the map key is a substring of the record, so a live
	// mapping costs one allocation and one map slot: about 130 bytes for
	// a typical mapping (TestMemoryPerMapping), against over 200 for a
	// map[mapping.Key][]byte, whose 64-byte keys sit beside the records.
	live  map[string]string
	epoch string // the encoded epoch record, or ""

	retry   []byte // records of failed batches, written before the next batch
	retryN  int    // records in retry
	rewrite bool   // the journal is in doubt: the next batch compacts into a fresh file
	// holdOff is the record count below which no compaction is tried
	// after one failed (a disk too full for a snapshot).
	holdOff int
	spare   []byte // the previous batch's buffer, reused for the queue
}

// apply updates the live set with one encoded record.
func (w *writer) apply(rec []byte) {
	p := rec[offPayload:]
	switch RecordType(p[0]) {
	case TypePut:
		v := string(rec)
		k := v[offPayload+offKey : offPayload+keyEnd(p)]
		// Delete first so that the map key is the new record's substring
		// and the old record can be freed.
		delete(w.live, k)
		w.live[k] = v
	case TypeDelete:
		delete(w.live, string(p[offKey:keyEnd(p)]))
	case TypeEpoch:
		w.epoch = string(rec)
	}
}

// applyBatch applies every record of a batch the store encoded and
// returns how many there are.
func (w *writer) applyBatch(b []byte) int {
	n := 0
	for len(b) > 0 {
		end := frameLen + int(binary.BigEndian.Uint32(b[offLength:]))
		w.apply(b[:end])
		b = b[end:]
		n++
	}
	return n
}

// shouldCompact reports whether the journal, with extra more records,
// holds too many superseded ones.
func (w *writer) shouldCompact(extra, ratio, minRecords int) bool {
	total := w.records + w.retryN + extra
	if total < w.holdOff {
		return false
	}
	live := len(w.live)
	if w.epoch != "" {
		live++
	}
	return total > minRecords && total > ratio*live
}

// tidyAtClose reports whether the journal holds enough superseded records
// to be compacted at Close: more than an eighth of the live ones, and
// more than closeMinSuperseded.
func (w *writer) tidyAtClose() bool {
	live := len(w.live)
	if w.epoch != "" {
		live++
	}
	superseded := w.records - live
	return w.f != nil && superseded > closeMinSuperseded && superseded > live/8
}

// closeMinSuperseded is the fewest superseded records worth a compaction
// at Close.
const closeMinSuperseded = 256

// mappings decodes the live set, sorted by Key.
func (w *writer) mappings() []mapping.Mapping {
	// Sort the records by a byte key first, then decode them in order: a
	// Mapping is too big to sort cheaply.
	type entry struct {
		k sortKey
		v string
	}
	es := make([]entry, 0, len(w.live))
	for k, v := range w.live {
		es = append(es, entry{makeSortKey(k), v})
	}
	slices.SortFunc(es, func(a, b entry) int { return bytes.Compare(a.k[:], b.k[:]) })
	ms := make([]mapping.Mapping, len(es))
	var buf []byte
	for i, e := range es {
		buf = append(buf[:0], e.v...)
		r, _, err := DecodeRecord(buf)
		if err != nil {
			panic("store: live record does not decode: " + err.Error()) // every one was encoded or checked here
		}
		ms[i] = r.Mapping
	}
	return ms
}

// sortKey orders encoded keys as mapping.Key.Compare orders keys: port,
// protocol, then each address by family (none, IPv4, IPv6) and bytes.
type sortKey [2 + 1 + 2*(1+16)]byte

// makeSortKey makes the sort key of an encoded key (see format.go).
func makeSortKey(k string) sortKey {
	var s sortKey
	proto, rest := k[0], k[1:]
	n := int(rest[0])
	ext, rest := rest[1:1+n], rest[1+n:]
	s[0], s[1], s[2] = rest[0], rest[1], proto
	s[3] = byte(min(n, 5)) // 0, 4 or 5 for 16: a rank
	copy(s[4:20], ext)
	rest = rest[2:]
	s[20] = byte(min(int(rest[0]), 5))
	copy(s[21:], rest[1:])
	return s
}

// run is the writer goroutine: it takes everything queued, writes it with
// one write and one fdatasync (later for lazy changes alone), and reports
// the outcome to the waiters, until Close.
func (s *Store) run() {
	defer close(s.exited)
	var err error
	for {
		_, more := <-s.kick
		for {
			ok, berr := s.drain()
			if !ok {
				break
			}
			err = berr
		}
		if !more {
			break
		}
	}
	if err != nil || s.w.rewrite || len(s.w.retry) > 0 {
		// A last try to leave the file as the store's state says.
		var synced bool
		if synced, err = s.commit(nil); err == nil && !synced {
			if err = s.w.f.Datasync(); err != nil {
				err = fmt.Errorf("store: sync: %w", err)
			}
		}
	} else if s.w.tidyAtClose() {
		// The next start reads every record of the journal: leave it
		// with the live ones only (a clean restart with 100,000 leases
		// read up to four times as many).
		if cerr := s.compact(); cerr != nil {
			s.log.Warn("compaction at close failed; the journal stays as it is", "err", cerr)
		}
	}
	if err == nil && !s.w.rewrite {
		s.w.trimTail()
	}
	if s.w.f != nil {
		if cerr := s.w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: close: %w", cerr)
		}
	}
	if s.openF != nil {
		s.openF.Close()
	}
	if err == nil && s.openF != nil {
		// Every change is synced: the next start need not doubt them.
		if rerr := s.fs.Remove(s.open); rerr != nil {
			s.log.Warn("cannot remove the store's open marker; the next start after a reboot will restart the epoch", "err", rerr)
		} else if derr := s.fs.SyncDir(s.dir); derr != nil {
			s.log.Warn("cannot sync the store's directory", "err", derr)
		}
	}
	s.closeErr = err
}

// drain commits what is queued, if anything, or syncs the lazy changes
// written when their sync is due, and returns whether it did and the
// error.
func (s *Store) drain() (bool, error) {
	// Callers that are runnable put their records before the batch is
	// taken and share its sync: with 16 × GOMAXPROCS waiting clients this
	// halves the syncs per change (BenchmarkPutWaitParallel). When nothing
	// else is runnable, Gosched returns at once.
	runtime.Gosched()
	s.mu.Lock()
	if len(s.pending) == 0 {
		due := s.syncDueLocked()
		s.mu.Unlock()
		if !due {
			return false, nil
		}
		return true, s.syncWritten()
	}
	batch := s.pending
	s.pending = s.w.spare[:0]
	hi := s.queued
	s.mu.Unlock()

	synced, err := s.commit(batch)
	s.w.spare = nil
	if cap(batch) <= maxSpare {
		s.w.spare = batch[:0]
	}
	switch {
	case synced:
		s.finish(hi, err)
	case err != nil:
		// The lazy changes written before have an outcome of their own.
		s.syncWritten()
		s.finish(hi, err)
	default:
		s.markWritten(hi)
		s.mu.Lock()
		due := s.syncDueLocked()
		if !due && !s.armed {
			s.armed = true
			s.stopSync = s.clk.AfterFunc(syncDelay, s.syncLater)
		}
		s.mu.Unlock()
		if due {
			err = s.syncWritten()
		}
	}
	return true, err
}

// syncDueLocked reports whether changes written are to be synced now: a
// strict change or a Wait asks for it, or the store is closing.
func (s *Store) syncDueLocked() bool {
	return s.written > s.done && (s.strict > s.done || s.closed)
}

// syncLater runs syncDelay after lazy changes were written and had their
// sync put off: it makes the writer sync what is written by now.
func (s *Store) syncLater() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	s.strict = max(s.strict, s.written)
	s.kickLocked()
}

// syncWritten syncs the changes written and not synced, and reports
// their outcome. Called by the writer goroutine.
func (s *Store) syncWritten() error {
	s.mu.Lock()
	hi, done := s.written, s.done
	s.mu.Unlock()
	if hi <= done {
		return nil
	}
	err := s.w.f.Datasync()
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty
		// pages; trust only a fresh file.
		err = fmt.Errorf("store: sync: %w", err)
		s.w.rewrite = true
		// Lazy changes answered may be gone from the page cache too:
		// until a clean Close, the next start doubts them, even in this
		// boot.
		s.doubt()
	}
	s.finish(hi, err)
	return err
}

// commit applies a batch to the live set and writes it: appended to the
// journal, or in a compacted journal. synced says whether the outcome
// covers the changes written before too (a compaction, which syncs, or
// NoSync); otherwise a successful append is still to be synced.
func (s *Store) commit(batch []byte) (synced bool, err error) {
	w := &s.w
	n := w.applyBatch(batch)
	if w.rewrite {
		return s.compactAll()
	}
	if w.shouldCompact(n, s.ratio, s.minRec) {
		synced, err := s.compactAll()
		if err == nil || w.rewrite {
			return synced, err
		}
		// The journal is intact; appending needs less room than a
		// snapshot and may still work. Try compacting again only after
		// another CompactMin records.
		w.holdOff = w.records + w.retryN + n + s.minRec
		s.log.Warn("compaction failed; appending instead", "err", err)
	}
	buf := batch
	if len(w.retry) > 0 {
		w.retry = append(w.retry, batch...)
		w.retryN += n
		buf, n = w.retry, w.retryN
	}
	if len(buf) == 0 {
		return s.noSync, nil
	}
	w.reserve(int64(len(buf)))
	if _, err = w.f.WriteAt(buf, w.size); err == nil {
		w.size += int64(len(buf))
		w.alloc = max(w.alloc, w.size)
		w.records += n
		w.retry, w.retryN = w.retry[:0], 0
		if cap(w.retry) > maxSpare {
			w.retry = nil
		}
		return s.noSync, nil
	}
	err = fmt.Errorf("store: append: %w", err)
	if terr := w.f.Truncate(w.size); terr != nil {
		w.rewrite = true // a torn tail may be left: never append after it
	} else {
		w.alloc = w.size
	}
	if len(w.retry) == 0 {
		w.retry = append(w.retry, batch...)
		w.retryN = n
	}
	if w.rewrite || len(w.retry) > maxRetry {
		w.rewrite = true
		w.retry, w.retryN = nil, 0
	}
	return false, err
}

// compactAll compacts the journal for commit. Once the rename is done,
// the outcome covers every change written before: they are in the new
// file, or, when the rename may not last, in doubt with it.
func (s *Store) compactAll() (bool, error) {
	old := s.w.f
	err := s.compact()
	if err == nil {
		s.trust()
	}
	return err == nil || s.w.f != old, err
}

// growJournal is the step by which the journal's zeroed space grows: an
// append that needs more space writes this much of zeros past it (and
// pays for one metadata change), every thousand records or so.
const growJournal = 64 << 10

// reserveMinFree is the least free space of the file system for which the
// journal takes space ahead of its records. On a small or nearly full one
// (an OpenWrt overlay, a tmpfs) the last of it is not taken before it is
// needed: appends there change the file's size, and fdatasync writes it.
const reserveMinFree = 16 * growJournal

// zeros is what the journal's space is written with ahead of the records.
var zeros [growJournal]byte

// reserve makes the file hold at least n zeroed bytes past size, up to a
// multiple of growJournal, when the file system has room to spare. Zeros
// are written, not fallocated: the first write into an fallocated extent
// changes metadata too. It is only an optimisation: when the zeros cannot
// be written, the file goes back to its length before the failed write and
// the append goes on without more.
func (w *writer) reserve(n int64) {
	if w.size+n <= w.alloc || w.noReserve {
		return
	}
	if free, ok := freeSpace(w.f); ok && free < reserveMinFree {
		w.noReserve = true
		return
	}
	end := (w.size + n + growJournal - 1) / growJournal * growJournal
	for off := w.alloc; off < end; {
		// Each write ends on a step, so that after a failure the file
		// can go back to a length that is its records' end or a multiple
		// of growJournal: zeros past any other length are read as damage.
		k := growJournal - off%growJournal
		if _, err := w.f.WriteAt(zeros[:k], off); err != nil {
			w.noReserve = true
			if w.f.Truncate(w.alloc) != nil {
				w.rewrite = true
			}
			return
		}
		off += k
		w.alloc = off
	}
}

// trimTail drops the zeroed space past the records, so that a stopped
// store's journal is only its records. Best effort: zeros past the
// records are read as the journal's end.
func (w *writer) trimTail() {
	if w.f != nil && w.alloc > w.size && w.f.Truncate(w.size) == nil {
		w.alloc = w.size
	}
}

// compact writes the live set to a temp file, fsyncs it, renames it over
// the journal and fsyncs the directory; the journal is then the new file.
// If it fails before the rename, the journal is untouched.
func (s *Store) compact() error {
	w := &s.w
	f, err := s.fs.OpenFile(s.tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	records, size, err := w.writeSnapshot(f)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if err == nil {
		err = s.fs.Rename(s.tmp, s.path)
	}
	if err != nil {
		f.Close()
		s.fs.Remove(s.tmp)
		return fmt.Errorf("store: compact: %w", err)
	}
	if w.f != nil {
		w.f.Close() // the old journal is gone; its close error says nothing about the new one
	}
	w.f, w.size, w.alloc, w.records = f, size, size, records
	w.retry, w.retryN, w.rewrite, w.holdOff, w.noReserve = nil, 0, false, 0, false
	if !s.noSync {
		if err := s.fs.SyncDir(s.dir); err != nil {
			w.rewrite = true // the rename may not last
			return fmt.Errorf("store: compact: sync directory: %w", err)
		}
	}
	s.log.Debug("journal compacted", "records", records, "bytes", size)
	return nil
}

// writeSnapshot writes a header and the live set to f and returns the
// number of records and bytes written.
func (w *writer) writeSnapshot(f file) (int, int64, error) {
	bw := bufio.NewWriterSize(f, 64<<10)
	bw.Write(appendHeader(nil))
	size, records := int64(headerLen), 0
	if w.epoch != "" {
		bw.WriteString(w.epoch)
		size, records = size+int64(len(w.epoch)), records+1
	}
	for _, v := range w.live {
		bw.WriteString(v)
		size, records = size+int64(len(v)), records+1
	}
	// bufio.Writer keeps the first error; Flush returns it.
	return records, size, bw.Flush()
}
