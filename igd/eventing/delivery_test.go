package eventing

import (
	"github.com/berthd/berth/internal/clock"
	"net"
	"net/http"
	"testing"
	"time"
)

// idle waits until no delivery to sid is in flight and returns the SEQ its
// next NOTIFY will carry. It fails after limit.
func (f *fixture) idle(t *testing.T, sid string, limit time.Duration) uint32 {
	t.Helper()
	deadline := clock.Real{}.Now().Add(limit)
	for {
		f.p.mu.Lock()
		s := f.p.table.subs[sid]
		busy, seq := s != nil && s.inFlight, uint32(0)
		if s != nil {
			seq = s.seq
		}
		f.p.mu.Unlock()
		if s == nil {
			t.Fatalf("subscription %s is gone", sid)
		}
		if !busy {
			return seq
		}
		if (clock.Real{}).Now().After(deadline) {
			t.Fatalf("delivery to %s still in flight after %v", sid, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A callback that accepts the TCP connection (the kernel does, into the
// backlog) but never answers: SendTimeout ends the delivery, and the
// failed delivery keeps the subscription (UDA 1.1 §4.3; COMPAT Security:
// timeouts on delivery).
func TestNotifyTimeoutKeepsSubscription(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // never Accepts
	f := newFixture(t, Config{SendTimeout: 200 * time.Millisecond, ConnectTimeout: 200 * time.Millisecond})
	sid := f.mustSubscribe(t, "<http://"+l.Addr().String()+"/cb>")
	// The initial event (SEQ 0) fails well within the bound.
	if seq := f.idle(t, sid, 3*time.Second); seq != 1 {
		t.Fatalf("after the initial event: next SEQ %d, want 1", seq)
	}
	if n := f.count(); n != 1 {
		t.Fatalf("%d subscriptions after a failed delivery, want 1", n)
	}
	// Later changes are still delivered (attempted) to it.
	f.p.Changed(path)
	if seq := f.idle(t, sid, 3*time.Second); seq != 2 {
		t.Fatalf("after a change: next SEQ %d, want 2", seq)
	}
	if got := f.do(t, "SUBSCRIBE", path, map[string]string{"SID": sid, "TIMEOUT": "Second-1800"}).StatusCode; got != http.StatusOK {
		t.Errorf("renewal after failed deliveries: got %d, want 200", got)
	}
}

// A callback port that refuses connections fails the delivery at once;
// the subscription stays and gets the next change once the subscriber
// listens again, with the SEQ after the failed one.
func TestNotifyRefusedKeepsSubscription(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connect refused from now on
	f := newFixture(t, Config{SendTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second})
	sid := f.mustSubscribe(t, "<http://"+addr+"/cb>")
	if seq := f.idle(t, sid, 3*time.Second); seq != 1 {
		t.Fatalf("after the refused initial event: next SEQ %d, want 1", seq)
	}
	if n := f.count(); n != 1 {
		t.Fatalf("%d subscriptions after a refused delivery, want 1", n)
	}
	l, err = net.Listen("tcp4", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	cb := newCallback(t, false)
	cb.srv.Listener.Close()
	go http.Serve(l, cb.srv.Config.Handler)
	t.Cleanup(func() { l.Close() })
	f.p.Changed(path)
	n := cb.next(t)
	if n.header.Get("SID") != sid || n.header.Get("SEQ") != "1" {
		t.Errorf("got SID %q SEQ %q, want %q and 1", n.header.Get("SID"), n.header.Get("SEQ"), sid)
	}
}
