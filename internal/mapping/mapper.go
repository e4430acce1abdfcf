package mapping

import (
	"context"
	"errors"
	"net/netip"
)

// Mapper is everything a responder may do. It is implemented by
// portmap.Service; all methods are safe for concurrent use.
type Mapper interface {
	// Map creates a mapping or renews the caller's existing one.
	//
	// A renewal keeps the external port. Which existing mapping a request
	// renews: with Exact, the mapping with the same Key; otherwise the
	// client's mapping of the same protocol and internal address:port
	// (preferring the one on the suggested port). The same client with a
	// different internal port on an Exact key replaces the old mapping;
	// another client's key fails with ErrConflict. The renewed or replaced
	// mapping's Peers carry over unless r.Peers says otherwise (see
	// Request.Peers). The returned Mapping is a copy the caller owns.
	Map(ctx context.Context, r Request) (Mapping, error)

	// Unmap deletes mappings r.Client owns, selected by:
	//   - r.Suggest port != 0: the mapping with Key {r.Proto, r.Suggest, r.Remote}
	//     (UPnP DeletePortMapping);
	//   - else r.Internal port != 0: the client's mappings of r.Proto on
	//     r.Internal with remote host r.Remote (NAT-PMP, PCP MAP; PCP PEER
	//     names its peer);
	//   - else: all the client's mappings of r.Proto made by the same
	//     origin kind (NAT-PMP "delete all").
	// It returns ErrNotFound when nothing matched and ErrNotAuthorized when
	// the selected mapping belongs to another client (secure mode) or is a
	// static forward. It is idempotent apart from that error.
	Unmap(ctx context.Context, r Request) error

	// List returns the mappings that pass f, sorted by Key.Compare. The
	// slice is the caller's; the order is stable while the table does not
	// change.
	List(f Filter) []Mapping

	// ExternalAddr is the current external (WAN) address; !IsValid() means
	// the WAN is down or unknown.
	ExternalAddr() netip.Addr
}

// Domain errors. Responders map them to wire codes with errors.Is, each
// protocol in one place.
var (
	// ErrNotAuthorized: policy refused the request (a deny rule, secure
	// mode, a reserved port, a static forward).
	ErrNotAuthorized = errors.New("not authorized")
	// ErrConflict: the external port is held by another client or a static
	// forward.
	ErrConflict = errors.New("external port in use")
	// ErrNoResources: no allowed external port is free.
	ErrNoResources = errors.New("no free external port")
	// ErrQuota: the client or the whole table has reached its mapping limit.
	ErrQuota = errors.New("mapping quota reached")
	// ErrUnsupported: berth cannot do what was asked (protocol, address family).
	ErrUnsupported = errors.New("unsupported request")
	// ErrNetworkFailure: the WAN address is unknown or the backend failed.
	ErrNetworkFailure = errors.New("network failure")
	// ErrTooManyPeers: the mapping would hold more than MaxPeers
	// remote-peer filters.
	ErrTooManyPeers = errors.New("too many remote peer filters")
	// ErrNotFound: Unmap matched no mapping.
	ErrNotFound = errors.New("no such mapping")
	// ErrInvalid: the request itself is malformed (zero internal address,
	// internal port 0 on Map).
	ErrInvalid = errors.New("invalid request")
)
