// Package description renders the UPnP Internet Gateway Device descriptions:
// the root device description (rootDesc.xml, UPnP Device Architecture 1.0
// §2.3) and the service descriptions (SCPDs, §2.5) of InternetGatewayDevice
// v1 and v2, built from Go values. The output follows COMPAT.md D1–D7:
// compact, unprefixed, spec-exact element case, short absolute URLs, and
// the element order byte-scanning clients (Apple) rely on.
package description

import (
	"regexp"
	"strings"
)

// Service names accepted by SCPD, and the paths berth serves them on. URLs
// are short absolute paths with nothing that needs escaping (COMPAT D4).
const (
	WANIPConnection          = "WANIPConnection"
	WANCommonInterfaceConfig = "WANCommonInterfaceConfig"
	Layer3Forwarding         = "Layer3Forwarding"

	RootPath = "/rootDesc.xml"

	WANIPConnectionSCPD    = "/WANIPCn.xml"
	WANIPConnectionControl = "/ctl/IPConn"
	WANIPConnectionEvent   = "/evt/IPConn"

	WANCommonInterfaceConfigSCPD    = "/WANCfg.xml"
	WANCommonInterfaceConfigControl = "/ctl/CmnIfCfg"
	WANCommonInterfaceConfigEvent   = "/evt/CmnIfCfg"

	Layer3ForwardingSCPD    = "/L3F.xml"
	Layer3ForwardingControl = "/ctl/L3F"
	Layer3ForwardingEvent   = "/evt/L3F"
)

// Device is what a root description says about the gateway.
type Device struct {
	// Version is the IGD version: 1 or 2 (anything else renders as 2).
	Version int
	// UDNs are the "uuid:..." names of InternetGatewayDevice, WANDevice
	// and WANConnectionDevice, in that order.
	UDNs             [3]string
	FriendlyName     string
	Manufacturer     string
	ManufacturerURL  string // optional
	ModelDescription string // optional
	ModelName        string
	ModelNumber      string // optional
	ModelURL         string // optional
	SerialNumber     string // optional
	PresentationURL  string // optional; root device only
	// Layer3Forwarding adds the Layer3Forwarding:1 service at the root.
	Layer3Forwarding bool
}

// ServiceType returns the service type URN of name at version.
func ServiceType(name string, version int) string {
	return "urn:schemas-upnp-org:service:" + name + ":" + itoa(version)
}

// DeviceType returns the device type URN of name at version.
func DeviceType(name string, version int) string {
	return "urn:schemas-upnp-org:device:" + name + ":" + itoa(version)
}

func itoa(v int) string {
	if v < 0 || v > 9 {
		v = 1
	}
	return string(rune('0' + v))
}

// serviceVersion returns the version of service in an IGD of version v:
// only WANIPConnection follows the device (WANCommonInterfaceConfig and
// Layer3Forwarding stay at 1 in IGD:2).
func serviceVersion(service string, v int) int {
	if service == WANIPConnection && v == 2 {
		return 2
	}
	return 1
}

type service struct {
	name, id, scpd, control, event string
}

var (
	wanIPConn = service{WANIPConnection, "urn:upnp-org:serviceId:WANIPConn1", WANIPConnectionSCPD, WANIPConnectionControl, WANIPConnectionEvent}
	wanCommon = service{WANCommonInterfaceConfig, "urn:upnp-org:serviceId:WANCommonIFC1", WANCommonInterfaceConfigSCPD, WANCommonInterfaceConfigControl, WANCommonInterfaceConfigEvent}
	l3f       = service{Layer3Forwarding, "urn:upnp-org:serviceId:L3Forwarding1", Layer3ForwardingSCPD, Layer3ForwardingControl, Layer3ForwardingEvent}
)

// Root renders the root device description of d (COMPAT D1–D6): the tree
// InternetGatewayDevice → WANDevice (WANCommonInterfaceConfig:1) →
// WANConnectionDevice → WANIPConnection, with Layer3Forwarding:1 at the root
// if d asks for it. base, when not empty, is emitted as URLBase and must be
// the LOCATION's "scheme://ip:port" (D4); "" omits URLBase.
func Root(d Device, base string) []byte {
	v := d.Version
	if v != 1 {
		v = 2
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\r\n")
	b.WriteString(`<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>`)
	if base != "" {
		elem(&b, "URLBase", base)
	}
	b.WriteString("<device>")
	deviceHead(&b, d, DeviceType("InternetGatewayDevice", v), d.UDNs[0])
	b.WriteString("<serviceList>")
	if d.Layer3Forwarding {
		serviceElem(&b, l3f, 1)
	}
	b.WriteString("</serviceList><deviceList><device>")
	deviceHead(&b, d, DeviceType("WANDevice", v), d.UDNs[1])
	b.WriteString("<serviceList>")
	serviceElem(&b, wanCommon, 1)
	b.WriteString("</serviceList><deviceList><device>")
	deviceHead(&b, d, DeviceType("WANConnectionDevice", v), d.UDNs[2])
	b.WriteString("<serviceList>")
	serviceElem(&b, wanIPConn, v)
	b.WriteString("</serviceList></device></deviceList></device></deviceList>")
	if d.PresentationURL != "" {
		elem(&b, "presentationURL", d.PresentationURL)
	}
	b.WriteString("</device></root>")
	return []byte(b.String())
}

// deviceHead writes a device's descriptive elements in the order of UPnP
// Device Architecture 1.0 §2.3, skipping empty optional ones.
func deviceHead(b *strings.Builder, d Device, typ, udn string) {
	elem(b, "deviceType", typ)
	elem(b, "friendlyName", d.FriendlyName)
	elem(b, "manufacturer", d.Manufacturer)
	optional(b, "manufacturerURL", d.ManufacturerURL)
	optional(b, "modelDescription", d.ModelDescription)
	elem(b, "modelName", d.ModelName)
	optional(b, "modelNumber", d.ModelNumber)
	optional(b, "modelURL", d.ModelURL)
	optional(b, "serialNumber", d.SerialNumber)
	elem(b, "UDN", udn)
}

// serviceElem writes one <service> with its children in the order Apple
// scans them (COMPAT D5).
func serviceElem(b *strings.Builder, s service, v int) {
	b.WriteString("<service>")
	elem(b, "serviceType", ServiceType(s.name, v))
	elem(b, "serviceId", s.id)
	elem(b, "controlURL", s.control)
	elem(b, "eventSubURL", s.event)
	elem(b, "SCPDURL", s.scpd)
	b.WriteString("</service>")
}

func optional(b *strings.Builder, name, value string) {
	if value != "" {
		elem(b, name, value)
	}
}

// elem writes <name>value</name> with value trimmed (D2), escaped, and
// without control characters.
func elem(b *strings.Builder, name, value string) {
	b.WriteString("<" + name + ">")
	for _, r := range strings.TrimSpace(value) {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r < 0x20, r >= 0x7f && r < 0xa0, r >= 0xd800 && r < 0xe000, r == 0xfffe, r == 0xffff:
		default:
			b.WriteRune(r)
		}
	}
	b.WriteString("</" + name + ">")
}

// v1Agents are the User-Agents that get a v1 description (COMPAT D7(a)):
// Windows NATUPnP and Xbox, and Apple, whose agent says "Windows NT/5.1".
var v1Agents = regexp.MustCompile(`(?i)microsoft|fdssdp|windows|xbox`)

// Personality picks the IGD version to describe to a client (COMPAT D7(a)).
// mode "v1" or "v2" forces a version; "auto" (or anything else) gives v1 to
// clients that searched for a v1 type or whose User-Agent matches
// microsoft|fdssdp|windows|xbox in any case, and v2 to everyone else, so
// that tailscale gets AddAnyPortMapping. The control URL accepts both
// namespaces either way.
func Personality(userAgent string, searchedV1 bool, mode string) int {
	switch mode {
	case "v1":
		return 1
	case "v2":
		return 2
	}
	if searchedV1 || v1Agents.MatchString(userAgent) {
		return 1
	}
	return 2
}
