// Package errs is a presubmit fixture for error strings.
package errs

import (
	"errors"
	xerr "errors"
	"fmt"
)

var (
	errBadCapital = errors.New("Bad thing")
	errBadDot     = errors.New("bad thing.")
	errBadBang    = errors.New(`bad thing!`)
	errBadBoth    = errors.New("Bad thing.") // two findings on one line
	errAlias      = xerr.New("Aliased import")
	errConcat     = errors.New("Concatenated " + "string\n")

	errGood       = errors.New("pcp: bad thing")
	errAcronym    = errors.New("PCP: bad opcode")
	errMixed      = errors.New("UPnP action failed")
	errHyphen     = errors.New("NAT-PMP: short packet")
	errIdent      = errors.New("AddPortMapping: no such entry")
	errSlash      = errors.New("I/O timeout")
	errEllipsisIn = errors.New("wait... then fail")
	errNotLiteral = errors.New(message)
	errDigit      = errors.New("4 bytes short")
)

const message = "Not checked: not a literal."

func f(err error, n int) error {
	switch n {
	case 0:
		return fmt.Errorf("Config: %w", err)
	case 1:
		return fmt.Errorf("read %d bytes: %w.", n, err)
	case 2:
		return fmt.Errorf("%s: failed", "x")
	case 3:
		return fmt.Errorf("HTTP %d: %w", n, err)
	case 4:
		return fmt.Errorf(message+"%w", err)
	}
	return fmt.Errorf("IGD: %w", err)
}

type local struct{}

func (local) New(s string) error { return nil }

func g() error {
	errors := local{}
	return errors.New("Shadowed: not the errors package.")
}
