package netif

import (
	"net"
	"strings"
	"testing"
)

// ReadCounters gives the kernel's counters of a real interface: loopback's
// grow by at least the datagrams this test sends over it (other traffic
// on lo only adds).
func TestReadCountersLoopback(t *testing.T) {
	before, err := ReadCounters("lo")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n, size = 10, 1000
	buf := make([]byte, size)
	for range n {
		if _, err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil { // delivered, so counted
			t.Fatal(err)
		}
	}
	after, err := ReadCounters("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		before, after uint64
		least         uint64
	}{
		{"bytes sent", before.BytesSent, after.BytesSent, n * size},
		{"bytes received", before.BytesReceived, after.BytesReceived, n * size},
		{"packets sent", before.PacketsSent, after.PacketsSent, n},
		{"packets received", before.PacketsReceived, after.PacketsReceived, n},
	} {
		if c.after < c.before || c.after-c.before < c.least {
			t.Errorf("%s went from %d to %d over %d datagrams of %d bytes", c.name, c.before, c.after, n, size)
		}
	}
}

func TestReadCountersNoSuchInterface(t *testing.T) {
	_, err := ReadCounters("berth-none0")
	if err == nil || !strings.Contains(err.Error(), `"berth-none0"`) {
		t.Fatalf("got %v, want an error naming the interface", err)
	}
}
