package tailscale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"tailscale.com/net/netmon"
	"tailscale.com/net/portmapper"
	"tailscale.com/net/portmapper/portmappertype"
	"tailscale.com/util/eventbus"
)

// The test binary re-executed in a namespace reads its role and its JSON
// arguments from the environment.
const (
	envRole    = "BERTH_TAILSCALE_ROLE"
	envArgs    = "BERTH_TAILSCALE_ARGS"
	roleClient = "client" // clientArgs; commands on stdin
	roleSend   = "send"   // sendArgs
)

// Commands to the client, one per line on its stdin.
const (
	opProbe = "probe" // Probe
	opMap   = "map"   // create a mapping and wait for it
	opRecv  = "recv"  // "recv PAYLOAD": wait for PAYLOAD on the mapped socket
	opKeep  = "keep"  // poll in the background, as magicsock does, so the client renews
	opStop  = "stop"  // stop polling at the next renewal; report what was seen
	opClose = "close" // Close, which releases the mapping
)

// Time limits inside the client, below the parent's answerWait.
const (
	probeWait = 3 * time.Second
	mapWait   = 6 * time.Second
	recvWait  = 3 * time.Second
	stopWait  = lifetime/2 + 4*time.Second // the next renewal is at most lifetime/2 away
	poll      = 100 * time.Millisecond
)

// answerWait bounds the parent's wait for any answer.
const answerWait = stopWait + 5*time.Second

type clientArgs struct {
	Gateway, Self netip.Addr
	Only          string // "pmp" or "pcp" switches the other protocol off; "" uses both
}

type sendArgs struct {
	To      netip.AddrPort
	Payload string
}

// answer is the client's reply to one command; Err is set on failure.
type answer struct {
	Err       string                      `json:",omitempty"`
	LocalPort uint16                      `json:",omitempty"` // first line: the port to be mapped
	Probe     *portmappertype.ProbeResult `json:",omitempty"`
	Mapping   *portmappertype.Mapping     `json:",omitempty"`
	Renewals  int                         `json:",omitempty"` // stop: mappings announced while polling
	Lost      bool                        `json:",omitempty"` // stop: the cached mapping vanished or moved meanwhile
}

// client is the parent's handle on a client process in the lan namespace.
type client struct {
	localPort uint16
	stdin     io.WriteCloser
	answers   chan answer
	exit      chan struct{}
}

// startClient starts a tailscale portmapper client in the lan namespace,
// with berthd's LAN address as gateway; it is closed when the test ends.
func startClient(t *testing.T, topo *topology, only string) *client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := helper(ctx, t, topo.lan, roleClient, clientArgs{Gateway: routerLAN, Self: clientLAN, Only: only})
	c := &client{answers: make(chan answer, 4), exit: make(chan struct{})}
	var stderr strings.Builder
	var mu sync.Mutex
	cmd.Stderr = &lineWriter{line: func(s string) {
		mu.Lock()
		defer mu.Unlock()
		stderr.WriteString(s + "\n")
	}}
	cmd.Stdout = &lineWriter{line: func(s string) {
		var a answer
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			a = answer{Err: fmt.Sprintf("unreadable answer %q: %v", s, err)}
		}
		select {
		case c.answers <- a:
		default: // one answer per command: only a test that gave up leaves them unread
		}
	}}
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting the client: %v", err)
	}
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(c.exit)
	}()
	t.Cleanup(func() {
		c.stdin.Close() // the client closes and exits at EOF
		select {
		case <-c.exit:
		case <-time.After(5 * time.Second):
			cancel() // kills it
			<-c.exit
		}
		cancel()
		if waitErr != nil {
			t.Errorf("client: %v", waitErr)
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("client (%s) log:\n%s", only, stderr.String())
			mu.Unlock()
		}
	})
	c.localPort = c.next(t, "start").LocalPort
	return c
}

// do sends a command and returns its answer, failing the test on an error.
func (c *client) do(t *testing.T, op, arg string) answer {
	t.Helper()
	if _, err := fmt.Fprintln(c.stdin, op, arg); err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return c.next(t, op)
}

func (c *client) next(t *testing.T, op string) answer {
	t.Helper()
	select {
	case a := <-c.answers:
		if a.Err != "" {
			t.Fatalf("%s: %s", op, a.Err)
		}
		return a
	case <-c.exit:
		t.Fatalf("%s: the client exited", op)
	case <-time.After(answerWait):
		t.Fatalf("%s: no answer within %v", op, answerWait)
	}
	return answer{} // not reached: Fatalf ends the goroutine
}

// helper returns the command re-executing this test binary in namespace
// ns with role and args.
func helper(ctx context.Context, t *testing.T, ns, role string, args any) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := inNetns(ctx, ns, self)
	cmd.Env = append(os.Environ(), envRole+"="+role, envArgs+"="+string(b))
	return cmd
}

// runClient is the client process: it serves commands from in until EOF,
// answering on out, and logs to logw.
func runClient(in io.Reader, out, logw io.Writer) int {
	var args clientArgs
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &args); err != nil {
		fmt.Fprintf(logw, "client: %s: %v\n", envArgs, err)
		return 2
	}
	// The socket whose port is mapped, as tailscale's magicsock would have.
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(args.Self, 0)))
	if err != nil {
		fmt.Fprintf(logw, "client: %v\n", err)
		return 1
	}
	defer conn.Close()
	received := make(chan string, 16)
	go func() {
		b := make([]byte, 1500)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			received <- string(b[:n])
		}
	}()

	bus := eventbus.New()
	defer bus.Close()
	mappings := eventbus.Subscribe[portmappertype.Mapping](bus.Client("berth-test"))
	c := portmapper.NewClient(portmapper.Config{
		EventBus: bus,
		Logf:     func(format string, a ...any) { fmt.Fprintf(logw, "portmapper: "+format+"\n", a...) },
		NetMon:   netmon.NewStatic(),
		DebugKnobs: &portmapper.DebugKnobs{
			VerboseLogs:     true,
			DisableUPnPFunc: func() bool { return true }, // berth has no IGD yet
			DisablePMPFunc:  func() bool { return args.Only == "pcp" },
			DisablePCPFunc:  func() bool { return args.Only == "pmp" },
		},
	})
	defer c.Close()
	c.SetGatewayLookupFunc(func() (gw, myIP netip.Addr, ok bool) { return args.Gateway, args.Self, true })
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	c.SetLocalPort(port)

	enc := json.NewEncoder(out)
	if err := enc.Encode(answer{LocalPort: port}); err != nil {
		fmt.Fprintf(logw, "client: %v\n", err)
		return 1
	}
	s := &clientState{c: c, mappings: mappings.Events(), received: received}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		op, arg, _ := strings.Cut(sc.Text(), " ")
		a, err := s.serve(op, arg)
		if err != nil {
			a = answer{Err: err.Error()}
		}
		if err := enc.Encode(a); err != nil {
			fmt.Fprintf(logw, "client: %v\n", err)
			return 1
		}
	}
	return 0
}

type clientState struct {
	c        *portmapper.Client
	mappings <-chan portmappertype.Mapping
	received <-chan string
	last     *portmappertype.Mapping // the latest mapping the client announced

	// While keeping: closing stop asks the poller to end at the next
	// renewal; it then sends its answer on kept.
	stop chan struct{}
	kept chan answer
}

func (s *clientState) serve(op, arg string) (answer, error) {
	switch op {
	case opProbe:
		ctx, cancel := context.WithTimeout(context.Background(), probeWait)
		defer cancel()
		res, err := s.c.Probe(ctx)
		if err != nil {
			return answer{}, fmt.Errorf("probe: %w", err)
		}
		return answer{Probe: &res}, nil
	case opMap:
		return s.waitMapping(mapWait)
	case opKeep:
		if s.last == nil || s.stop != nil {
			return answer{}, fmt.Errorf("keep: no mapping, or already keeping")
		}
		s.stop, s.kept = make(chan struct{}), make(chan answer, 1)
		go s.keep(*s.last, s.stop, s.kept)
		return answer{}, nil
	case opStop:
		if s.stop == nil {
			return answer{}, fmt.Errorf("stop: not keeping")
		}
		close(s.stop)
		s.stop = nil
		select {
		case a := <-s.kept:
			s.last = a.Mapping
			return a, nil
		case <-time.After(stopWait):
			return answer{}, fmt.Errorf("stop: no renewal within %v", stopWait)
		}
	case opRecv:
		// Other datagrams are copies of earlier payloads (runSend).
		deadline := time.After(recvWait)
		for {
			select {
			case m := <-s.received:
				if m == arg {
					return answer{}, nil
				}
			case <-deadline:
				return answer{}, fmt.Errorf("recv: %q did not arrive within %v", arg, recvWait)
			}
		}
	case opClose:
		return answer{}, s.c.Close()
	}
	return answer{}, fmt.Errorf("unknown command %q", op)
}

// keep asks the client for its mapping every poll, as magicsock does;
// past half the lifetime the client renews it in the background and
// meanwhile answers with the cached one. Asked to stop, it ends after the
// next renewal, so that no renewal is in flight when the test closes the
// client (one would re-create the mapping after the release).
func (s *clientState) keep(m portmappertype.Mapping, stop <-chan struct{}, kept chan<- answer) {
	a := answer{Mapping: &m}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case got := <-s.mappings:
			a.Renewals++
			if got.External != a.Mapping.External {
				a.Lost = true
			}
			a.Mapping = &got
			select {
			case <-stop:
				kept <- a
				return
			default:
			}
		case <-tick.C:
			if ext, ok := s.c.GetCachedMappingOrStartCreatingOne(); !ok || ext != a.Mapping.External {
				a.Lost = true
			}
		}
	}
}

// waitMapping asks the client for a mapping every poll until it
// announces one, for at most limit.
func (s *clientState) waitMapping(limit time.Duration) (answer, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		// The first call starts the creation in the background; the
		// client announces the result on its event bus.
		s.c.GetCachedMappingOrStartCreatingOne()
		select {
		case m := <-s.mappings:
			s.last = &m
			return answer{Mapping: &m}, nil
		case <-tick.C:
		case <-deadline.C:
			return answer{}, fmt.Errorf("no mapping announced within %v", limit)
		}
	}
}

// runSend is the wan-side helper: it sends the payload three times, 50 ms
// apart, so one lost datagram does not fail the test.
func runSend(logw io.Writer) int {
	var args sendArgs
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &args); err != nil {
		fmt.Fprintf(logw, "send: %s: %v\n", envArgs, err)
		return 2
	}
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(args.To))
	if err != nil {
		fmt.Fprintf(logw, "send: %v\n", err)
		return 1
	}
	defer conn.Close()
	for i := range 3 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := conn.Write([]byte(args.Payload)); err != nil {
			fmt.Fprintf(logw, "send: %v\n", err)
			return 1
		}
	}
	return 0
}
