package store

import (
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// file is the part of *os.File the store uses, and fdatasync. It is the
// seam where tests inject write and fsync failures (ENOSPC, EIO).
type file interface {
	io.Writer
	io.WriterAt
	Sync() error
	// Datasync is fdatasync(2): the data and the metadata needed to read
	// it back (the file's size), not its times.
	Datasync() error
	Truncate(size int64) error
	Close() error
}

// fsys is the part of the os package the store uses; the tests replace it
// to fail chosen calls.
type fsys interface {
	MkdirAll(dir string, perm fs.FileMode) error
	// ReadFile returns an error satisfying errors.Is(err, fs.ErrNotExist)
	// when name does not exist.
	ReadFile(name string) ([]byte, error)
	OpenFile(name string, flag int, perm fs.FileMode) (file, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir makes the directory's entries (a rename) durable.
	SyncDir(dir string) error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) ReadFile(name string) ([]byte, error)        { return os.ReadFile(name) }
func (osFS) Rename(oldpath, newpath string) error        { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return osFile{f}, nil
}

// osFile is an *os.File with Datasync.
type osFile struct{ *os.File }

func (f osFile) Datasync() error {
	err := ignoringEINTR(func() error { return unix.Fdatasync(int(f.Fd())) })
	if err != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// freeSpace returns the bytes an unprivileged writer may still use on
// f's file system; ok is false when f has no descriptor or fstatfs fails.
func freeSpace(f file) (free int64, ok bool) {
	d, isFD := f.(interface{ Fd() uintptr })
	if !isFD {
		return 0, false
	}
	var st unix.Statfs_t
	if err := ignoringEINTR(func() error { return unix.Fstatfs(int(d.Fd()), &st) }); err != nil {
		return 0, false
	}
	unit := int64(st.Frsize) // the unit of the block counts; 0 before Linux 2.6
	if unit == 0 {
		unit = int64(st.Bsize)
	}
	return int64(st.Bavail) * unit, true
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Interface guards.
var (
	_ file = osFile{}
	_ fsys = osFS{}
)
