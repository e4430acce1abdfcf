package igd

import (
	"errors"
	"net/url"
	"testing"

	"github.com/huin/goupnp/dcps/internetgateway1"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// goupnpCode returns the UPnP errorCode goupnp decoded from a fault.
func goupnpCode(err error) int {
	var se *soap.SOAPFaultError
	if errors.As(err, &se) {
		return int(se.Detail.UPnPError.Errorcode)
	}
	return 0
}

// TestGoupnpIG1 drives the server with goupnp's IGD:1 client, as go-nat's
// IG1 path and goupnp users do.
func TestGoupnpIG1(t *testing.T) {
	h := newHarness(t, options{config: func(c *Config) { c.Mode = "v1" }})
	loc, _ := url.Parse(h.base + "/rootDesc.xml")
	cs, err := internetgateway1.NewWANIPConnection1ClientsByURL(loc)
	if err != nil || len(cs) != 1 {
		t.Fatalf("got %d clients, %v; want 1", len(cs), err)
	}
	c := cs[0]
	// Speak from a LAN host that is not the router (127.0.0.1).
	c.SOAPClient.HTTPClient = *clientFrom(hostA)
	ip, err := c.GetExternalIPAddress()
	if err != nil || ip != "203.0.113.2" {
		t.Fatalf("GetExternalIPAddress = %q, %v", ip, err)
	}
	if err := c.AddPortMapping("", 20000, "TCP", 20000, hostA.String(), true, "goupnp ig1", 0); err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	if err := c.AddPortMapping("", 20001, "UDP", 20001, hostA.String(), true, "goupnp ig1 <&>", 3600); err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	port, client, enabled, desc, lease, err := c.GetSpecificPortMappingEntry("", 20001, "UDP")
	if err != nil || port != 20001 || client != hostA.String() || !enabled || desc != "goupnp ig1 <&>" || lease != 3600 {
		t.Errorf("GetSpecificPortMappingEntry = %d %s %v %q %d, %v", port, client, enabled, desc, lease, err)
	}
	n := 0
	for ; ; n++ {
		_, ext, proto, _, _, _, _, _, err := c.GetGenericPortMappingEntry(uint16(n))
		if err != nil {
			if goupnpCode(err) != 713 {
				t.Fatalf("GetGenericPortMappingEntry(%d): %v", n, err)
			}
			break
		}
		if n == 0 && (ext != 20000 || proto != "TCP") {
			t.Errorf("entry 0: %d %s", ext, proto)
		}
	}
	if n != 2 {
		t.Errorf("enumerated %d entries, want 2", n)
	}
	if err := c.DeletePortMapping("", 20000, "TCP"); err != nil {
		t.Errorf("DeletePortMapping: %v", err)
	}
	if err := c.DeletePortMapping("", 20000, "TCP"); goupnpCode(err) != 714 {
		t.Errorf("second DeletePortMapping: %v, want 714", err)
	}
	// A conflict reaches goupnp as 718.
	other := *clientFrom(hostB)
	c.SOAPClient.HTTPClient = other
	if err := c.AddPortMapping("", 20001, "UDP", 20001, hostB.String(), true, "x", 0); goupnpCode(err) != 718 {
		t.Errorf("conflicting AddPortMapping: %v, want 718", err)
	}
}

// TestGoupnpIG2 drives the server with goupnp's IGD:2 client (tailscale,
// libp2p).
func TestGoupnpIG2(t *testing.T) {
	h := newHarness(t, options{})
	loc, _ := url.Parse(h.base + "/rootDesc.xml")
	cs, err := internetgateway2.NewWANIPConnection2ClientsByURL(loc)
	if err != nil || len(cs) != 1 {
		t.Fatalf("got %d clients, %v; want 1", len(cs), err)
	}
	c := cs[0]
	c.SOAPClient.HTTPClient = *clientFrom(hostA)
	if ip, err := c.GetExternalIPAddress(); err != nil || ip != "203.0.113.2" {
		t.Fatalf("GetExternalIPAddress = %q, %v", ip, err)
	}
	port, err := c.AddAnyPortMapping("", 41641, "UDP", 41641, hostA.String(), true, "tailscale", 0)
	if err != nil || port != 41641 {
		t.Fatalf("AddAnyPortMapping = %d, %v", port, err)
	}
	if err := c.AddPortMapping("", 30000, "TCP", 30000, hostA.String(), true, "ig2", 0); err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	_, _, _, _, lease, err := c.GetSpecificPortMappingEntry("", 30000, "TCP")
	if err != nil || lease != 604800 {
		t.Errorf("GetSpecificPortMappingEntry lease %d, %v; want 604800", lease, err)
	}
	n := 0
	for ; ; n++ {
		if _, _, _, _, _, _, _, _, err := c.GetGenericPortMappingEntry(uint16(n)); err != nil {
			if goupnpCode(err) != 713 {
				t.Fatalf("GetGenericPortMappingEntry(%d): %v", n, err)
			}
			break
		}
	}
	if n != 2 {
		t.Errorf("enumerated %d entries, want 2", n)
	}
	if err := c.DeletePortMapping("", 41641, "UDP"); err != nil {
		t.Errorf("DeletePortMapping: %v", err)
	}
	// Policy denial in the v2 namespace is 606.
	if err := c.AddPortMapping("", 80, "TCP", 8080, hostA.String(), true, "web", 60); goupnpCode(err) != 606 {
		t.Errorf("privileged AddPortMapping: %v, want 606", err)
	}
}
