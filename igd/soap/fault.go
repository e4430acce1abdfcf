package soap

import "fmt"

// UPnP error codes a berth responder sends (UPnP Device Architecture 1.0 §3.2.2 and
// WANIPConnection:2 §2.4). COMPAT R3 lists the clients that react to each one.
const (
	InvalidAction                    = 401
	InvalidArgs                      = 402
	ActionFailed                     = 501
	ActionNotAuthorized              = 606 // v2 only; v1-namespace callers get 718 (miniupnp PR#677)
	SpecifiedArrayIndexInvalid       = 713
	NoSuchEntryInArray               = 714
	WildCardNotPermittedInExtPort    = 716
	ConflictInMappingEntry           = 718
	SamePortValuesRequired           = 724
	OnlyPermanentLeasesSupported     = 725 // never sent (COMPAT R3); listed for completeness
	RemoteHostOnlySupportsWildcard   = 726
	ExternalPortOnlySupportsWildcard = 727 // never sent (COMPAT R3); listed for completeness
	NoPortMapsAvailable              = 728
	ConflictWithOtherMechanisms      = 729
	WildCardNotPermittedInIntPort    = 732
	InconsistentParameters           = 733
)

var descriptions = map[int]string{
	InvalidAction:                    "Invalid Action",
	InvalidArgs:                      "Invalid Args",
	ActionFailed:                     "Action Failed",
	ActionNotAuthorized:              "Action not authorized",
	SpecifiedArrayIndexInvalid:       "SpecifiedArrayIndexInvalid",
	NoSuchEntryInArray:               "NoSuchEntryInArray",
	WildCardNotPermittedInExtPort:    "WildCardNotPermittedInExtPort",
	ConflictInMappingEntry:           "ConflictInMappingEntry",
	SamePortValuesRequired:           "SamePortValuesRequired",
	OnlyPermanentLeasesSupported:     "OnlyPermanentLeasesSupported",
	RemoteHostOnlySupportsWildcard:   "RemoteHostOnlySupportsWildcard",
	ExternalPortOnlySupportsWildcard: "ExternalPortOnlySupportsWildcard",
	NoPortMapsAvailable:              "NoPortMapsAvailable",
	ConflictWithOtherMechanisms:      "ConflictWithOtherMechanisms",
	WildCardNotPermittedInIntPort:    "WildCardNotPermittedInIntPort",
	InconsistentParameters:           "InconsistentParameters",
}

// Fault is a UPnP error: the errorCode and errorDescription of a SOAP fault
// (UPnP Device Architecture 1.0 §3.2.2). It travels as an error; callers
// recover it with errors.As and compare codes with errors.Is.
type Fault struct {
	Code        int
	Description string
}

// NewFault returns the fault for code with the specification's description.
func NewFault(code int) *Fault {
	return &Fault{Code: code, Description: Description(code)}
}

// Description returns the specification's errorDescription for code, or
// "Action Failed" for codes it does not know.
func Description(code int) string {
	if d, ok := descriptions[code]; ok {
		return d
	}
	return descriptions[ActionFailed]
}

// Error implements error.
func (f *Fault) Error() string {
	return fmt.Sprintf("upnp error %d: %s", f.Code, f.Description)
}

// Is reports whether target is a *Fault with the same code; descriptions are
// not compared, so errors.Is(err, soap.NewFault(soap.InvalidArgs)) matches any 402.
func (f *Fault) Is(target error) bool {
	t, ok := target.(*Fault)
	return ok && t != nil && f != nil && t.Code == f.Code
}
