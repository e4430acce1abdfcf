// Package lease is a presubmit fixture: time.Now outside internal/clock.
package lease

import (
	"time"
	tm "time"
)

var nowFunc = time.Now

func expired(at time.Time) bool { return tm.Now().After(at) }

func shadowed() {
	time := struct{ Now func() int }{}
	_ = time.Now
}

func since(at time.Time) time.Duration { return time.Since(at) }
