package natpmp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// Handler answers NAT-PMP requests with a mapping.Mapper. It holds no
// socket: pcp/listener.Server reads UDP port 5351 and hands it version-0 packets.
// It is safe for concurrent use.
type Handler struct {
	Mapper mapping.Mapper
	// Epoch returns the seconds since the start of the epoch, shared with
	// PCP (COMPAT N8).
	Epoch  func() uint32
	Logger *slog.Logger // nil discards
}

// Handle answers one request from the LAN host at from, received at now.
// It appends the reply to out and returns it, or returns nil when the
// packet must be dropped silently (RFC 6886 §3.2: a response is never
// answered).
func (h *Handler) Handle(ctx context.Context, req []byte, from netip.AddrPort, now time.Time, out []byte) []byte {
	act, code := Classify(req)
	switch act {
	case Drop:
		return nil
	case ReplyError:
		return ErrorResponse(req, code, h.Epoch()).AppendTo(out)
	}
	r, err := ParseRequest(req)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return ErrorResponse(req, pe.Code, h.Epoch()).AppendTo(out)
		}
		return nil
	}
	resp := h.serve(ctx, r, from.Addr().Unmap(), now)
	resp.Epoch = h.Epoch()
	return resp.AppendTo(out)
}

func (h *Handler) serve(ctx context.Context, r Request, client netip.Addr, now time.Time) Response {
	if r.Op == OpAddress {
		ext := h.Mapper.ExternalAddr()
		if !ext.IsValid() || !ext.Is4() {
			// RFC 6886 §3.2: no usable address is result 3 (COMPAT N9),
			// never success with 0.0.0.0.
			return Response{Op: OpAddress, Result: NetworkFailure, ExternalAddr: netip.IPv4Unspecified()}
		}
		return Response{Op: OpAddress, Result: Success, ExternalAddr: ext}
	}
	proto := mapping.UDP
	if r.Op == OpMapTCP {
		proto = mapping.TCP
	}
	resp := Response{Op: r.Op, InternalPort: r.InternalPort}
	req := mapping.Request{
		Client:   client,
		Proto:    proto,
		Internal: netip.AddrPortFrom(client, r.InternalPort),
		Origin:   mapping.Origin{Kind: mapping.KindNATPMP},
	}
	if r.Lifetime == 0 {
		// RFC 6886 §3.4: a delete. The suggested external port is ignored
		// (Transmission and tailscale send the old one; COMPAT N6), and
		// internal port 0 deletes all the client's mappings of the
		// protocol. Deleting nothing is still a success.
		err := h.Mapper.Unmap(ctx, req)
		if err != nil && !errors.Is(err, mapping.ErrNotFound) {
			resp.Result = resultCode(err)
			h.log().Info("natpmp delete refused", "client", client, "proto", proto, "internal", r.InternalPort, "err", err)
		}
		return resp
	}
	if r.InternalPort == 0 {
		// A map request for "all ports" is not something a host may ask.
		resp.Result = NotAuthorized
		return resp
	}
	req.Suggest = netip.AddrPortFrom(netip.Addr{}, r.SuggestedPort)
	req.Lifetime = time.Duration(r.Lifetime) * time.Second
	m, err := h.Mapper.Map(ctx, req)
	if err != nil {
		resp.Result = resultCode(err)
		h.log().Info("natpmp map refused", "client", client, "proto", proto, "internal", r.InternalPort, "err", err)
		return resp
	}
	resp.ExternalPort = m.External.Port()
	resp.Lifetime = m.LeaseSeconds(now)
	return resp
}

// resultCode maps the domain errors to RFC 6886 §3.5 result codes.
func resultCode(err error) ResultCode {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, mapping.ErrNotAuthorized), errors.Is(err, mapping.ErrInvalid):
		return NotAuthorized
	case errors.Is(err, mapping.ErrNetworkFailure):
		return NetworkFailure
	case errors.Is(err, mapping.ErrNoResources), errors.Is(err, mapping.ErrQuota), errors.Is(err, mapping.ErrConflict):
		return OutOfResources
	case errors.Is(err, mapping.ErrUnsupported):
		return UnsupportedOpcode
	}
	return NetworkFailure
}

var discard = slog.New(slog.DiscardHandler)

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return discard
	}
	return h.Logger
}
