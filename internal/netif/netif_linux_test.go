package netif

import (
	"testing"

	"golang.org/x/sys/unix"
)

// An address the kernel still checks for duplicates (IPv6 DAD) cannot be
// bound, so it is not served until the kernel announces it done.
func TestUsableAddressFlags(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags int
		want  bool
	}{
		{"plain", 0, true},
		{"permanent", unix.IFA_F_PERMANENT, true},
		{"temporary (privacy)", unix.IFA_F_TEMPORARY, true},
		{"deprecated", unix.IFA_F_DEPRECATED, true},
		{"tentative", unix.IFA_F_TENTATIVE | unix.IFA_F_PERMANENT, false},
		{"tentative but optimistic (RFC 4429)", unix.IFA_F_TENTATIVE | unix.IFA_F_OPTIMISTIC, true},
		{"duplicate found", unix.IFA_F_DADFAILED | unix.IFA_F_TENTATIVE, false},
		{"duplicate found, optimistic", unix.IFA_F_DADFAILED | unix.IFA_F_TENTATIVE | unix.IFA_F_OPTIMISTIC, false},
	} {
		if got := usable(tt.flags); got != tt.want {
			t.Errorf("%s (%#x): usable %t, want %t", tt.name, tt.flags, got, tt.want)
		}
	}
}
