package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/berthd/berth/internal/clock"
)

// clk is the wall clock; STYLE keeps time.Now in internal/clock.
var clk clock.Clock = clock.Real{}

// limits bound a phase: it issues at most ops operations and none after
// dur; an operation in flight when dur ends completes (bounded by its
// own timeouts and retries).
type limits struct {
	ops int
	dur time.Duration
}

// phaseResult is what one phase did. Only successful operations count
// towards the rate and the latencies.
type phaseResult struct {
	Issued, OK, Failed int
	Elapsed            time.Duration
	Lat                []time.Duration // of successful operations
	FirstErr           error
}

// rate is successful operations per second.
func (r phaseResult) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// runPhase runs do(worker, i) for i = 0, 1, ... on workers goroutines,
// each operation after the previous one of the same worker has finished,
// until l says stop or ctx ends. Indexes [0, Issued) were all attempted.
func runPhase(ctx context.Context, workers int, l limits, do func(ctx context.Context, w, i int) error) phaseResult {
	var next atomic.Int64
	var mu sync.Mutex
	res := phaseResult{}
	start := clk.Now()
	end := start
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var lat []time.Duration
			ok, failed := 0, 0
			var first error
			var last time.Time
			for ctx.Err() == nil && clk.Now().Sub(start) < l.dur {
				i := int(next.Add(1) - 1)
				if i >= l.ops {
					break
				}
				t0 := clk.Now()
				err := do(ctx, w, i)
				last = clk.Now()
				if err != nil {
					failed++
					if first == nil {
						first = err
					}
					continue
				}
				ok++
				lat = append(lat, last.Sub(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			res.OK += ok
			res.Failed += failed
			res.Lat = append(res.Lat, lat...)
			if res.FirstErr == nil {
				res.FirstErr = first
			}
			if last.After(end) {
				end = last
			}
		})
	}
	wg.Wait()
	res.Issued = min(int(next.Load()), l.ops)
	res.Elapsed = end.Sub(start)
	return res
}

// udpClient is one socket that sends a request and waits for its reply
// before the next. Sockets in the LAN namespace are bound to 0.0.0.0 and
// choose each request's source address with IP_PKTINFO, so one socket
// speaks for many LAN hosts.
type udpClient struct {
	c   *net.UDPConn
	pc  *ipv4.PacketConn
	buf []byte
}

// newUDPClients opens n sockets in namespace ns bound to bind (port 0).
func newUDPClients(ns string, bind netip.Addr, n int) ([]*udpClient, error) {
	var out []*udpClient
	err := inNS(ns, func() error {
		for range n {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
			if err != nil {
				return err
			}
			if err := c.SetReadBuffer(1 << 20); err != nil {
				c.Close()
				return err
			}
			out = append(out, &udpClient{c: c, pc: ipv4.NewPacketConn(c), buf: make([]byte, 2048)})
		}
		return nil
	})
	if err != nil {
		closeUDP(out)
		return nil, err
	}
	return out, nil
}

func closeUDP(cs []*udpClient) {
	for _, c := range cs {
		c.c.Close()
	}
}

// udpOp is one request: from src (invalid: the socket's address) to dst.
// match says whether a datagram is the reply to this request (others are
// stale replies to earlier attempts and are skipped) and whether it
// reports success.
type udpOp struct {
	src   netip.Addr
	dst   netip.AddrPort
	req   []byte
	match func(b []byte) (mine bool, err error)
}

// retry bounds one request: attempts sends, each waiting timeout.
type retry struct {
	attempts int
	timeout  time.Duration
}

var errTimeout = errors.New("no reply")

// roundTrip sends op and waits for its reply, resending up to r.attempts
// times.
func (u *udpClient) roundTrip(ctx context.Context, op udpOp, r retry) error {
	var cm *ipv4.ControlMessage
	if op.src.IsValid() {
		cm = &ipv4.ControlMessage{Src: op.src.AsSlice()}
	}
	dst := net.UDPAddrFromAddrPort(op.dst)
	for range r.attempts {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := u.pc.WriteTo(op.req, cm, dst); err != nil {
			return fmt.Errorf("send to %v: %w", op.dst, err)
		}
		if err := u.c.SetReadDeadline(clk.Now().Add(r.timeout)); err != nil {
			return err
		}
		for {
			n, from, err := u.c.ReadFromUDPAddrPort(u.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return err
			}
			if from.Addr().Unmap() != op.dst.Addr() || from.Port() != op.dst.Port() {
				continue
			}
			if mine, err := op.match(u.buf[:n]); mine {
				return err
			}
		}
	}
	return errTimeout
}

// udpPhase runs gen's requests on clients (one worker per client).
func udpPhase(ctx context.Context, clients []*udpClient, l limits, r retry, gen func(i int) udpOp) phaseResult {
	return runPhase(ctx, len(clients), l, func(ctx context.Context, w, i int) error {
		return clients[w].roundTrip(ctx, gen(i), r)
	})
}

// echoOp is a request to a UDP echo server: the reply is the request.
func echoOp(src netip.Addr, dst netip.AddrPort, size, i int) udpOp {
	req := make([]byte, size)
	for k := range req {
		req[k] = byte(i >> (8 * (k % 4)))
	}
	return udpOp{src: src, dst: dst, req: req, match: func(b []byte) (bool, error) {
		return string(b) == string(req), nil
	}}
}

// runEcho is the child process mode -echo ADDR: a UDP echo server with
// workers readers, until killed (or its parent dies: Pdeathsig).
func runEcho(addr string, workers int) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetReadBuffer(1 << 20); err != nil {
		return err
	}
	errc := make(chan error, workers)
	for range workers {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					errc <- err
					return
				}
				if _, err := c.WriteToUDPAddrPort(buf[:n], from); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	return <-errc
}

// listPhase runs lists[w] on worker w, in order, until dur or ctx ends:
// for operations that must come from the worker that made the mapping.
func listPhase(ctx context.Context, lists [][]int, dur time.Duration, do func(ctx context.Context, w, i int) error) phaseResult {
	var mu sync.Mutex
	res := phaseResult{}
	start := clk.Now()
	end := start
	var wg sync.WaitGroup
	for w, list := range lists {
		wg.Go(func() {
			var r phaseResult
			last := start
			for _, i := range list {
				if ctx.Err() != nil || clk.Now().Sub(start) >= dur {
					break
				}
				t0 := clk.Now()
				err := do(ctx, w, i)
				last = clk.Now()
				r.Issued++
				if err != nil {
					r.Failed++
					if r.FirstErr == nil {
						r.FirstErr = err
					}
					continue
				}
				r.OK++
				r.Lat = append(r.Lat, last.Sub(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			res.Issued += r.Issued
			res.OK += r.OK
			res.Failed += r.Failed
			res.Lat = append(res.Lat, r.Lat...)
			if res.FirstErr == nil {
				res.FirstErr = r.FirstErr
			}
			if last.After(end) {
				end = last
			}
		})
	}
	wg.Wait()
	res.Elapsed = end.Sub(start)
	return res
}
