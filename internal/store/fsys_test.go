package store

import (
	"io/fs"
	"os"
	"slices"
	"sync"
)

// faultFS is the real file system with failures and hooks the tests set
// while the store runs, and counters they read. Its methods are safe for
// concurrent use.
type faultFS struct {
	osFS
	mu sync.Mutex
	// Errors returned instead of doing the call; nil does it.
	writeErr error // Write and WriteAt
	// zeroErr fails WriteAt of zeros only (writer.reserve), after
	// writing half of them, as a quota or a disk filling meanwhile does.
	zeroErr error
	// zeroOK is how many writes of zeros succeed before zeroErr applies.
	zeroOK  int
	syncErr error // file Sync and Datasync
	// datasyncErr fails Datasync only: the journal's syncs, not the
	// marker's.
	datasyncErr error
	truncErr    error
	renameErr   error
	openErr     error // OpenFile with a write flag (a read-only file system)
	readErr     error
	// partial makes a failing write write half its bytes first, as a
	// write that runs out of space does.
	partial bool
	// Hooks run before the call when set; they may block.
	onSync   func()
	onRename func()
	// Counters.
	syncs, renames, writes int
}

func (f *faultFS) set(fn func(f *faultFS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultFS) get() faultFS {
	f.mu.Lock()
	defer f.mu.Unlock()
	return faultFS{writeErr: f.writeErr, zeroErr: f.zeroErr, zeroOK: f.zeroOK, syncErr: f.syncErr, datasyncErr: f.datasyncErr, truncErr: f.truncErr, renameErr: f.renameErr,
		openErr: f.openErr, readErr: f.readErr, partial: f.partial, onSync: f.onSync, onRename: f.onRename,
		syncs: f.syncs, renames: f.renames, writes: f.writes}
}

func (f *faultFS) ReadFile(name string) ([]byte, error) {
	if err := f.get().readErr; err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return os.ReadFile(name)
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	if err := f.get().openErr; err != nil && flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	of, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: of, fs: f}, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	c := f.get()
	if c.onRename != nil {
		c.onRename()
	}
	f.set(func(f *faultFS) { f.renames++ })
	if c.renameErr != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: c.renameErr}
	}
	return os.Rename(oldpath, newpath)
}

type faultFile struct {
	*os.File
	fs *faultFS
}

func (f *faultFile) fail(p []byte, off int64, at bool) (int, error) {
	c := f.fs.get()
	f.fs.set(func(f *faultFS) { f.writes++ })
	if c.zeroErr != nil && at && len(p) > 0 && !slices.ContainsFunc(p, func(b byte) bool { return b != 0 }) {
		if c.zeroOK > 0 {
			f.fs.set(func(f *faultFS) { f.zeroOK-- })
			return f.File.WriteAt(p, off)
		}
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: c.zeroErr}
	}
	if c.writeErr == nil {
		if at {
			return f.File.WriteAt(p, off)
		}
		return f.File.Write(p)
	}
	n := 0
	if c.partial {
		if at {
			n, _ = f.File.WriteAt(p[:len(p)/2], off)
		} else {
			n, _ = f.File.Write(p[:len(p)/2])
		}
	}
	return n, &fs.PathError{Op: "write", Path: f.Name(), Err: c.writeErr}
}

func (f *faultFile) Write(p []byte) (int, error)              { return f.fail(p, 0, false) }
func (f *faultFile) WriteAt(p []byte, off int64) (int, error) { return f.fail(p, off, true) }

func (f *faultFile) Sync() error { return f.sync("sync", f.File.Sync) }

// Datasync fails and counts as Sync does, and also on datasyncErr alone.
func (f *faultFile) Datasync() error {
	if err := f.fs.get().datasyncErr; err != nil {
		f.fs.set(func(f *faultFS) { f.syncs++ })
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return f.sync("fdatasync", osFile{f.File}.Datasync)
}

// sync runs the onSync hook, counts the call and fails it with syncErr,
// or does it.
func (f *faultFile) sync(op string, do func() error) error {
	c := f.fs.get()
	if c.onSync != nil {
		c.onSync()
	}
	f.fs.set(func(f *faultFS) { f.syncs++ })
	if c.syncErr != nil {
		return &fs.PathError{Op: op, Path: f.Name(), Err: c.syncErr}
	}
	return do()
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.fs.get().truncErr; err != nil {
		return &fs.PathError{Op: "truncate", Path: f.Name(), Err: err}
	}
	return f.File.Truncate(size)
}
