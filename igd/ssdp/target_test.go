package ssdp

import (
	"slices"
	"testing"
)

const (
	rootUDN = "uuid:11111111-2222-3333-4444-000000000001"
	wanUDN  = "uuid:11111111-2222-3333-4444-000000000002"
	connUDN = "uuid:11111111-2222-3333-4444-000000000003"
)

// COMPAT S1 and S2, one rule per row. want is the USN's device ("" for no
// answer); ST must be echoed verbatim and the USN must end with it.
func TestMatches(t *testing.T) {
	v1 := testDevice
	v1.IGDVersion, v1.WANIPConnectionVersion = 1, 1
	full := testDevice
	full.Layer3Forwarding, full.WANIPv6FirewallControl = true, true
	tests := []struct {
		name string
		dev  Device
		st   string
		want string // UDN the answer belongs to; "" = no answer
	}{
		{"rootdevice", testDevice, "upnp:rootdevice", rootUDN},
		{"uuid root", testDevice, rootUDN, rootUDN},
		{"uuid WANDevice", testDevice, wanUDN, wanUDN},
		{"uuid WANConnectionDevice without prefix in Device", testDevice, connUDN, connUDN},
		{"uuid upper case echoed", testDevice, "uuid:11111111-2222-3333-4444-00000000000A", ""},
		{"uuid unknown", testDevice, "uuid:deadbeef", ""},
		{"IGD:2", testDevice, "urn:schemas-upnp-org:device:InternetGatewayDevice:2", rootUDN},
		{"IGD:1 on v2 (lower version)", testDevice, "urn:schemas-upnp-org:device:InternetGatewayDevice:1", rootUDN},
		{"IGD:3 ignored", testDevice, "urn:schemas-upnp-org:device:InternetGatewayDevice:3", ""},
		{"IGD:2 on v1 ignored", v1, "urn:schemas-upnp-org:device:InternetGatewayDevice:2", ""},
		{"IGD:0 ignored", testDevice, "urn:schemas-upnp-org:device:InternetGatewayDevice:0", ""},
		{"IGD without version", testDevice, "urn:schemas-upnp-org:device:InternetGatewayDevice", ""},
		{"IGD:+1 ignored", testDevice, "urn:schemas-upnp-org:device:InternetGatewayDevice:+1", ""},
		{"WANDevice:1", testDevice, "urn:schemas-upnp-org:device:WANDevice:1", wanUDN},
		{"WANConnectionDevice:1 (go-nat)", testDevice, "urn:schemas-upnp-org:device:WANConnectionDevice:1", connUDN},
		{"WANConnectionDevice:2", testDevice, "urn:schemas-upnp-org:device:WANConnectionDevice:2", connUDN},
		{"WANIPConnection:1 (Apple literal :1)", testDevice, "urn:schemas-upnp-org:service:WANIPConnection:1", connUDN},
		{"WANIPConnection:2", testDevice, "urn:schemas-upnp-org:service:WANIPConnection:2", connUDN},
		{"WANIPConnection:2 on v1 ignored", v1, "urn:schemas-upnp-org:service:WANIPConnection:2", ""},
		{"WANCommonInterfaceConfig:1", testDevice, "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", wanUDN},
		{"WANCommonInterfaceConfig:2 ignored", testDevice, "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:2", ""},
		{"WANPPPConnection:1 alias", testDevice, "urn:schemas-upnp-org:service:WANPPPConnection:1", connUDN},
		{"WANPPPConnection:2 ignored", testDevice, "urn:schemas-upnp-org:service:WANPPPConnection:2", ""},
		{"Layer3Forwarding not described", testDevice, "urn:schemas-upnp-org:service:Layer3Forwarding:1", ""},
		{"Layer3Forwarding described", full, "urn:schemas-upnp-org:service:Layer3Forwarding:1", rootUDN},
		{"WANIPv6FirewallControl disabled", testDevice, "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1", ""},
		{"WANIPv6FirewallControl enabled", full, "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1", connUDN},
		{"service type searched as device", testDevice, "urn:schemas-upnp-org:device:WANIPConnection:1", ""},
		{"device type searched as service", testDevice, "urn:schemas-upnp-org:service:WANDevice:1", ""},
		{"other domain", testDevice, "urn:schemas-wifialliance-org:device:WFADevice:1", ""},
		{"media renderer", testDevice, "urn:schemas-upnp-org:device:MediaRenderer:1", ""},
		{"case-insensitive type", testDevice, "URN:schemas-upnp-org:device:internetgatewaydevice:1", rootUDN},
		{"garbage", testDevice, "ssdp:nothing", ""},
		{"empty", testDevice, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Matches(tt.st, tt.dev)
			if tt.want == "" {
				if got != nil {
					t.Fatalf("got %v, want no answer", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d answers %v, want 1", len(got), got)
			}
			if got[0].ST != tt.st {
				t.Errorf("got ST %q, want the searched string %q", got[0].ST, tt.st)
			}
			wantUSN := tt.want + "::" + tt.st
			if tt.st == tt.want || len(tt.st) > 5 && tt.st[:5] == "uuid:" {
				wantUSN = tt.st
			}
			if got[0].USN != wantUSN {
				t.Errorf("got USN %q, want %q", got[0].USN, wantUSN)
			}
		})
	}
}

// COMPAT S1: ssdp:all answers every described target, at the implemented
// versions, and not the PPP alias.
func TestMatchesAll(t *testing.T) {
	full := testDevice
	full.Layer3Forwarding, full.WANIPv6FirewallControl = true, true
	for _, tt := range []struct {
		name string
		dev  Device
		want []string
	}{
		{"v2", testDevice, []string{
			"upnp:rootdevice",
			"urn:schemas-upnp-org:device:InternetGatewayDevice:2", rootUDN,
			"urn:schemas-upnp-org:service:WANIPConnection:2",
			"urn:schemas-upnp-org:device:WANDevice:2", wanUDN,
			"urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1",
			"urn:schemas-upnp-org:device:WANConnectionDevice:2", connUDN,
		}},
		{"full", full, []string{
			"upnp:rootdevice",
			"urn:schemas-upnp-org:device:InternetGatewayDevice:2", rootUDN,
			"urn:schemas-upnp-org:service:WANIPConnection:2",
			"urn:schemas-upnp-org:device:WANDevice:2", wanUDN,
			"urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1",
			"urn:schemas-upnp-org:device:WANConnectionDevice:2", connUDN,
			"urn:schemas-upnp-org:service:Layer3Forwarding:1",
			"urn:schemas-upnp-org:service:WANIPv6FirewallControl:1",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Matches("ssdp:all", tt.dev)
			var sts []string
			for _, a := range got {
				sts = append(sts, a.ST)
				if a.USN != a.ST && !slices.Contains([]string{rootUDN, wanUDN, connUDN}, a.USN[:len(rootUDN)]) {
					t.Errorf("USN %q does not start with a UDN", a.USN)
				}
			}
			if !slices.Equal(sts, tt.want) {
				t.Fatalf("got %q\nwant %q", sts, tt.want)
			}
			if !slices.Equal(got, tt.dev.Targets()) {
				t.Fatal("ssdp:all differs from Targets")
			}
		})
	}
}
