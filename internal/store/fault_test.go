package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// TestWriteFailure injects a failure into one batch: its Wait reports the
// system error, later batches succeed once the failure stops, and the
// journal has no torn record.
func TestWriteFailure(t *testing.T) {
	tests := []struct {
		name   string
		inject func(f *faultFS)
		errno  syscall.Errno
	}{
		{"ENOSPC on write", func(f *faultFS) { f.writeErr = syscall.ENOSPC }, syscall.ENOSPC},
		{"ENOSPC after half a write", func(f *faultFS) { f.writeErr, f.partial = syscall.ENOSPC, true }, syscall.ENOSPC},
		{"ENOSPC on fsync", func(f *faultFS) { f.syncErr = syscall.ENOSPC }, syscall.ENOSPC},
		{"EIO on fsync", func(f *faultFS) { f.syncErr = syscall.EIO }, syscall.EIO},
		{"half a write, then truncate fails", func(f *faultFS) {
			f.writeErr, f.partial, f.truncErr = syscall.ENOSPC, true, syscall.EIO
		}, syscall.ENOSPC},
		{"EROFS", func(f *faultFS) { f.writeErr, f.syncErr, f.openErr = syscall.EROFS, syscall.EROFS, syscall.EROFS }, syscall.EROFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sys := &faultFS{}
			s, _ := mustOpen(t, Options{Dir: dir}, sys)
			a, b, c, d := testMapping(1), testMapping(2), testMapping(3), testMapping(4)
			wait(t, s, s.Put(a))

			sys.set(tt.inject)
			for _, m := range []mapping.Mapping{b, d} {
				err := s.Wait(context.Background(), s.Put(m))
				if !errors.Is(err, tt.errno) {
					t.Fatalf("Wait during the failure = %v, want %v", err, tt.errno)
				}
			}
			sys.set(func(f *faultFS) {
				f.writeErr, f.syncErr, f.truncErr, f.openErr, f.partial = nil, nil, nil, nil, false
			})

			// The caller undoes the mappings it could not make durable.
			s.Delete(b.Key)
			wait(t, s, s.Put(c))
			wait(t, s, s.Delete(d.Key))
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			_, ld := mustOpen(t, Options{Dir: dir}, nil)
			checkClean(t, ld)
			checkMappings(t, ld.Mappings, []mapping.Mapping{a, c})
		})
	}
}

// TestFailedChangeIsWrittenLater: a change whose Wait failed stays in the
// live set (the caller's intent) and reaches the disk with a later batch
// unless the caller undoes it.
func TestFailedChangeIsWrittenLater(t *testing.T) {
	for _, partial := range []bool{false, true} {
		dir := t.TempDir()
		sys := &faultFS{}
		s, _ := mustOpen(t, Options{Dir: dir}, sys)
		a, b, c := testMapping(1), testMapping(2), testMapping(3)
		wait(t, s, s.Put(a))
		sys.set(func(f *faultFS) { f.writeErr, f.partial = syscall.ENOSPC, partial })
		s.Delete(a.Key)
		if err := s.Wait(context.Background(), s.Put(b)); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("got %v, want ENOSPC", err)
		}
		sys.set(func(f *faultFS) { f.writeErr = nil })
		wait(t, s, s.Put(c))
		s.Close()
		_, ld := mustOpen(t, Options{Dir: dir}, nil)
		checkClean(t, ld)
		checkMappings(t, ld.Mappings, []mapping.Mapping{b, c})
	}
}

// TestPersistentFailure: a disk that stays full fails every batch, one
// failure range is kept for them all, Close reports the error, and the
// journal still holds what was durable before.
func TestPersistentFailure(t *testing.T) {
	dir := t.TempDir()
	sys := &faultFS{}
	s, _ := mustOpen(t, Options{Dir: dir}, sys)
	a := testMapping(1)
	wait(t, s, s.Put(a))
	sys.set(func(f *faultFS) { f.writeErr, f.partial = syscall.ENOSPC, true })
	for i := range 20 {
		if err := s.Wait(context.Background(), s.Put(testMapping(10+i))); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Wait %d = %v, want ENOSPC", i, err)
		}
	}
	s.mu.Lock()
	n := len(s.failures)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("%d failure ranges kept, want 1", n)
	}
	if err := s.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Close = %v, want ENOSPC", err)
	}
	_, ld := mustOpen(t, Options{Dir: dir}, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, []mapping.Mapping{a})
}

// TestCompactionFailure: a compaction that cannot write its snapshot
// leaves the journal alone and the batch is appended instead.
func TestCompactionFailure(t *testing.T) {
	dir := t.TempDir()
	sys := &faultFS{renameErr: syscall.EXDEV}
	s, _ := mustOpen(t, Options{Dir: dir, CompactMin: 8, CompactRatio: 2}, &faultFS{})
	s.Close()
	s, _ = mustOpen(t, Options{Dir: dir, CompactMin: 8, CompactRatio: 2}, sys)
	for i := range 30 {
		m := testMapping(1)
		m.Origin.Description = string(rune('a' + i%26))
		wait(t, s, s.Put(m))
	}
	if n := sys.get().renames; n == 0 {
		t.Fatal("no compaction was tried")
	}
	if _, err := os.Stat(filepath.Join(dir, tempName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left after a failed compaction: %v", err)
	}
	s.Close()
	m := testMapping(1)
	m.Origin.Description = string(rune('a' + 29%26))
	_, ld := mustOpen(t, Options{Dir: dir}, nil)
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, []mapping.Mapping{m})
}

// TestOpenErrors: Open fails only when the store cannot be used at all.
func TestOpenErrors(t *testing.T) {
	t.Run("read-only, new store", func(t *testing.T) {
		_, _, err := open(Options{Dir: t.TempDir()}, &faultFS{openErr: syscall.EROFS})
		if !errors.Is(err, syscall.EROFS) {
			t.Fatalf("got %v, want EROFS", err)
		}
	})
	t.Run("read-only, clean journal", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := mustOpen(t, Options{Dir: dir}, nil)
		s.Close()
		_, _, err := open(Options{Dir: dir}, &faultFS{openErr: syscall.EROFS})
		if !errors.Is(err, syscall.EROFS) {
			t.Fatalf("got %v, want EROFS", err)
		}
	})
	t.Run("unreadable journal", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := mustOpen(t, Options{Dir: dir}, nil)
		s.Close()
		_, _, err := open(Options{Dir: dir}, &faultFS{readErr: syscall.EACCES})
		if !errors.Is(err, syscall.EACCES) {
			t.Fatalf("got %v, want EACCES", err)
		}
	})
	t.Run("directory is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Open(Options{Dir: f}); err == nil {
			t.Fatal("Open in a file succeeded")
		}
	})
	t.Run("no directory", func(t *testing.T) {
		if _, _, err := Open(Options{}); err == nil {
			t.Fatal("Open without a directory succeeded")
		}
	})
}

// TestOutcomes: failed ranges merge when adjacent, and the oldest are
// forgotten past maxFailures, which Wait then reports as an error rather
// than as success.
func TestOutcomes(t *testing.T) {
	s := &Store{changed: make(chan struct{})}
	errA := errors.New("a")
	s.finish(3, errA)
	s.finish(5, errA) // merges
	s.finish(6, nil)
	if len(s.failures) != 1 || s.failures[0] != (failure{1, 5, errA}) {
		t.Fatalf("failures %v, want one range 1..5", s.failures)
	}
	next := Seq(7)
	for range maxFailures {
		s.finish(next, errA)
		s.finish(next+1, nil)
		next += 2
	}
	for _, tt := range []struct {
		seq  Seq
		want error
	}{{1, errForgotten}, {5, errForgotten}, {6, nil}, {7, errA}, {8, nil}, {next - 2, errA}, {next - 1, nil}} {
		if got := s.outcomeLocked(tt.seq); got != tt.want {
			t.Errorf("outcome of %d = %v, want %v", tt.seq, got, tt.want)
		}
	}
}
