package soap

import "strings"

// PortMappingEntry is one entry of a GetListOfPortMappings answer
// (WANIPConnection:2 §2.3.22, A_ARG_TYPE_PortListing). Field names are the
// element names of the PortMappingList schema.
type PortMappingEntry struct {
	NewRemoteHost     string
	NewExternalPort   UI2
	NewProtocol       Protocol
	NewInternalPort   UI2
	NewInternalClient string
	NewEnabled        Boolean
	NewDescription    string
	NewLeaseTime      UI4 // remaining seconds (miniupnp#466)
}

// DefaultListingSize is the number of entries a GetListOfPortMappings answer
// holds when NewNumberOfPorts is 0 (COMPAT R9), as in miniupnpd.
const DefaultListingSize = 1000

// PortListing returns the NewPortListing document for entries: the
// PortMappingList of the WANIPConnection:2 schema, laid out as miniupnpd lays
// it out. Every value is escaped and cleaned as in WriteResponse, so the
// document is well-formed; the caller puts it in an Arg with CDATA set
// (COMPAT R9), which keeps it intact for clients that read the text node.
func PortListing(entries []PortMappingEntry) string {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
		"<p:PortMappingList xmlns:p=\"urn:schemas-upnp-org:gw:WANIPConnection\" " +
		"xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" " +
		"xsi:schemaLocation=\"urn:schemas-upnp-org:gw:WANIPConnection " +
		"http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd\">\n")
	for _, e := range entries {
		b.WriteString("<p:PortMappingEntry>\n")
		field(&b, "NewRemoteHost", e.NewRemoteHost)
		field(&b, "NewExternalPort", e.NewExternalPort.String())
		field(&b, "NewProtocol", string(e.NewProtocol))
		field(&b, "NewInternalPort", e.NewInternalPort.String())
		field(&b, "NewInternalClient", e.NewInternalClient)
		field(&b, "NewEnabled", e.NewEnabled.String())
		field(&b, "NewDescription", e.NewDescription)
		field(&b, "NewLeaseTime", e.NewLeaseTime.String())
		b.WriteString("</p:PortMappingEntry>\n")
	}
	b.WriteString("</p:PortMappingList>")
	return b.String()
}

func field(b *strings.Builder, name, value string) {
	b.WriteString("<p:" + name + ">")
	escape(b, value)
	b.WriteString("</p:" + name + ">\n")
}
