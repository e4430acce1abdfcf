package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// base is a fixed wall time for expiries; the store never reads a clock.
var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testMapping returns a typical IPv4 UPnP mapping, a different one for
// each i below 15,000,000.
func testMapping(i int) mapping.Mapping {
	ext := netip.AddrFrom4([4]byte{203, 0, 113, byte(2 + i/60000)})
	return mapping.Mapping{
		Key:      mapping.Key{Proto: mapping.TCP, External: netip.AddrPortFrom(ext, uint16(1024+i%60000))},
		Internal: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), 80),
		Client:   netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}),
		Origin:   mapping.Origin{Kind: mapping.KindIGD, Description: "test mapping"},
		Expires:  base.Add(time.Duration(i) * time.Second),
	}
}

func mustOpen(t testing.TB, o Options, sys fsys) (*Store, Loaded) {
	t.Helper()
	if sys == nil {
		sys = osFS{}
	}
	s, ld, err := open(o, sys)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ld
}

func wait(t testing.TB, s *Store, seq Seq) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Wait(ctx, seq); err != nil {
		t.Fatalf("Wait(%d): %v", seq, err)
	}
}

// checkMappings compares got with want sorted by Key.
func checkMappings(t testing.TB, got, want []mapping.Mapping) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b mapping.Mapping) int { return a.Key.Compare(b.Key) })
	if len(got) != len(want) {
		t.Fatalf("got %d mappings, want %d:\n%s", len(got), len(want), diffMappings(got, want))
	}
	for i := range got {
		if !sameMapping(got[i], want[i]) {
			t.Fatalf("mapping %d differs:\n%s", i, diffMappings(got, want))
		}
	}
}

func diffMappings(got, want []mapping.Mapping) string {
	s := ""
	for _, m := range got {
		s += "\tgot  " + describe(m) + "\n"
	}
	for _, m := range want {
		s += "\twant " + describe(m) + "\n"
	}
	return s
}

func checkClean(t testing.TB, ld Loaded) {
	t.Helper()
	if len(ld.Damage) > 0 || ld.Lost {
		t.Fatalf("got damage %q, lost %v; want a clean load", ld.Damage, ld.Lost)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: filepath.Join(dir, "state")}
	s, ld := mustOpen(t, o, nil)
	checkClean(t, ld)
	if len(ld.Mappings) != 0 || !ld.EpochBase.IsZero() {
		t.Fatalf("new store loaded %d mappings, epoch %v", len(ld.Mappings), ld.EpochBase)
	}
	if fi, err := os.Stat(o.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v, %v; want mode 0700", fi, err)
	}
	var want []mapping.Mapping
	for _, g := range goldens {
		if g.rec.Type == TypePut {
			want = append(want, g.rec.Mapping)
		}
	}
	v4 := testMapping(1)
	overwritten := testMapping(2)
	gone := testMapping(3)
	v4mapped := testMapping(4)
	v4mapped.External = netip.AddrPortFrom(netip.MustParseAddr("::ffff:203.0.113.2"), 1028)
	for _, m := range want {
		s.Put(m)
	}
	s.Put(v4)
	s.Put(overwritten)
	s.Put(gone)
	s.Put(v4mapped)
	s.SetEpochBase(base.Add(-time.Hour))
	s.Delete(gone.Key)
	overwritten.Internal = netip.MustParseAddrPort("192.168.9.9:9999")
	overwritten.Peers = mapping.NewPeers(mapping.Peer{Prefix: netip.MustParsePrefix("::/0")})
	s.Put(overwritten)
	s.Delete(mapping.Key{Proto: mapping.UDP, External: netip.MustParseAddrPort("192.0.2.1:1")}) // never put
	wait(t, s, s.SetEpochBase(base))
	want = append(want, v4, overwritten, v4mapped)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for range 2 {
		s, ld = mustOpen(t, o, nil)
		checkClean(t, ld)
		checkMappings(t, ld.Mappings, want)
		if !ld.EpochBase.Equal(base) {
			t.Fatalf("EpochBase = %v, want %v", ld.EpochBase, base)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGoldenJournal opens a journal assembled from the golden records:
// the file format of version 1 stays readable.
func TestGoldenJournal(t *testing.T) {
	dir := t.TempDir()
	data := appendHeader(nil)
	for _, f := range []string{"put-ipv4.txt", "put-ipv6-peers.txt", "put-remote-permanent.txt", "epoch.txt", "delete-ipv4.txt"} {
		data = append(data, loadGolden(t, f)...)
	}
	if err := os.WriteFile(filepath.Join(dir, journalName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, Options{Dir: dir, NoSync: true}, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, []mapping.Mapping{goldens[1].rec.Mapping, goldens[2].rec.Mapping})
	if want := goldens[4].rec.EpochBase; !ld.EpochBase.Equal(want) {
		t.Errorf("EpochBase = %v, want %v", ld.EpochBase, want)
	}
}

// TestGroupCommit runs many Put+Wait at once against a slow fsync: the
// writer must share fsyncs between them.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	sys := &faultFS{onSync: func() { time.Sleep(time.Millisecond) }}
	s, _ := mustOpen(t, Options{Dir: dir}, sys)
	before := sys.get().syncs
	const workers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq := s.Put(testMapping(w*each + i))
				errs <- s.Wait(context.Background(), seq)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
	syncs := sys.get().syncs - before
	t.Logf("%d Put+Wait, %d fsyncs", workers*each, syncs)
	if syncs >= workers*each || syncs == 0 {
		t.Errorf("%d fsyncs for %d Puts; want fewer, and some", syncs, workers*each)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, Options{Dir: dir}, nil)
	checkClean(t, ld)
	var want []mapping.Mapping
	for i := range workers * each {
		want = append(want, testMapping(i))
	}
	checkMappings(t, ld.Mappings, want)
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	sys := &faultFS{}
	o := Options{Dir: dir, NoSync: true, CompactMin: 64, CompactRatio: 4}
	s, _ := mustOpen(t, o, sys)
	const keys, rounds = 8, 600
	recLen := int64(len(appendPut(nil, testMapping(0))))
	want := make([]mapping.Mapping, keys)
	var maxSize int64
	for r := range rounds {
		var seq Seq
		for k := range keys {
			m := testMapping(k)
			m.Expires = base.Add(time.Duration(r) * time.Minute)
			want[k] = m
			seq = s.Put(m)
		}
		if r%7 == 0 {
			s.Delete(testMapping(keys).Key)
			seq = s.SetEpochBase(base.Add(time.Duration(r)))
		}
		wait(t, s, seq)
		used, size := journalUsed(t, dir)
		if size > used+growJournal {
			t.Fatalf("journal file of %d bytes for %d bytes of records, want at most %d of zeroed space", size, used, growJournal)
		}
		maxSize = max(maxSize, used)
	}
	// At most CompactMin records plus one batch before a compaction.
	if limit := headerLen + (64+2*keys+2)*recLen; maxSize > limit {
		t.Errorf("journal grew to %d bytes, want at most %d", maxSize, limit)
	}
	if n := sys.get().renames; n < rounds*keys/64/2 {
		t.Errorf("%d compactions for %d records, want more", n, rounds*keys)
	}
	t.Logf("largest journal %d bytes, %d compactions", maxSize, sys.get().renames)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, o, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, want)
	if want := base.Add(time.Duration(rounds - 1 - (rounds-1)%7)); !ld.EpochBase.Equal(want) {
		t.Errorf("EpochBase = %v, want %v", ld.EpochBase, want)
	}
}

// TestCompactionConcurrent holds a compaction at its rename while more
// changes are queued: they must land after the snapshot.
func TestCompactionConcurrent(t *testing.T) {
	dir := t.TempDir()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sys := &faultFS{}
	o := Options{Dir: dir, NoSync: true, CompactMin: 16, CompactRatio: 2}
	s, _ := mustOpen(t, o, sys)
	sys.set(func(f *faultFS) {
		f.onRename = func() {
			once.Do(func() { close(started); <-release })
		}
	})
	a, b, c := testMapping(1), testMapping(2), testMapping(3)
	wait(t, s, s.Put(c))
	for i := range 20 {
		a.Expires = base.Add(time.Duration(i) * time.Second)
		s.Put(a)
	}
	<-started
	s.Put(b)
	s.Delete(c.Key)
	a.Expires = base.Add(time.Hour)
	s.Put(a)
	last := s.SetEpochBase(base)
	close(release)
	wait(t, s, last)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, o, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, []mapping.Mapping{a, b})
	if !ld.EpochBase.Equal(base) {
		t.Errorf("EpochBase = %v, want %v", ld.EpochBase, base)
	}
}

// TestCompactOnOpen: a journal with too many superseded records, as a
// crash leaves it (Close would have compacted it), is compacted when
// opened.
func TestCompactOnOpen(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, NoSync: true, CompactMin: 1 << 20}
	s, _ := mustOpen(t, o, nil)
	var seq Seq
	for i := range 500 {
		m := testMapping(i % 3)
		m.Expires = base.Add(time.Duration(i))
		seq = s.Put(m)
	}
	wait(t, s, seq)
	journal := filepath.Join(dir, journalName)
	crashed, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(journal, crashed, 0o600); err != nil {
		t.Fatal(err)
	}
	o.CompactMin = 10
	sys := &faultFS{}
	_, ld := mustOpen(t, o, sys)
	checkClean(t, ld)
	if n := sys.get().renames; n != 1 {
		t.Errorf("%d renames on Open, want 1 compaction", n)
	}
	fi, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(headerLen + 3*len(appendPut(nil, testMapping(0)))); fi.Size() != want {
		t.Errorf("journal of %d bytes after Open, want %d", fi.Size(), want)
	}
}

func TestWaitAndClose(t *testing.T) {
	dir := t.TempDir()
	block := make(chan struct{})
	var blocking sync.Once
	sys := &faultFS{}
	s, _ := mustOpen(t, Options{Dir: dir}, sys)
	if err := s.Wait(context.Background(), 0); err != nil {
		t.Errorf("Wait(0) = %v, want nil", err)
	}
	if err := s.Wait(context.Background(), 99); err == nil {
		t.Error("Wait for a change never made returned nil")
	}

	// A Wait whose context ends while the fsync hangs.
	entered := make(chan struct{})
	sys.set(func(f *faultFS) {
		f.onSync = func() { blocking.Do(func() { close(entered); <-block }) }
	})
	seq := s.Put(testMapping(1))
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx, seq); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a canceled context = %v, want context.Canceled", err)
	}
	queued := s.Put(testMapping(2)) // queued while the writer is busy
	close(block)

	// Close flushes what is queued.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wait(t, s, seq)
	wait(t, s, queued)
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	after := s.Put(testMapping(3))
	s.Delete(testMapping(1).Key)
	if err := s.Wait(context.Background(), after); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
	_, ld := mustOpen(t, Options{Dir: dir}, nil)
	checkMappings(t, ld.Mappings, []mapping.Mapping{testMapping(1), testMapping(2)})
}

func TestStaleTempFileRemoved(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tempName), []byte("half a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, Options{Dir: dir, NoSync: true}, nil)
	checkClean(t, ld)
	if _, err := os.Stat(filepath.Join(dir, tempName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file still there: %v", err)
	}
}

// TestMemoryPerMapping measures the heap the live set takes per typical
// mapping (IPv4, a short description, no peers).
func TestMemoryPerMapping(t *testing.T) {
	const n = 100_000
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = appendPut(nil, testMapping(i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := writer{live: map[string]string{}}
	for _, r := range recs {
		w.apply(r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(w.live)
	t.Logf("live set: %.0f bytes per mapping (record %d bytes)", per, len(recs[0]))
	if per > 200 {
		t.Errorf("live set takes %.0f bytes per mapping, want under 200", per)
	}
	if len(w.live) != n {
		t.Fatalf("%d live, want %d", len(w.live), n)
	}
}

func ExampleStore() {
	dir, _ := os.MkdirTemp("", "store")
	defer os.RemoveAll(dir)
	s, ld, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(ld.Mappings), ld.Lost)
	// portmap.Service, under its mutex: change the lease table, then
	seq := s.Put(testMapping(1))
	// then, without the mutex, before replying:
	if err := s.Wait(context.Background(), seq); err != nil {
		fmt.Println("undo:", err) // and s.Delete the mapping
	}
	fmt.Println(s.Close())
	// Output:
	// 0 false
	// <nil>
}

func TestSecondOpenOfADirectoryFails(t *testing.T) {
	dir := t.TempDir()
	a, _, err := Open(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, _, err := Open(Options{Dir: dir, NoSync: true}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second Open of %s: got %v, want an in-use error", dir, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, _, err := Open(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	b.Close()
}

// TestLast checks that Last is the sequence number of the last change
// recorded, and that waiting for it waits for every change before.
func TestLast(t *testing.T) {
	s, _ := mustOpen(t, Options{Dir: t.TempDir()}, osFS{})
	defer s.Close()
	if s.Last() != 0 {
		t.Fatalf("Last of a new store = %d, want 0", s.Last())
	}
	var seq Seq
	for i := range 3 {
		seq = s.Put(testMapping(i))
	}
	if s.Last() != seq {
		t.Fatalf("Last = %d after Puts up to %d", s.Last(), seq)
	}
	if err := s.Wait(context.Background(), s.Last()); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(context.Background(), seq-2); err != nil {
		t.Fatal(err)
	}
	if d := s.Delete(testMapping(0).Key); s.Last() != d {
		t.Fatalf("Last = %d after a Delete numbered %d", s.Last(), d)
	}
}

// journalUsed returns where the records of dir's journal end, and the
// file's size: past the records the file holds zeroed space.
func journalUsed(t *testing.T, dir string) (used, size int64) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	w := writer{live: map[string]string{}}
	damage, end := w.load(journalName, data)
	if len(damage) > 0 {
		t.Fatalf("journal damaged: %q", damage)
	}
	return int64(end), int64(len(data))
}

// TestCloseCompacts checks that Close leaves a journal with many
// superseded records holding only the live ones, so that the next start
// reads no more than it must, and leaves a journal with few as it is.
func TestCloseCompacts(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, journalName)
	s, _ := mustOpen(t, Options{Dir: dir, NoSync: true}, nil)
	var seq Seq
	for i := range 10 {
		seq = s.Put(testMapping(i))
	}
	wait(t, s, seq)
	for range 3 { // three renewals: too few to rewrite
		seq = s.Put(testMapping(0))
	}
	wait(t, s, seq)
	few, err := os.Stat(journal)
	if err != nil {
		t.Fatal(err)
	}
	used, _ := journalUsed(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close keeps the file and drops only its zeroed space.
	if st, err := os.Stat(journal); err != nil || st.Size() != used || !os.SameFile(st, few) {
		t.Fatalf("Close rewrote a journal with 3 superseded records (%v, %v), or left more than its %d bytes of records", st, err, used)
	}

	s, ld := mustOpen(t, Options{Dir: dir, NoSync: true}, nil)
	if len(ld.Mappings) != 10 {
		t.Fatalf("reopened: %d mappings, want 10", len(ld.Mappings))
	}
	for i := range 2000 {
		seq = s.Put(testMapping(i % 10))
	}
	wait(t, s, seq)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(journal)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > used {
		t.Errorf("after 2,000 renewals of 10 leases and Close, the journal holds %d bytes, want at most %d (the live records)", st.Size(), used)
	}
	_, ld = mustOpen(t, Options{Dir: dir, NoSync: true}, nil)
	if len(ld.Mappings) != 10 || ld.Lost {
		t.Fatalf("after the compaction at close: %d mappings (lost %v), want 10", len(ld.Mappings), ld.Lost)
	}
}

// TestAppendsInZeroedSpace: the journal's file is written with zeros ahead
// of its records, growJournal at a time, so that an append changes no
// metadata and its fdatasync writes only the records; Close trims the
// zeros, and every stage reads back whole.
func TestAppendsInZeroedSpace(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	s, _ := mustOpen(t, o, nil)
	wait(t, s, s.Put(testMapping(0)))
	used, size := journalUsed(t, dir)
	if size != growJournal {
		t.Fatalf("journal of %d bytes after the first append (%d of records), want %d", size, used, growJournal)
	}
	recLen := int64(len(appendPut(nil, testMapping(0))))
	fit := int((growJournal - used) / recLen) // still fit in the zeroed space
	var want []mapping.Mapping
	want = append(want, testMapping(0))
	var seq Seq
	for i := 1; i <= fit; i++ {
		want = append(want, testMapping(i))
		seq = s.Put(testMapping(i))
	}
	wait(t, s, seq)
	if used2, size2 := journalUsed(t, dir); size2 != growJournal || used2 != used+int64(fit)*recLen {
		t.Fatalf("after %d more appends: %d bytes of records in a file of %d, want %d in %d", fit, used2, size2, used+int64(fit)*recLen, growJournal)
	}
	want = append(want, testMapping(fit+1))
	wait(t, s, s.Put(testMapping(fit+1))) // one record past the zeroed space
	if used3, size3 := journalUsed(t, dir); size3 != 2*growJournal || used3 != used+int64(fit+1)*recLen {
		t.Fatalf("past the zeroed space: %d bytes of records in a file of %d, want %d in %d", used3, size3, used+int64(fit+1)*recLen, 2*growJournal)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if used4, size4 := journalUsed(t, dir); size4 != used4 {
		t.Errorf("after Close: %d bytes of records in a file of %d, want no zeroed space", used4, size4)
	}
	_, ld := mustOpen(t, o, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, want)
}

// TestReserveIsBestEffort: when the zeros ahead of the records cannot be
// written (a quota, a disk that filled since fstatfs said otherwise), the
// append still succeeds, the file keeps no partial zeroed space, and the
// store stops trying until it compacts.
func TestReserveIsBestEffort(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	sys := &faultFS{}
	sys.set(func(f *faultFS) { f.zeroErr = syscall.EDQUOT })
	s, _ := mustOpen(t, o, sys)
	want := []mapping.Mapping{testMapping(0)}
	wait(t, s, s.Put(testMapping(0)))
	used, size := journalUsed(t, dir)
	if size != used {
		t.Errorf("after a failed reservation: a file of %d bytes for %d of records, want no zeroed space", size, used)
	}
	writes := sys.get().writes
	want = append(want, testMapping(1))
	wait(t, s, s.Put(testMapping(1)))
	if n := sys.get().writes - writes; n != 1 {
		t.Errorf("the next append took %d writes, want 1: no second try at reserving", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, o, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, want)
}

// A reservation that fails after some of its zeros are written leaves the
// file at a length the loader reads cleanly: its records and, past them,
// only whole steps of zeros. The journal here ends off a step (as after a
// compaction) and the batch needs more than one step, so the first write
// of zeros ends on a step and the second fails.
func TestReserveFailsPartway(t *testing.T) {
	dir := t.TempDir()
	sys := &faultFS{zeroErr: syscall.EDQUOT, zeroOK: 1}
	f, err := sys.OpenFile(filepath.Join(dir, journalName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := appendPut(nil, testMapping(0))
	data := appendHeader(nil)
	for len(data) < growJournal/2 {
		data = append(data, rec...)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	w := writer{f: f, size: int64(len(data)), alloc: int64(len(data))}
	w.reserve(growJournal + 1)
	if !w.noReserve || w.rewrite {
		t.Fatalf("after a failed reservation: noReserve %v, rewrite %v; want true, false", w.noReserve, w.rewrite)
	}
	used, size := journalUsed(t, dir)
	if used != int64(len(data)) || (size != used && size%growJournal != 0) || size != w.alloc {
		t.Errorf("journal of %d bytes with %d of records, alloc %d: want the records and whole steps of zeros past them", size, used, w.alloc)
	}
}
