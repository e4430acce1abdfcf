package pcp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// Error lifetimes (RFC 6887 §7.4): how long a client should wait before
// retrying. Transient conditions get miniupnpd's 30 s (COMPAT C6);
// permanent refusals a long one.
const (
	transientErrorLifetime = 30
	permanentErrorLifetime = 30 * 60
)

// Handler answers PCP requests with a mapping.Mapper. It holds no socket:
// Server reads UDP port 5351 and hands it the packets. It is safe for
// concurrent use.
type Handler struct {
	Mapper mapping.Mapper
	// Epoch returns the seconds since the start of the epoch, shared with
	// NAT-PMP (COMPAT N8).
	Epoch func() uint32
	// AllowThirdParty lets a client map for another host with the
	// THIRD_PARTY option (RFC 6887 §13.1); off by default (COMPAT C3).
	AllowThirdParty bool
	Logger          *slog.Logger // nil discards
}

var discard = slog.New(slog.DiscardHandler)

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return discard
	}
	return h.Logger
}

// Handle answers one request from from, received at now. It appends the
// reply to out and returns it, or nil when the packet must be dropped.
func (h *Handler) Handle(ctx context.Context, req []byte, from netip.AddrPort, now time.Time, out []byte) []byte {
	epoch := h.Epoch()
	act, code := Classify(req)
	switch act {
	case Drop:
		return nil
	case ReplyError:
		return ErrorResponse(req, code, errorLifetime(code), epoch).AppendTo(out)
	}
	r, err := ParseRequest(req)
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			return nil
		}
		return ErrorResponse(req, pe.Code, errorLifetime(pe.Code), epoch).AppendTo(out)
	}
	client := from.Addr().Unmap()
	if r.Client.Unmap() != client {
		// RFC 6887 §8.1: the address the client believes it has differs
		// from the packet's source: a NAT sits between client and server.
		return ErrorResponse(req, AddressMismatch, permanentErrorLifetime, epoch).AppendTo(out)
	}
	var resp Response
	switch r.Op {
	case OpAnnounce:
		resp = Response{Op: OpAnnounce, Result: Success}
	case OpMap, OpPeer:
		resp = h.serveMap(ctx, r, client, now)
	default:
		resp = ErrorResponse(req, UnsuppOpcode, permanentErrorLifetime, epoch)
	}
	resp.Epoch = epoch
	return resp.AppendTo(out)
}

// serveMap handles MAP (RFC 6887 §11) and PEER (§12). A PEER request
// creates or refreshes the mapping its outbound flow uses, restricted to
// the remote peer. A MAP request's FILTER options (§13.3) become the
// mapping's remote-peer filters, which the backend enforces.
func (h *Handler) serveMap(ctx context.Context, r Request, client netip.Addr, now time.Time) Response {
	resp := Response{
		Op: r.Op, Nonce: r.Nonce, Protocol: r.Protocol, InternalPort: r.InternalPort,
		RemotePort: r.RemotePort, RemoteAddr: r.RemoteAddr,
	}
	// Until something is assigned, the reply carries the suggested external
	// port and address (RFC 6887 §8.3), the unspecified address in the
	// client's family when none was suggested: what ErrorResponse echoes.
	resp.ExternalPort, resp.ExternalAddr = r.SuggestedPort, r.SuggestedAddr
	if !resp.ExternalAddr.IsValid() {
		resp.ExternalAddr = netip.IPv6Unspecified()
		if client.Is4() {
			resp.ExternalAddr = netip.IPv4Unspecified()
		}
	}
	fail := func(code ResultCode, why string, err error) Response {
		resp.Result = code
		resp.Lifetime = errorLifetime(code)
		h.log().Info("pcp request refused", "op", r.Op, "client", client, "proto", r.Protocol,
			"internal", r.InternalPort, "result", code, "why", why, "err", err)
		return resp
	}
	var proto mapping.Protocol
	switch r.Protocol {
	case 6:
		proto = mapping.TCP
	case 17:
		proto = mapping.UDP
	case 0:
		// "All protocols" is a request no LAN host needs (COMPAT C7).
		return fail(NotAuthorized, "all protocols", nil)
	default:
		return fail(UnsuppProtocol, "protocol", nil)
	}
	peers, addPeers, ok := peersOf(r.Options.Filters)
	if !ok {
		return fail(MalformedOption, "FILTER prefix", nil)
	}
	internal := client
	if r.Options.ThirdParty.IsValid() {
		if !h.AllowThirdParty {
			return fail(NotAuthorized, "THIRD_PARTY not permitted", nil)
		}
		internal = r.Options.ThirdParty.Unmap()
		resp.Options.ThirdParty = r.Options.ThirdParty
	}
	req := mapping.Request{
		Client:   client,
		Proto:    proto,
		Internal: netip.AddrPortFrom(internal, r.InternalPort),
		Origin:   mapping.Origin{Kind: mapping.KindPCP, Nonce: r.Nonce},
	}
	if r.Op == OpPeer {
		req.Remote = r.RemoteAddr.Unmap()
	}
	if r.Lifetime == 0 {
		// RFC 6887 §15: delete. For PEER this returns the flow to the NAT's
		// normal behaviour, which for berth means removing the mapping
		// restricted to that peer. A delete of nothing succeeds; the nonce
		// is not checked (COMPAT C5: tailscale sends a new one every time).
		// FILTER options go with the mapping and are not echoed, as nothing
		// was installed.
		// The reply carries the suggested external port and address as
		// the request had them (§15.1, erratum 3621), not what was
		// removed (miniupnpd 2.3.1 puts its external address there:
		// test/captures/miniupnpd-2.3.1.txt, pcp-map-delete): so a
		// retransmitted delete, which finds nothing, gets the same answer
		// as the first copy (§8).
		err := h.Mapper.Unmap(ctx, req)
		if err != nil && !errors.Is(err, mapping.ErrNotFound) {
			return fail(resultCode(err), "delete", err)
		}
		resp.Result, resp.Lifetime = Success, 0
		return resp
	}
	if r.InternalPort == 0 {
		return fail(NotAuthorized, "all ports", nil)
	}
	ext := h.Mapper.ExternalAddr()
	if r.Options.PreferFailure {
		resp.Options.PreferFailure = true
		if a := r.SuggestedAddr.Unmap(); a.IsValid() && !a.IsUnspecified() && a != ext {
			// RFC 6887 §13.2 (COMPAT C4): only with PREFER_FAILURE is a
			// foreign suggested address a reason to fail.
			return fail(CannotProvideExternal, "suggested address", nil)
		}
		req.Exact = r.SuggestedPort != 0
	}
	req.Suggest = netip.AddrPortFrom(netip.Addr{}, r.SuggestedPort)
	req.Lifetime = time.Duration(r.Lifetime) * time.Second
	req.Peers, req.AddPeers = peers, addPeers
	m, err := h.Mapper.Map(ctx, req)
	if err != nil {
		code := resultCode(err)
		if req.Exact && (code == NotAuthorized || errors.Is(err, mapping.ErrConflict)) {
			code = CannotProvideExternal
		}
		return fail(code, "map", err)
	}
	resp.Result = Success
	resp.Lifetime = m.LeaseSeconds(now)
	resp.ExternalPort = m.External.Port()
	resp.ExternalAddr = m.External.Addr()
	// Every FILTER of the request was installed; a FILTER "may appear in
	// response only if it appeared in the associated request" (§13.3).
	resp.Options.Filters = r.Options.Filters
	return resp
}

// peersOf turns a MAP request's FILTER options (RFC 6887 §13.3) into the
// Peers and AddPeers of a mapping.Request. The options are processed in
// order: each adds a remote peer prefix and port (0 = any port) to the
// mapping's filters, and one with Prefix Length 0 ("no filter") removes
// the filters before it, those of the existing mapping included. So:
//   - no FILTER: nil (a renewal keeps its filters);
//   - no Prefix Length 0: the prefixes, added to the existing filters;
//   - otherwise: exactly the prefixes after the last Prefix Length 0
//     (none: the filters are cleared).
//
// ok is false for a filter ParseRequest would have rejected.
func peersOf(fs []Filter) (peers *mapping.Peers, add, ok bool) {
	if len(fs) == 0 {
		return nil, false, true
	}
	add = true
	ps := make([]mapping.Peer, 0, len(fs))
	for _, f := range fs {
		if f.PrefixLen == 0 {
			ps, add = ps[:0], false
			continue
		}
		p, valid := f.Prefix()
		if !valid {
			return nil, false, false
		}
		ps = append(ps, mapping.Peer{Prefix: p, Port: f.RemotePort})
	}
	return mapping.NewPeers(ps...), add, true
}

func errorLifetime(c ResultCode) uint32 {
	if c.Transient() {
		return transientErrorLifetime
	}
	return permanentErrorLifetime
}

// resultCode maps the domain errors to RFC 6887 §7.4 result codes.
func resultCode(err error) ResultCode {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, mapping.ErrNotAuthorized), errors.Is(err, mapping.ErrInvalid):
		return NotAuthorized
	case errors.Is(err, mapping.ErrQuota):
		return UserExQuota
	case errors.Is(err, mapping.ErrNoResources), errors.Is(err, mapping.ErrConflict):
		return NoResources
	case errors.Is(err, mapping.ErrUnsupported):
		return UnsuppProtocol
	case errors.Is(err, mapping.ErrTooManyPeers):
		return ExcessiveRemotePeers
	}
	return NetworkFailure
}
