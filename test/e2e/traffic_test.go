package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds of the traffic checks: one try, and how long a check retries
// before it gives up (a mapping takes effect, or goes away, at once; the
// retries only absorb scheduling).
const (
	tryTimeout = 3 * time.Second
	settle     = 5 * time.Second
)

// marker is served by the LAN's HTTP server: a reply that carries it came
// from that server and nothing else.
const marker = "berth-e2e-lan-http-server"

// lanHTTP is the port of the HTTP server in the LAN namespace.
const lanHTTP = 8080

// httpServe serves the directory argv[3] on argv[1]:argv[2] with
// http.server's handler. Not "python3 -m http.server": that resolves the
// bind address's name (socket.getfqdn) before it listens, and the DNS
// query would leave through the LAN's default route and time out.
const httpServe = `
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    def server_bind(self):
        self.socket.bind(self.server_address)
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
h = functools.partial(Handler, directory=sys.argv[3])
Server((sys.argv[1], int(sys.argv[2])), h).serve_forever()
`

// startHTTP serves marker at http://192.168.77.10:8080/marker in the LAN
// namespace until the test ends.
func startHTTP(t *testing.T, topo *topology) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := inNetns(ctx, topo.lan, python, "-c", httpServe, lanHost.String(), strconv.Itoa(lanHTTP), dir)
	var log strings.Builder
	cmd.Stdout = &lineWriter{line: func(s string) { log.WriteString(s + "\n") }}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting the LAN http server: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("LAN http server log:\n%s", log.String())
		}
	})
	waitTCP(t, topo.lan, netip.AddrPortFrom(lanHost, lanHTTP), true)
}

// tcpReaches reports whether curl in ns gets marker from to, and what
// curl printed.
func tcpReaches(t *testing.T, ns string, to netip.AddrPort) (bool, string) {
	t.Helper()
	out, err := run(t, tryTimeout+2*time.Second, ns, "curl", "-sS", "--noproxy", "*",
		"--connect-timeout", "2", "--max-time", strconv.Itoa(int(tryTimeout/time.Second)),
		fmt.Sprintf("http://%v/marker", to))
	return err == nil && out == marker, out
}

// waitTCP waits (bounded by settle) until a connection from ns to to
// reaches the LAN http server, or, with want false, until it does not.
func waitTCP(t *testing.T, ns string, to netip.AddrPort, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	for {
		ok, out := tcpReaches(t, ns, to)
		if ok == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("TCP from %s to %v: reachable = %v after %v, want %v; curl: %s", ns, to, ok, settle, want, out)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// udpRecv receives datagrams carrying argv[4] on argv[1]:argv[2] for at
// most argv[3] seconds and prints the first one's source.
const udpRecv = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    while True:
        d, a = s.recvfrom(2048)
        if d == sys.argv[4].encode():
            print("from %s:%d" % a, flush=True)
            break
except socket.timeout:
    sys.exit(3)
`

// udpSend sends argv[5] to argv[1]:argv[2] argv[4] times, 100 ms apart,
// from local port argv[3] (0: any).
const udpSend = `
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3])))
for i in range(int(sys.argv[4])):
    try:
        s.sendto(sys.argv[5].encode(), (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    time.sleep(0.1)
`

// udpProbe has a listener in recvNS on listen and a sender in sendNS send
// a few datagrams from local port from (0: any) to to. It reports whether
// one arrived within a second of the last, and from which source address.
func udpProbe(t *testing.T, recvNS string, listen netip.AddrPort, sendNS string, from uint16, to netip.AddrPort) (netip.AddrPort, bool) {
	t.Helper()
	payload := fmt.Sprintf("berth-e2e %v %d", to, from)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recv := inNetns(ctx, recvNS, python, "-c", udpRecv,
		listen.Addr().String(), strconv.Itoa(int(listen.Port())), "15", payload)
	stdout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	recv.Stderr = &stderr
	if err := recv.Start(); err != nil {
		t.Fatalf("starting the UDP listener in %s: %v", recvNS, err)
	}
	defer recv.Wait()
	defer cancel() // kills the listener if it is still waiting
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "ready" {
			t.Fatalf("UDP listener in %s on %v printed %q", recvNS, listen, l)
		}
	case <-ctx.Done():
		t.Fatalf("UDP listener in %s on %v did not start", recvNS, listen)
	}
	out, err := run(t, 10*time.Second, sendNS, python, "-c", udpSend,
		to.Addr().String(), strconv.Itoa(int(to.Port())), strconv.Itoa(int(from)), "5", payload)
	if err != nil {
		t.Fatalf("UDP sender in %s: %v\n%s", sendNS, err, out)
	}
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Second):
	}
	src, ok := strings.CutPrefix(line, "from ")
	if !ok {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		t.Fatalf("UDP listener printed %q: %v", line, err)
	}
	return ap, true
}

// waitUDP waits (bounded by settle) until a datagram from the WAN host to
// to reaches the LAN host on port lanPort, or, with want false, until it
// does not. The sender's port is fresh each time, so no conntrack entry of
// an earlier try carries the datagram.
func waitUDP(t *testing.T, topo *topology, to netip.AddrPort, lanPort uint16, want bool) {
	t.Helper()
	waitUDPTo(t, topo, to, netip.AddrPortFrom(lanHost, lanPort), want)
}

// waitUDPTo is waitUDP for a listener on dst in the LAN namespace.
func waitUDPTo(t *testing.T, topo *topology, to, dst netip.AddrPort, want bool) {
	t.Helper()
	waitUDPIn(t, topo, topo.lan, to, dst, want)
}

// waitUDPIn is waitUDPTo for a listener in namespace recvNS.
func waitUDPIn(t *testing.T, topo *topology, recvNS string, to, dst netip.AddrPort, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	for {
		if _, ok := udpProbe(t, recvNS, dst, topo.wan, 0, to); ok == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("UDP from wan to %v (lan %v): reachable = %v after %v, want %v", to, dst, !want, settle, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
