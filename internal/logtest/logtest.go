// Package logtest is a log destination for tests: the code under test
// writes to a Buffer from its goroutines while the test reads it.
package logtest

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is safe for concurrent use; the zero value is empty.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// read is how much of b Lines has returned.
	read int
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines returns the lines written since the last call, without their
// newlines.
func (l *Buffer) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String()[l.read:])
	l.read = l.b.Len()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
