package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the file whose flock(2) marks the directory as in use: two
// berthd processes appending to one journal would interleave records and
// each believe its own view of the leases.
const lockName = "lock"

// lockDir takes the directory's lock, or fails at once when another
// process holds it. The lock ends when the returned file is closed, or
// when the process dies (a crash leaves no stale lock behind).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("store: %s is in use by another process (another berthd?)", dir)
		}
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	return f, nil
}
