package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock/clocktest"
	"github.com/berthd/berth/internal/mapping"
)

// lazyStore opens a store on a faultFS with a fake clock, as on a machine
// whose boot ID is boot.
func lazyStore(t *testing.T, dir, boot string) (*Store, Loaded, *faultFS, *clocktest.Fake) {
	t.Helper()
	sys, clk := &faultFS{}, clocktest.NewFake(base)
	s, ld := mustOpen(t, Options{Dir: dir, BootID: boot, Clock: clk}, sys)
	return s, ld, sys, clk
}

func waitWritten(t *testing.T, s *Store, seq Seq) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitWritten(ctx, seq); err != nil {
		t.Fatalf("WaitWritten(%d): %v", seq, err)
	}
}

// eventually polls cond every millisecond, 10,000 times at most.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 10000 {
			t.Fatalf("after 10,000 polls: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLazySyncsLater: a lazy change is answered once written, and synced
// syncDelay later, by the writer alone.
func TestLazySyncsLater(t *testing.T) {
	s, _, sys, clk := lazyStore(t, t.TempDir(), "boot-1")
	before := sys.get().syncs
	seq := s.PutLazy(testMapping(1))
	waitWritten(t, s, seq)
	eventually(t, "no delayed sync armed", func() bool { return clk.Pending() == 1 })
	clk.Advance(syncDelay - time.Nanosecond)
	if n := sys.get().syncs; n != before {
		t.Fatalf("%d syncs before syncDelay passed, want none", n-before)
	}
	clk.Advance(time.Nanosecond)
	eventually(t, "the delayed sync did not run", func() bool { return sys.get().syncs == before+1 })
	wait(t, s, seq)
	if n := sys.get().syncs; n != before+1 {
		t.Fatalf("%d syncs, want 1", n-before)
	}
}

// TestStrictChangesSyncLazyOnesAtOnce: a Put, or a Wait for a lazy change,
// syncs at once, with the lazy changes written before: the fake clock
// never moves, so the delayed sync never runs.
func TestStrictChangesSyncLazyOnesAtOnce(t *testing.T) {
	s, _, _, _ := lazyStore(t, t.TempDir(), "boot-1")
	a := s.PutLazy(testMapping(1))
	waitWritten(t, s, a)
	wait(t, s, s.Put(testMapping(2)))
	if err := s.Wait(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	b := s.DeleteLazy(testMapping(1).Key)
	waitWritten(t, s, b)
	wait(t, s, b)
}

// TestStrictStore: with Options.Strict, and without a boot ID, lazy changes
// are synced before WaitWritten returns, and no marker is written.
func TestStrictStore(t *testing.T) {
	for _, strict := range []bool{true, false} {
		o := Options{Dir: t.TempDir(), Clock: clocktest.NewFake(base), Strict: strict, BootID: "boot-1"}
		if !strict {
			o.BootID = ""
			defer func(f string) { bootIDFile = f }(bootIDFile)
			bootIDFile = filepath.Join(o.Dir, "no-proc")
		}
		sys := &faultFS{}
		s, _ := mustOpen(t, o, sys)
		before := sys.get().syncs
		seq := s.PutLazy(testMapping(1))
		waitWritten(t, s, seq)
		if n := sys.get().syncs; n != before+1 {
			t.Errorf("strict %v: %d syncs when WaitWritten returned, want 1", strict, n-before)
		}
		if _, err := os.Stat(filepath.Join(o.Dir, openName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("strict %v: marker: %v, want none", strict, err)
		}
	}
}

// crashCopy copies dir's files, as they are in the page cache, to a new
// directory: the disk after a crash of berthd (the same boot) or, for
// the store's tests, after a power cut that lost nothing.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	for _, name := range []string{journalName, openName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestUncleanStop: a store left open is found so by the next Open. In the
// same boot (berthd crashed) nothing is lost and the epoch carries on;
// after a reboot the lazy changes of the last moments may be lost, so Open
// reports Lost and no epoch, and a clean stop after that leaves the store
// clean again.
func TestUncleanStop(t *testing.T) {
	a, b := testMapping(1), testMapping(2)
	epoch := base.Add(-time.Hour)
	s, _, _, _ := lazyStore(t, t.TempDir(), "boot-1")
	wait(t, s, s.SetEpochBase(epoch))
	wait(t, s, s.Put(a))
	waitWritten(t, s, s.PutLazy(b))
	crashed := crashCopy(t, s.dir)

	for _, tt := range []struct {
		boot string
		lost bool
	}{{"boot-1", false}, {"boot-2", true}} {
		dir := crashCopy(t, crashed)
		s2, ld, _, _ := lazyStore(t, dir, tt.boot)
		if ld.Lost != tt.lost || ld.Unclean != tt.lost || len(ld.Damage) > 0 {
			t.Errorf("%s: lost %v, unclean %v, damage %q; want lost and unclean %v", tt.boot, ld.Lost, ld.Unclean, ld.Damage, tt.lost)
		}
		if want := map[bool]time.Time{false: epoch}[tt.lost]; !ld.EpochBase.Equal(want) {
			t.Errorf("%s: epoch base %v, want %v", tt.boot, ld.EpochBase, want)
		}
		checkMappings(t, ld.Mappings, []mapping.Mapping{a, b})
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, openName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: marker after Close: %v, want none", tt.boot, err)
		}
		_, ld, _, _ = lazyStore(t, dir, "boot-3")
		checkClean(t, ld)
		checkMappings(t, ld.Mappings, []mapping.Mapping{a, b})
	}
}

// TestLazyChangeSurvivesFailedSync: a lazy change answered before its
// sync failed is still in the live set, and the compaction that follows
// the failure writes it. Until then a crash, even in the same boot, makes
// the next Open doubt the store: the failed sync may have dropped it from
// the page cache.
func TestLazyChangeSurvivesFailedSync(t *testing.T) {
	dir := t.TempDir()
	s, _, sys, clk := lazyStore(t, dir, "boot-1")
	a, b := testMapping(1), testMapping(2)
	seq := s.PutLazy(a)
	waitWritten(t, s, seq)
	delayedSyncFails(t, s, sys, clk, seq, func(f *faultFS, err error) { f.syncErr = err })
	if _, ld, _, _ := lazyStore(t, crashCopy(t, dir), "boot-1"); !ld.Unclean || !ld.Lost {
		t.Errorf("crash after a failed sync: unclean %v, lost %v; want both", ld.Unclean, ld.Lost)
	}
	// The marker's own sync failed too: it cannot speak for lazy changes.
	if lazyAllowed(s) {
		t.Error("lazy changes still allowed after the marker could not be marked in doubt")
	}
	renames := sys.get().renames
	wait(t, s, s.PutLazy(b))
	if sys.get().renames != renames+1 {
		t.Fatal("no compaction after the failed sync")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, Options{Dir: dir, BootID: "boot-2"}, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, []mapping.Mapping{a, b})
}

// TestWriteFailureAfterLazyChanges: a batch whose write fails does not
// take the lazy changes written before it down with it.
func TestWriteFailureAfterLazyChanges(t *testing.T) {
	s, _, sys, _ := lazyStore(t, t.TempDir(), "boot-1")
	a := s.PutLazy(testMapping(1))
	waitWritten(t, s, a)
	sys.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	if err := s.WaitWritten(context.Background(), s.PutLazy(testMapping(2))); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WaitWritten on a full disk = %v, want ENOSPC", err)
	}
	wait(t, s, a)
}

func lazyAllowed(s *Store) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lazy
}

func markerSays(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, openName))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestFailedJournalSyncMarksDoubt: when the journal's fdatasync fails but
// the marker can still be made durable, the marker says so (overwritten;
// or emptied, when the overwrite fails too, as on a full copy-on-write
// file system) and lazy changes go on; a crash in the same boot then
// doubts the store, until the compaction that follows writes everything
// to a fresh file and the marker gets the boot ID back.
func TestFailedJournalSyncMarksDoubt(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fault  func(f *faultFS, err error)
		marker string
	}{
		{"journal sync fails", func(f *faultFS, err error) { f.datasyncErr = err }, inDoubt},
		{"the marker's overwrite fails too", func(f *faultFS, err error) { f.datasyncErr, f.writeErr = err, err }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _, sys, clk := lazyStore(t, dir, "boot-1")
			a, b := testMapping(1), testMapping(2)
			seq := s.PutLazy(a)
			waitWritten(t, s, seq)
			if got := markerSays(t, dir); got != "boot-1" {
				t.Fatalf("marker says %q while lazy changes are unsynced, want the boot ID", got)
			}
			delayedSyncFails(t, s, sys, clk, seq, tt.fault)
			if got := markerSays(t, dir); got != tt.marker {
				t.Errorf("marker says %q after the failed sync, want %q", got, tt.marker)
			}
			if !lazyAllowed(s) {
				t.Error("lazy changes stopped although the marker speaks for the doubt")
			}
			if _, ld, _, _ := lazyStore(t, crashCopy(t, dir), "boot-1"); !ld.Unclean || !ld.Lost {
				t.Errorf("crash in the same boot after a failed sync: unclean %v, lost %v; want both", ld.Unclean, ld.Lost)
			}
			renames := sys.get().renames
			wait(t, s, s.PutLazy(b))
			if sys.get().renames != renames+1 {
				t.Fatal("no compaction after the failed sync")
			}
			// The compaction wrote everything to a fresh file: nothing is
			// in doubt any more.
			if got := markerSays(t, dir); got != "boot-1" {
				t.Errorf("marker says %q after the compaction, want the boot ID", got)
			}
			_, ld, _, _ := lazyStore(t, crashCopy(t, dir), "boot-1")
			if ld.Unclean || ld.Lost {
				t.Errorf("crash in the same boot after the compaction: unclean %v, lost %v; want neither", ld.Unclean, ld.Lost)
			}
			checkMappings(t, ld.Mappings, []mapping.Mapping{a, b})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, ld = mustOpen(t, Options{Dir: dir, BootID: "boot-1"}, nil)
			checkClean(t, ld)
			checkMappings(t, ld.Mappings, []mapping.Mapping{a, b})
		})
	}
}

// delayedSyncFails makes the delayed sync of the lazy change seq fail with
// EIO, set by fail, checks that Wait reports it, and clears the fault.
func delayedSyncFails(t *testing.T, s *Store, sys *faultFS, clk *clocktest.Fake, seq Seq, fail func(*faultFS, error)) {
	t.Helper()
	sys.set(func(f *faultFS) { fail(f, syscall.EIO) })
	eventually(t, "no delayed sync armed", func() bool { return clk.Pending() == 1 })
	clk.Advance(syncDelay)
	if err := s.Wait(context.Background(), seq); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Wait after the failed sync = %v, want EIO", err)
	}
	sys.set(func(f *faultFS) { fail(f, nil) })
}
