// Package clock is the only place in berth that reads the wall clock. Code
// that needs time takes a Clock; tests pass clocktest.Fake.
package clock

import "time"

// Clock tells the time and runs functions later. Implementations are safe
// for concurrent use.
type Clock interface {
	// Now returns the current time. Real clocks include a monotonic
	// reading, so differences between two Now values are immune to wall
	// clock steps.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d. stop cancels the
	// call and reports whether it did so before f started.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// Real is the system clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Interface guard.
var _ Clock = Real{}
