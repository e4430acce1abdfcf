package eventing

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// run delivers NOTIFYs for s until nothing is pending. It is the only
// sender of s (s.inFlight was set, and p.wg incremented, by the caller), so
// at most one NOTIFY per subscription is in flight and the number of
// sender goroutines is bounded by the subscription caps. Values are read
// when each NOTIFY is built, so coalesced changes send the latest values.
func (p *Publisher) run(s *subscription, vars func() []Var) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if s.removed || p.closed {
			s.inFlight = false
			p.mu.Unlock()
			return
		}
		s.pending = false
		seq := s.seq
		s.seq = nextSeq(seq)
		p.mu.Unlock()

		var vs []Var
		if vars != nil {
			vs = vars()
		}
		if err := p.notify(p.ctx, s, seq, vs); err != nil {
			// UDA 1.1 §4.3: a failed delivery does not end the subscription;
			// the subscriber sees the SEQ gap and may resubscribe.
			p.log.Debug("notify failed", "sid", s.sid, "seq", seq, "err", err)
		}

		p.mu.Lock()
		if !s.pending || s.removed || p.closed {
			s.inFlight = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// notify sends one NOTIFY (UDA 1.1 §4.3.2) and reads the response.
func (p *Publisher) notify(ctx context.Context, s *subscription, seq uint32, vs []Var) error {
	req, err := http.NewRequestWithContext(ctx, "NOTIFY", s.callback, bytes.NewReader(propertySet(vs)))
	if err != nil {
		return fmt.Errorf("eventing: notify: %w", err)
	}
	// HOST comes from the URL; names are set directly to keep the spec's
	// upper case on the wire.
	req.Header["CONTENT-TYPE"] = []string{`text/xml; charset="utf-8"`}
	req.Header["NT"] = []string{"upnp:event"}
	req.Header["NTS"] = []string{"upnp:propchange"}
	req.Header["SID"] = []string{s.sid}
	req.Header["SEQ"] = []string{strconv.FormatUint(uint64(seq), 10)}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("eventing: notify: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("eventing: notify: status %d", resp.StatusCode)
	}
	return nil
}

// propertySet renders the NOTIFY body (UDA 1.1 §4.3.2) with every name and
// value XML-escaped.
func propertySet(vs []Var) []byte {
	var b bytes.Buffer
	b.WriteString(`<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0">`)
	for _, v := range vs {
		b.WriteString("<e:property><")
		xml.EscapeText(&b, []byte(v.Name))
		b.WriteString(">")
		xml.EscapeText(&b, []byte(v.Value))
		b.WriteString("</")
		xml.EscapeText(&b, []byte(v.Name))
		b.WriteString("></e:property>")
	}
	b.WriteString("</e:propertyset>")
	return b.Bytes()
}
