// Package clock is a presubmit fixture: the one place time.Now may be used.
package clock

import "time"

// Now returns time.Now().
func Now() time.Time { return time.Now() }
