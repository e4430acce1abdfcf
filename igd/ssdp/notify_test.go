package ssdp

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// COMPAT S8 (UDA 1.1 §1.1.2): NOTIFYs to the multicast group leave with
// TTL 2 from every LAN socket.
func TestNotifyMulticastTTL(t *testing.T) {
	to := netip.AddrPortFrom(Group.Addr(), freePort(t, "0.0.0.0"))
	r := newRig(t, func(c *Config) { c.NotifyTo = to })
	k := r.srv.socks[0]
	if !k.mcastOK {
		t.Skip("cannot choose lo as multicast interface here")
	}
	ttl, err := k.pc.MulticastTTL()
	if err != nil {
		t.Fatal(err)
	}
	if ttl != 2 {
		t.Errorf("multicast TTL %d, want 2", ttl)
	}
	if loop, err := k.pc.MulticastLoopback(); err != nil || loop {
		t.Errorf("multicast loopback %v (%v), want off", loop, err)
	}
}

// COMPAT S3, S8: answers and NOTIFYs carry the configured BootID (and the
// UDA 1.0 01-NLS copy of it), so a restarted server with a new BootID is
// told apart.
func TestBootIDInAnswersAndNotifies(t *testing.T) {
	for _, id := range []uint32{7, 1234567} {
		r := newRig(t, func(c *Config) { c.BootID = id })
		want := strconv.FormatUint(uint64(id), 10)
		r.srv.Serve()

		c := newClient(t, "127.0.0.5", 0)
		c.send(r.uni, searchIGD1)
		b, _ := c.read(2 * time.Second)
		if b == nil {
			t.Fatalf("BootID %d: no answer", id)
		}
		res := parseAnswer(t, b)
		if got, nls := res.Header.Get("BOOTID.UPNP.ORG"), res.Header.Get("01-NLS"); got != want || nls != want {
			t.Errorf("BootID %d: answer has BOOTID %q 01-NLS %q", id, got, nls)
		}

		alive := r.notices.readAll()
		if len(alive) == 0 {
			t.Fatalf("BootID %d: no ssdp:alive", id)
		}
		r.srv.Close()
		byebye := r.notices.readAll()
		if len(byebye) == 0 {
			t.Fatalf("BootID %d: no ssdp:byebye", id)
		}
		for _, b := range append(alive, byebye...) {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("BootID %d: NOTIFY does not parse: %v", id, err)
			}
			if got, nls := req.Header.Get("BOOTID.UPNP.ORG"), req.Header.Get("01-NLS"); got != want || nls != want {
				t.Fatalf("BootID %d: %s NOTIFY has BOOTID %q 01-NLS %q", id, req.Header.Get("NTS"), got, nls)
			}
		}
	}
}
