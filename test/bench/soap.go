package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// igdControl is the WANIPConnection service found from SSDP and the root
// description.
type igdControl struct {
	location   string
	controlURL string
	service    string // its serviceType, for SOAPAction
}

// discoverIGD sends an SSDP M-SEARCH from the LAN host (multicast, then
// unicast to the router) and follows LOCATION to the WANIPConnection
// control URL.
func discoverIGD(ctx context.Context, ns string) (igdControl, error) {
	var loc string
	err := inNS(ns, func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lanHost, 0)))
		if err != nil {
			return err
		}
		defer c.Close()
		const st = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
		msg := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: " + st + "\r\n\r\n"
		for attempt := range 6 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			dst := netip.MustParseAddrPort("239.255.255.250:1900")
			if attempt%2 == 1 {
				dst = netip.AddrPortFrom(routerLAN, 1900)
			}
			if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
				return err
			}
			c.SetReadDeadline(clk.Now().Add(1500 * time.Millisecond))
			buf := make([]byte, 4096)
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
				if err != nil {
					continue
				}
				resp.Body.Close()
				if l := resp.Header.Get("Location"); l != "" {
					loc = l
					return nil
				}
			}
		}
		return errors.New("no SSDP answer with a LOCATION")
	})
	if err != nil {
		return igdControl{}, fmt.Errorf("ssdp: %w", err)
	}
	cl := newSOAPClient(ns, lanHost)
	defer cl.close()
	req, err := http.NewRequestWithContext(ctx, "GET", loc, nil)
	if err != nil {
		return igdControl{}, err
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return igdControl{}, fmt.Errorf("get %s: %w", loc, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return igdControl{}, fmt.Errorf("get %s: %w", loc, err)
	}
	return controlFromRoot(loc, body)
}

// controlFromRoot finds the WANIPConnection service in a root
// description fetched from loc.
func controlFromRoot(loc string, body []byte) (igdControl, error) {
	var root struct {
		URLBase  string `xml:"URLBase"`
		Services []struct {
			Type       string `xml:"serviceType"`
			ControlURL string `xml:"controlURL"`
		} `xml:"device>deviceList>device>deviceList>device>serviceList>service"`
	}
	if err := xml.Unmarshal(body, &root); err != nil {
		return igdControl{}, fmt.Errorf("root description: %w", err)
	}
	base, err := url.Parse(loc)
	if err != nil {
		return igdControl{}, err
	}
	if root.URLBase != "" {
		if b, err := url.Parse(strings.TrimSpace(root.URLBase)); err == nil {
			base = b
		}
	}
	for _, s := range root.Services {
		if strings.Contains(s.Type, ":WANIPConnection:") {
			u, err := base.Parse(strings.TrimSpace(s.ControlURL))
			if err != nil {
				return igdControl{}, err
			}
			return igdControl{location: loc, controlURL: u.String(), service: strings.TrimSpace(s.Type)}, nil
		}
	}
	return igdControl{}, errors.New("root description has no WANIPConnection service")
}

// soapClient is one keep-alive HTTP connection from a LAN address.
type soapClient struct {
	hc   *http.Client
	tr   *http.Transport
	from netip.Addr
}

// newSOAPClient dials from address from in namespace ns.
func newSOAPClient(ns string, from netip.Addr) *soapClient {
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNS(ns, func() error {
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
		DisableCompression: true, IdleConnTimeout: 20 * time.Second,
	}
	return &soapClient{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr: tr, from: from}
}

func (c *soapClient) close() { c.tr.CloseIdleConnections() }

// soapFault is a SOAP error answer.
type soapFault struct {
	Status int
	Code   string // UPnP errorCode
}

func (f *soapFault) Error() string {
	return fmt.Sprintf("soap fault: http %d, upnp error %s", f.Status, f.Code)
}

// call sends action with the argument XML args and drains the answer.
func (c *soapClient) call(ctx context.Context, ctl igdControl, action, args string) error {
	body := `<?xml version="1.0"?>` + "\r\n" +
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">` +
		`<s:Body><u:` + action + ` xmlns:u="` + ctl.service + `">` + args + `</u:` + action + `></s:Body></s:Envelope>` + "\r\n"
	req, err := http.NewRequestWithContext(ctx, "POST", ctl.controlURL, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	req.Header.Set("SOAPAction", `"`+ctl.service+"#"+action+`"`)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		f := &soapFault{Status: resp.StatusCode}
		if i := bytes.Index(b, []byte("<errorCode>")); i >= 0 {
			rest := b[i+len("<errorCode>"):]
			if j := bytes.IndexByte(rest, '<'); j >= 0 {
				f.Code = string(rest[:j])
			}
		}
		return f
	}
	return nil
}

// addPortMapping maps slot s to the client's own address.
func (c *soapClient) addPortMapping(ctx context.Context, ctl igdControl, s int) error {
	sl := slotOf(s)
	args := fmt.Sprintf(`<NewRemoteHost></NewRemoteHost><NewExternalPort>%d</NewExternalPort><NewProtocol>%s</NewProtocol>`+
		`<NewInternalPort>%d</NewInternalPort><NewInternalClient>%s</NewInternalClient><NewEnabled>1</NewEnabled>`+
		`<NewPortMappingDescription>bench</NewPortMappingDescription><NewLeaseDuration>%d</NewLeaseDuration>`,
		sl.port, sl.protoName(), sl.port, c.from, lifetime)
	return c.call(ctx, ctl, "AddPortMapping", args)
}

// deletePortMapping removes slot s.
func (c *soapClient) deletePortMapping(ctx context.Context, ctl igdControl, s int) error {
	sl := slotOf(s)
	args := fmt.Sprintf(`<NewRemoteHost></NewRemoteHost><NewExternalPort>%d</NewExternalPort><NewProtocol>%s</NewProtocol>`,
		sl.port, sl.protoName())
	return c.call(ctx, ctl, "DeletePortMapping", args)
}

// getGeneric asks for the mapping at index i.
func (c *soapClient) getGeneric(ctx context.Context, ctl igdControl, i int) error {
	return c.call(ctx, ctl, "GetGenericPortMappingEntry", fmt.Sprintf("<NewPortMappingIndex>%d</NewPortMappingIndex>", i))
}

// soapWorkers are n clients, each from its own pool address (the IGD
// bounds connections per host, and secure mode maps to the caller only).
func soapWorkers(ns string, n int) []*soapClient {
	out := make([]*soapClient, n)
	for i := range out {
		out[i] = newSOAPClient(ns, poolAddr(poolSize-1-i))
	}
	return out
}

func closeSOAP(cs []*soapClient) {
	for _, c := range cs {
		c.close()
	}
}
