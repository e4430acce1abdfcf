package soap

// Per-action request structs, named after WANIPConnection:2 §2.5 (field names
// are the argument names). Each decoder applies COMPAT P4/P5 defaults and
// returns the first bad argument as an error wrapping the 402 fault. The
// decoders check syntax only; ranges and policy are the responder's.

// PortMapping is the request of AddPortMapping and of AddAnyPortMapping (v2),
// which take the same arguments.
type PortMapping struct {
	NewRemoteHost             string // "" is the wildcard ("*" folded in)
	NewExternalPort           UI2
	NewProtocol               Protocol
	NewInternalPort           UI2
	NewInternalClient         string // "" means the requester (miniupnp#236)
	NewEnabled                Boolean
	NewPortMappingDescription string
	NewLeaseDuration          UI4 // never invalid; see Action.Lease
}

// PortMappingKey is the request of DeletePortMapping and
// GetSpecificPortMappingEntry.
type PortMappingKey struct {
	NewRemoteHost   string
	NewExternalPort UI2
	NewProtocol     Protocol
}

// GetGenericPortMappingEntry is the request of GetGenericPortMappingEntry.
type GetGenericPortMappingEntry struct {
	// NewPortMappingIndex is a ui2 in the service description, but it is
	// read as the ui4 miniupnpd accepts: a table of more than 65,536
	// mappings stays listable, and an index past the end is 713, never
	// an entry again (a client walking until 713 would not stop).
	NewPortMappingIndex UI4
}

// PortRange is the request of DeletePortMappingRange (v2) and, with
// NewNumberOfPorts, of GetListOfPortMappings (v2).
type PortRange struct {
	NewStartPort     UI2
	NewEndPort       UI2
	NewProtocol      Protocol
	NewManage        Boolean // missing = 0
	NewNumberOfPorts UI2     // GetListOfPortMappings only; 0 = the responder's default (R9)
}

// argReader keeps the first error of a sequence of argument reads.
type argReader struct {
	a   Action
	err error
}

func (r *argReader) ui2(name string) UI2 {
	v, err := r.a.UI2(name)
	r.keep(err)
	return v
}

func (r *argReader) protocol(name string) Protocol {
	v, err := r.a.Protocol(name)
	r.keep(err)
	return v
}

func (r *argReader) boolean(name string, def Boolean) Boolean {
	v, err := r.a.Boolean(name, def)
	r.keep(err)
	return v
}

func (r *argReader) keep(err error) {
	if r.err == nil {
		r.err = err
	}
}

// PortMapping decodes an AddPortMapping or AddAnyPortMapping request.
// NewEnabled missing is 1, NewLeaseDuration missing is 0, the description
// and NewInternalClient may be missing (COMPAT P5).
func (a Action) PortMapping() (PortMapping, error) {
	r := argReader{a: a}
	m := PortMapping{
		NewRemoteHost:             a.RemoteHost("NewRemoteHost"),
		NewExternalPort:           r.ui2("NewExternalPort"),
		NewProtocol:               r.protocol("NewProtocol"),
		NewInternalPort:           r.ui2("NewInternalPort"),
		NewInternalClient:         a.String("NewInternalClient"),
		NewEnabled:                r.boolean("NewEnabled", true),
		NewPortMappingDescription: a.String("NewPortMappingDescription"),
		NewLeaseDuration:          a.Lease("NewLeaseDuration"),
	}
	return m, r.err
}

// PortMappingKey decodes a DeletePortMapping or GetSpecificPortMappingEntry
// request.
func (a Action) PortMappingKey() (PortMappingKey, error) {
	r := argReader{a: a}
	k := PortMappingKey{
		NewRemoteHost:   a.RemoteHost("NewRemoteHost"),
		NewExternalPort: r.ui2("NewExternalPort"),
		NewProtocol:     r.protocol("NewProtocol"),
	}
	return k, r.err
}

// GetGenericPortMappingEntry decodes a GetGenericPortMappingEntry request.
// The index is a ui2 in the specification; an index beyond it is no error
// here but 713 at the responder (an enumeration terminator, COMPAT R3), so
// values up to the ui4 range saturate instead of failing.
func (a Action) GetGenericPortMappingEntry() (GetGenericPortMappingEntry, error) {
	v, err := a.UI4("NewPortMappingIndex")
	if err != nil {
		return GetGenericPortMappingEntry{}, err
	}
	return GetGenericPortMappingEntry{NewPortMappingIndex: v}, nil
}

// PortRange decodes a DeletePortMappingRange or GetListOfPortMappings
// request; NewNumberOfPorts is read only when present.
func (a Action) PortRange() (PortRange, error) {
	r := argReader{a: a}
	p := PortRange{
		NewStartPort: r.ui2("NewStartPort"),
		NewEndPort:   r.ui2("NewEndPort"),
		NewProtocol:  r.protocol("NewProtocol"),
		NewManage:    r.boolean("NewManage", false),
	}
	if a.String("NewNumberOfPorts") != "" {
		p.NewNumberOfPorts = r.ui2("NewNumberOfPorts")
	}
	return p, r.err
}
