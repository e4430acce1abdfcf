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
	lines, stop := startUDPListener(t, recvNS, udpRecv, listen, payload)
	defer stop()
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

// startUDPListener runs the listener script (udpRecv or udpEcho) in ns
// on listen for datagrams carrying payload, and returns once it is
// bound: its later output lines, and a function that stops it (call it
// before the test ends).
func startUDPListener(t *testing.T, ns, script string, listen netip.AddrPort, payload string) (<-chan string, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	recv := inNetns(ctx, ns, python, "-c", script,
		listen.Addr().String(), strconv.Itoa(int(listen.Port())), "15", payload)
	stdout, err := recv.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var stderr strings.Builder
	recv.Stderr = &stderr
	if err := recv.Start(); err != nil {
		cancel()
		t.Fatalf("starting the UDP listener in %s: %v", ns, err)
	}
	stop := func() {
		cancel() // kills the listener if it is still waiting
		recv.Wait()
	}
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
			stop()
			t.Fatalf("UDP listener in %s on %v printed %q; stderr:\n%s", ns, listen, l, stderr.String())
		}
	case <-ctx.Done():
		stop()
		t.Fatalf("UDP listener in %s on %v did not start", ns, listen)
	}
	return lines, stop
}

// udpEcho answers every datagram carrying argv[4] that reaches
// argv[1]:argv[2] with "answer " and the datagram, to its source, for at
// most argv[3] seconds, and prints the first one's source.
const udpEcho = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
first = True
try:
    while True:
        d, a = s.recvfrom(2048)
        if d == sys.argv[4].encode():
            s.sendto(b"answer " + d, a)
            if first:
                print("from %s:%d" % a, flush=True)
                first = False
except socket.timeout:
    sys.exit(3)
`

// udpAsk sends argv[3] to argv[1]:argv[2] from a fresh port up to argv[4]
// times, 300 ms apart, until the answer udpEcho gives comes back, from
// whatever source; it prints "answer from ADDR:PORT", or "no answer".
// The socket is not connected: it takes the answer from any source, so
// that one from the wrong address is seen rather than dropped.
const udpAsk = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(0.3)
q = sys.argv[3].encode()
for i in range(int(sys.argv[4])):
    try:
        s.sendto(q, (sys.argv[1], int(sys.argv[2])))
        while True:
            d, a = s.recvfrom(2048)
            if d == b"answer " + q:
                print("answer from %s:%d" % a)
                sys.exit(0)
    except socket.timeout:
        pass
    except OSError:
        pass
print("no answer")
`

// udpExchange is a two-way UDP exchange from the WAN host to to: an
// echo server on listen in the LAN namespace answers what it receives. It
// returns the source the server saw the question come from and the
// source the answer came back from, and whether there was an answer.
func udpExchange(t *testing.T, topo *topology, to, listen netip.AddrPort) (asker, answerer netip.AddrPort, ok bool) {
	t.Helper()
	payload := fmt.Sprintf("berth-e2e exchange %v %v", to, listen)
	lines, stop := startUDPListener(t, topo.lan, udpEcho, listen, payload)
	defer stop()
	out, err := run(t, 10*time.Second, topo.wan, python, "-c", udpAsk,
		to.Addr().String(), strconv.Itoa(int(to.Port())), payload, "5")
	if err != nil {
		t.Fatalf("UDP asker in %s: %v\n%s", topo.wan, err, out)
	}
	src, answered := strings.CutPrefix(strings.TrimSpace(out), "answer from ")
	if !answered {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	if answerer, err = netip.ParseAddrPort(src); err != nil {
		t.Fatalf("UDP asker printed %q: %v", out, err)
	}
	select {
	case l := <-lines:
		from, _ := strings.CutPrefix(l, "from ")
		if asker, err = netip.ParseAddrPort(from); err != nil {
			t.Fatalf("UDP echo server printed %q: %v", l, err)
		}
	case <-time.After(time.Second):
		t.Fatalf("the WAN host got an answer from %v, but the LAN echo server on %v printed nothing", answerer, listen)
	}
	return asker, answerer, true
}

// waitUDPExchange waits (bounded by settle) until a UDP exchange from the
// WAN host through to reaches an echo server on listen in the LAN
// namespace and its answer comes back; the question must arrive from the
// WAN host itself and the answer from to, the mapped external address and
// port.
func waitUDPExchange(t *testing.T, topo *topology, to, listen netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	for {
		asker, answerer, ok := udpExchange(t, topo, to, listen)
		if ok {
			if asker.Addr() != wanHost {
				t.Errorf("the LAN echo server on %v got the question from %v, want from the WAN host %v", listen, asker, wanHost)
			}
			if answerer != to {
				t.Fatalf("the answer of the LAN echo server on %v reached the WAN host from %v, want from %v", listen, answerer, to)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("UDP exchange from wan through %v with the LAN echo server on %v: no answer within %v", to, listen, settle)
		case <-time.After(100 * time.Millisecond):
		}
	}
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
