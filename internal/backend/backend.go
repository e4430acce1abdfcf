// Package backend defines how berth programs a NAT: the Backend interface
// and the Change it applies. Implementations live in sub-packages: relay (a
// userspace TCP/UDP forwarder), fake (records batches for tests) and, later,
// nft (nftables over netlink).
package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/berthd/berth/internal/mapping"
)

// ErrPortUnavailable is returned (wrapped) by Apply when the forwarding
// plane cannot take the external port, for example because another program
// on the router already listens on it. The Service turns it into
// mapping.ErrConflict, or tries another port when the request allows that.
var ErrPortUnavailable = errors.New("backend: external port unavailable")

// Op is what a Change does.
type Op uint8

// Change operations.
const (
	Add Op = iota + 1
	Delete
)

// String returns "add" or "delete".
func (o Op) String() string {
	switch o {
	case Add:
		return "add"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Change is one step of a batch: add or delete one mapping. A Delete
// carries the mapping as it was added.
type Change struct {
	Op      Op
	Mapping mapping.Mapping
}

// Backend programs mappings into a forwarding plane. portmap.Service is
// its only caller and serialises calls, so implementations need not be
// safe for concurrent use of Apply and Sync, but Close may be called while
// traffic flows.
type Backend interface {
	// Apply applies a batch all-or-nothing: on error, the backend's state
	// is as it was before the call. A batch never deletes and adds the
	// same Key twice; it may delete a Key and then add it again (replace).
	// The slice is only read, and not retained.
	Apply(ctx context.Context, cs []Change) error
	// Sync makes the backend's own state exactly want: missing mappings are
	// added, extra ones removed, changed ones fixed. Used at start, after a
	// firewall reload and to recover from a failed expiry.
	Sync(ctx context.Context, want []mapping.Mapping) error
	// Close removes everything the backend installed and releases its
	// resources. It is idempotent.
	Close() error
}

// Releaser is a Backend that can stop without removing what it installed,
// so that the mappings go on forwarding while berthd restarts (the next
// run reconciles them with its stored leases). The relay cannot: its
// forwarding lives in the process.
type Releaser interface {
	Backend
	// Release frees the backend's resources and leaves its state in the
	// forwarding plane. Close after Release does nothing.
	Release() error
}
