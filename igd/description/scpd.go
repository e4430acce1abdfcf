package description

import "strings"

// An action's arguments: name, direction ("in"/"out"), relatedStateVariable.
type arg struct{ name, dir, sv string }

type action struct {
	name string
	args []arg
}

// A state variable; allowed lists allowedValueList entries, rng an
// allowedValueRange as {minimum, maximum}.
type stateVar struct {
	name, typ string
	events    bool
	allowed   []string
	rng       []string
}

func in(name, sv string) arg  { return arg{name, "in", sv} }
func out(name, sv string) arg { return arg{name, "out", sv} }

// The WANIPConnection actions berth serves (WANIPConnection:1 §2.4 and
// WANIPConnection:2 §2.5), in miniupnpd's order; out-arguments are in SCPD
// order, which responses follow (COMPAT R1).
var (
	pmArgsIn = []arg{
		in("NewRemoteHost", "RemoteHost"), in("NewExternalPort", "ExternalPort"),
		in("NewProtocol", "PortMappingProtocol"), in("NewInternalPort", "InternalPort"),
		in("NewInternalClient", "InternalClient"), in("NewEnabled", "PortMappingEnabled"),
		in("NewPortMappingDescription", "PortMappingDescription"), in("NewLeaseDuration", "PortMappingLeaseDuration"),
	}
	keyIn   = pmArgsIn[:3]
	entryV1 = []arg{
		out("NewInternalPort", "InternalPort"), out("NewInternalClient", "InternalClient"),
		out("NewEnabled", "PortMappingEnabled"), out("NewPortMappingDescription", "PortMappingDescription"),
		out("NewLeaseDuration", "PortMappingLeaseDuration"),
	}
	wanIPConnV1 = []action{
		{"SetConnectionType", []arg{in("NewConnectionType", "ConnectionType")}},
		{"GetConnectionTypeInfo", []arg{out("NewConnectionType", "ConnectionType"), out("NewPossibleConnectionTypes", "PossibleConnectionTypes")}},
		{"RequestConnection", nil},
		{"ForceTermination", nil},
		{"GetStatusInfo", []arg{out("NewConnectionStatus", "ConnectionStatus"), out("NewLastConnectionError", "LastConnectionError"), out("NewUptime", "Uptime")}},
		{"GetNATRSIPStatus", []arg{out("NewRSIPAvailable", "RSIPAvailable"), out("NewNATEnabled", "NATEnabled")}},
		{"GetGenericPortMappingEntry", append([]arg{
			in("NewPortMappingIndex", "PortMappingNumberOfEntries"),
			out("NewRemoteHost", "RemoteHost"), out("NewExternalPort", "ExternalPort"), out("NewProtocol", "PortMappingProtocol"),
		}, entryV1...)},
		{"GetSpecificPortMappingEntry", append(append([]arg{}, keyIn...), entryV1...)},
		{"AddPortMapping", pmArgsIn},
		{"DeletePortMapping", keyIn},
		{"GetExternalIPAddress", []arg{out("NewExternalIPAddress", "ExternalIPAddress")}},
	}
	rangeIn = []arg{
		in("NewStartPort", "ExternalPort"), in("NewEndPort", "ExternalPort"),
		in("NewProtocol", "PortMappingProtocol"), in("NewManage", "A_ARG_TYPE_Manage"),
	}
	wanIPConnV2 = append(append([]action{}, wanIPConnV1...),
		action{"DeletePortMappingRange", rangeIn},
		action{"GetListOfPortMappings", append(append([]arg{}, rangeIn...),
			in("NewNumberOfPorts", "PortMappingNumberOfEntries"), out("NewPortListing", "A_ARG_TYPE_PortListing"))},
		action{"AddAnyPortMapping", append(append([]arg{}, pmArgsIn...), out("NewReservedPort", "ExternalPort"))},
	)
)

func wanIPConnVars(v int) []stateVar {
	lease, intPort := stateVar{"PortMappingLeaseDuration", "ui4", false, nil, nil}, stateVar{"InternalPort", "ui2", false, nil, nil}
	if v == 2 {
		// WANIPConnection:2 §2.2.19 and §2.2.20 give these ranges.
		lease.rng, intPort.rng = []string{"0", "604800"}, []string{"1", "65535"}
	}
	vars := []stateVar{
		{"ConnectionType", "string", false, nil, nil},
		{"PossibleConnectionTypes", "string", true, []string{"Unconfigured", "IP_Routed", "IP_Bridged"}, nil},
		{"ConnectionStatus", "string", true, []string{"Unconfigured", "Connecting", "Connected", "PendingDisconnect", "Disconnecting", "Disconnected"}, nil},
		{"Uptime", "ui4", false, nil, nil},
		{"LastConnectionError", "string", false, []string{"ERROR_NONE", "ERROR_COMMAND_ABORTED", "ERROR_NOT_ENABLED_FOR_INTERNET", "ERROR_USER_DISCONNECT", "ERROR_ISP_DISCONNECT", "ERROR_IDLE_DISCONNECT", "ERROR_FORCED_DISCONNECT", "ERROR_NO_CARRIER", "ERROR_IP_CONFIGURATION", "ERROR_UNKNOWN"}, nil},
		{"RSIPAvailable", "boolean", false, nil, nil},
		{"NATEnabled", "boolean", false, nil, nil},
		{"ExternalIPAddress", "string", true, nil, nil},
		{"PortMappingNumberOfEntries", "ui2", true, nil, nil},
		{"PortMappingEnabled", "boolean", false, nil, nil},
		lease,
		{"RemoteHost", "string", false, nil, nil},
		{"ExternalPort", "ui2", false, nil, nil},
		intPort,
		{"PortMappingProtocol", "string", false, []string{"TCP", "UDP"}, nil},
		{"InternalClient", "string", false, nil, nil},
		{"PortMappingDescription", "string", false, nil, nil},
	}
	if v == 2 {
		vars = append(vars,
			stateVar{"SystemUpdateID", "ui4", true, nil, nil},
			stateVar{"A_ARG_TYPE_Manage", "boolean", false, nil, nil},
			stateVar{"A_ARG_TYPE_PortListing", "string", false, nil, nil})
	}
	return vars
}

// WANCommonInterfaceConfig:1 as miniupnpd serves it (the read-only subset
// clients call; COMPAT R8).
var (
	wanCommonActions = []action{
		{"GetCommonLinkProperties", []arg{
			out("NewWANAccessType", "WANAccessType"),
			out("NewLayer1UpstreamMaxBitRate", "Layer1UpstreamMaxBitRate"),
			out("NewLayer1DownstreamMaxBitRate", "Layer1DownstreamMaxBitRate"),
			out("NewPhysicalLinkStatus", "PhysicalLinkStatus"),
		}},
		{"GetTotalBytesSent", []arg{out("NewTotalBytesSent", "TotalBytesSent")}},
		{"GetTotalBytesReceived", []arg{out("NewTotalBytesReceived", "TotalBytesReceived")}},
		{"GetTotalPacketsSent", []arg{out("NewTotalPacketsSent", "TotalPacketsSent")}},
		{"GetTotalPacketsReceived", []arg{out("NewTotalPacketsReceived", "TotalPacketsReceived")}},
	}
	wanCommonVars = []stateVar{
		{"WANAccessType", "string", false, []string{"DSL", "POTS", "Cable", "Ethernet"}, nil},
		{"Layer1UpstreamMaxBitRate", "ui4", false, nil, nil},
		{"Layer1DownstreamMaxBitRate", "ui4", false, nil, nil},
		{"PhysicalLinkStatus", "string", true, []string{"Up", "Down"}, nil},
		{"TotalBytesSent", "ui4", false, nil, nil},
		{"TotalBytesReceived", "ui4", false, nil, nil},
		{"TotalPacketsSent", "ui4", false, nil, nil},
		{"TotalPacketsReceived", "ui4", false, nil, nil},
	}
	l3fActions = []action{
		{"SetDefaultConnectionService", []arg{in("NewDefaultConnectionService", "DefaultConnectionService")}},
		{"GetDefaultConnectionService", []arg{out("NewDefaultConnectionService", "DefaultConnectionService")}},
	}
	l3fVars = []stateVar{{"DefaultConnectionService", "string", true, nil, nil}}
)

// SCPD renders the service description of service (WANIPConnection,
// WANCommonInterfaceConfig or Layer3Forwarding) at version; it returns nil
// for a service or version berth does not serve. Only WANIPConnection has a
// version 2, which adds DeletePortMappingRange, GetListOfPortMappings and
// AddAnyPortMapping.
func SCPD(service string, version int) []byte {
	var (
		actions []action
		vars    []stateVar
	)
	switch {
	case service == WANIPConnection && version == 1:
		actions, vars = wanIPConnV1, wanIPConnVars(1)
	case service == WANIPConnection && version == 2:
		actions, vars = wanIPConnV2, wanIPConnVars(2)
	case service == WANCommonInterfaceConfig && version == 1:
		actions, vars = wanCommonActions, wanCommonVars
	case service == Layer3Forwarding && version == 1:
		actions, vars = l3fActions, l3fVars
	default:
		return nil
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\r\n")
	b.WriteString(`<scpd xmlns="urn:schemas-upnp-org:service-1-0"><specVersion><major>1</major><minor>0</minor></specVersion><actionList>`)
	for _, a := range actions {
		b.WriteString("<action>")
		elem(&b, "name", a.name)
		if len(a.args) > 0 {
			b.WriteString("<argumentList>")
			for _, g := range a.args {
				b.WriteString("<argument>")
				elem(&b, "name", g.name)
				elem(&b, "direction", g.dir)
				elem(&b, "relatedStateVariable", g.sv)
				b.WriteString("</argument>")
			}
			b.WriteString("</argumentList>")
		}
		b.WriteString("</action>")
	}
	b.WriteString("</actionList><serviceStateTable>")
	for _, v := range vars {
		if v.events {
			b.WriteString(`<stateVariable sendEvents="yes">`)
		} else {
			b.WriteString(`<stateVariable sendEvents="no">`)
		}
		elem(&b, "name", v.name)
		elem(&b, "dataType", v.typ)
		if len(v.allowed) > 0 {
			b.WriteString("<allowedValueList>")
			for _, s := range v.allowed {
				elem(&b, "allowedValue", s)
			}
			b.WriteString("</allowedValueList>")
		}
		if len(v.rng) == 2 {
			b.WriteString("<allowedValueRange>")
			elem(&b, "minimum", v.rng[0])
			elem(&b, "maximum", v.rng[1])
			b.WriteString("</allowedValueRange>")
		}
		b.WriteString("</stateVariable>")
	}
	b.WriteString("</serviceStateTable></scpd>")
	return []byte(b.String())
}
