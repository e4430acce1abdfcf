package soap

import (
	"errors"
	"testing"
)

func TestTypedArgs(t *testing.T) {
	a := Action{Args: map[string]string{
		"P": "8080", "Big": "65536", "Neg": "-1", "Empty": "", "Plus": "+7",
		"T": "TRUE", "Y": "yes", "N": "No", "Z": "0", "Bad": "maybe",
		"tcp": "tcp", "udp": "Udp", "sctp": "SCTP",
		"L": "3600", "LNeg": "-5", "LBig": "99999999999", "LJunk": "1h",
		"Star": "*", "Host": "1.2.3.4",
	}}
	if v, err := a.UI2("P"); err != nil || v != 8080 {
		t.Errorf("UI2(P): got %v, %v", v, err)
	}
	if v, err := a.UI2("Plus"); err != nil || v != 7 {
		t.Errorf("UI2(Plus): got %v, %v", v, err)
	}
	for _, n := range []string{"Big", "Neg", "Empty", "Missing"} {
		if _, err := a.UI2(n); !errors.Is(err, NewFault(InvalidArgs)) {
			t.Errorf("UI2(%s): got %v, want 402", n, err)
		}
	}
	if v, err := a.UI4("Big"); err != nil || v != 65536 {
		t.Errorf("UI4(Big): got %v, %v", v, err)
	}
	for _, tt := range []struct {
		name string
		def  Boolean
		want Boolean
	}{{"T", false, true}, {"Y", false, true}, {"N", true, false}, {"Z", true, false}, {"Missing", true, true}, {"Empty", false, false}} {
		if v, err := a.Boolean(tt.name, tt.def); err != nil || v != tt.want {
			t.Errorf("Boolean(%s): got %v, %v; want %v", tt.name, v, err, tt.want)
		}
	}
	if _, err := a.Boolean("Bad", true); !errors.Is(err, NewFault(InvalidArgs)) {
		t.Errorf("Boolean(Bad): got %v, want 402", err)
	}
	if p, err := a.Protocol("tcp"); err != nil || p != TCP {
		t.Errorf("Protocol(tcp): got %v, %v", p, err)
	}
	if p, err := a.Protocol("udp"); err != nil || p != UDP {
		t.Errorf("Protocol(udp): got %v, %v", p, err)
	}
	if _, err := a.Protocol("sctp"); !errors.Is(err, NewFault(InvalidArgs)) {
		t.Errorf("Protocol(sctp): got %v, want 402", err)
	}
	// COMPAT R3/M2: lease values never fail.
	for n, want := range map[string]UI4{"L": 3600, "LNeg": 0, "LBig": 4294967295, "LJunk": 0, "Missing": 0, "Empty": 0} {
		if got := a.Lease(n); got != want {
			t.Errorf("Lease(%s): got %d, want %d", n, got, want)
		}
	}
	if a.RemoteHost("Star") != "" || a.RemoteHost("Missing") != "" || a.RemoteHost("Host") != "1.2.3.4" {
		t.Errorf("RemoteHost wildcard folding wrong")
	}
}

func TestPortMapping(t *testing.T) {
	a := Action{Args: map[string]string{
		"NewRemoteHost": "*", "NewExternalPort": "80", "NewProtocol": "tcp", "NewInternalPort": "8080",
		"NewInternalClient": "192.168.1.2", "NewLeaseDuration": "garbage",
	}}
	m, err := a.PortMapping()
	want := PortMapping{NewExternalPort: 80, NewProtocol: TCP, NewInternalPort: 8080, NewInternalClient: "192.168.1.2", NewEnabled: true}
	if err != nil || m != want {
		t.Errorf("got %+v, %v; want %+v", m, err, want)
	}
	delete(a.Args, "NewInternalPort")
	if _, err := a.PortMapping(); !errors.Is(err, NewFault(InvalidArgs)) {
		t.Errorf("missing NewInternalPort: got %v, want 402", err)
	}
	k, err := a.PortMappingKey()
	if err != nil || k != (PortMappingKey{NewExternalPort: 80, NewProtocol: TCP}) {
		t.Errorf("PortMappingKey: got %+v, %v", k, err)
	}
	g, err := Action{Args: map[string]string{"NewPortMappingIndex": "70000"}}.GetGenericPortMappingEntry()
	if err != nil || g.NewPortMappingIndex != 70000 {
		t.Errorf("GetGenericPortMappingEntry: got %+v, %v", g, err)
	}
	r, err := Action{Args: map[string]string{"NewStartPort": "1", "NewEndPort": "65535", "NewProtocol": "UDP", "NewManage": "1", "NewNumberOfPorts": "10"}}.PortRange()
	if err != nil || r != (PortRange{1, 65535, UDP, true, 10}) {
		t.Errorf("PortRange: got %+v, %v", r, err)
	}
}
