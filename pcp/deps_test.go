package pcp_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// The codecs depend only on the standard library and the std-lib-only
// vocabulary package, so that other Go programs (a PCP client, a NAT-PMP
// client) can import them without the daemon's dependencies (DESIGN.md,
// Packages). The socket server, which needs x/net and netlink, lives in
// pcp/listener.
func TestCodecsDependOnlyOnStandardLibrary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("BERTH_E2E") == "1" {
			t.Fatal("no go command on PATH to list dependencies with")
		}
		t.Skip("no go command on PATH to list dependencies with; BERTH_E2E=1 makes this a failure")
	}
	allowed := []string{
		"github.com/berthd/berth/internal/mapping",
		"github.com/berthd/berth/natpmp",
		"github.com/berthd/berth/pcp",
	}
	// Also another GOOS, for dependencies behind build constraints.
	for _, goos := range []string{"", "windows"} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
			"github.com/berthd/berth/pcp", "github.com/berthd/berth/natpmp")
		cmd.Env = os.Environ()
		if goos != "" {
			cmd.Env = append(cmd.Env, "GOOS="+goos)
		}
		out, err := cmd.Output()
		cancel()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("go list (GOOS=%q): %v\n%s", goos, err, stderr)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if !slices.Contains(allowed, dep) {
				t.Errorf("GOOS=%q: pcp or natpmp depends on %s; the codecs may use only the standard library and internal/mapping", goos, dep)
			}
		}
	}
}
