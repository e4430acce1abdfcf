// Command capture is the fake NAT-PMP gateway behind capture.sh. In serve
// mode it listens on -listen, prints the hex of every datagram it receives
// on stdout, one line each, and answers with the natpmp codec so that the
// client under test finishes at once instead of retrying for a minute. In
// annotate mode it turns one hex request read from stdin into a golden
// file (one comment per field) on stdout.
//
// It lives under testdata/ so that go build ./... and go vet ./... skip it.
package main

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/berthd/berth/natpmp"
)

func main() {
	listen := flag.String("listen", "10.200.0.1:5351", "UDP address to serve on")
	ext := flag.String("ext", "198.51.100.7", "external address to report (RFC 5737 documentation range)")
	annotate := flag.Bool("annotate", false, "annotate the hex request on stdin instead of serving")
	provenance := flag.String("provenance", "", "provenance line for -annotate")
	flag.Parse()
	var err error
	if *annotate {
		err = annotateRequest(*provenance)
	} else {
		err = serve(*listen, netip.MustParseAddr(*ext))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "capture:", err)
		os.Exit(1)
	}
}

func serve(listen string, ext netip.Addr) error {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "capture: listening on", c.LocalAddr())
	buf := make([]byte, 1500)
	var epoch uint32 = 1000 // fixed: the capture needs no clock
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		pkt := buf[:n]
		fmt.Println(hex.EncodeToString(pkt))
		epoch++
		var resp natpmp.Response
		switch act, code := natpmp.Classify(pkt); act {
		case natpmp.Drop:
			continue
		case natpmp.ReplyError:
			resp = natpmp.ErrorResponse(pkt, code, epoch)
		case natpmp.Reply:
			req, err := natpmp.ParseRequest(pkt)
			if err != nil {
				return err // Classify promised Reply
			}
			resp = answer(req, epoch, ext)
		}
		if _, err := c.WriteToUDPAddrPort(resp.AppendTo(nil), from); err != nil {
			return err
		}
	}
}

// answer grants every request: the suggested port (or the internal one),
// the requested lifetime capped at 7200 s, and RFC 6886 §3.4 deletes.
func answer(req natpmp.Request, epoch uint32, ext netip.Addr) natpmp.Response {
	if req.Op == natpmp.OpAddress {
		return natpmp.Announcement(epoch, ext)
	}
	r := natpmp.Response{Op: req.Op, Epoch: epoch, InternalPort: req.InternalPort}
	if req.Lifetime == 0 {
		return r
	}
	r.ExternalPort, r.Lifetime = req.SuggestedPort, min(req.Lifetime, 7200)
	if r.ExternalPort == 0 {
		r.ExternalPort = req.InternalPort
	}
	return r
}

// annotateRequest writes the golden-file form of one request: the
// provenance line, then each field's hex with its meaning and RFC section.
func annotateRequest(provenance string) error {
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return err
	}
	b, err := hex.DecodeString(strings.TrimSpace(line))
	if err != nil {
		return err
	}
	if len(b) != 2 && len(b) != 12 {
		return fmt.Errorf("request of %d bytes; natpmpc sends 2 or 12", len(b))
	}
	sec := "§3.2"
	if len(b) == 12 {
		sec = "§3.3"
	}
	fmt.Printf("# %s\n", provenance)
	fmt.Printf("%-12s# version %d (RFC 6886 %s)\n", hex.EncodeToString(b[0:1]), b[0], sec)
	fmt.Printf("%-12s# opcode %d, %s (RFC 6886 %s)\n", hex.EncodeToString(b[1:2]), b[1], natpmp.Opcode(b[1]), sec)
	if len(b) == 2 {
		return nil
	}
	u16 := func(i int) int { return int(b[i])<<8 | int(b[i+1]) }
	lifetime := uint32(b[8])<<24 | uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11])
	fmt.Printf("%-12s# reserved (RFC 6886 §3.3)\n", hex.EncodeToString(b[2:4]))
	fmt.Printf("%-12s# internal port %d (RFC 6886 §3.3)\n", hex.EncodeToString(b[4:6]), u16(4))
	fmt.Printf("%-12s# suggested external port %d (RFC 6886 §3.3)\n", hex.EncodeToString(b[6:8]), u16(6))
	fmt.Printf("%-12s# requested lifetime %d s (RFC 6886 §3.3; 0 = delete, §3.4)\n", hex.EncodeToString(b[8:12]), lifetime)
	return nil
}
