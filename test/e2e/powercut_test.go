package e2e

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/clock"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/store"
)

// natpmpEpoch asks argv[1]:5351 for the external address (NAT-PMP opcode
// 0) and prints the epoch of the answer, or "none" after two seconds.
const natpmpEpoch = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
s.sendto(b"\x00\x00", (sys.argv[1], 5351))
try:
    d, a = s.recvfrom(64)
    print(struct.unpack("!I", d[4:8])[0])
except socket.timeout:
    print("none")
`

// TestPowerCut starts berthd over a lease store that an earlier berthd
// left open: NAT-PMP and PCP answers wait only for the write of their
// lease, so when the machine stopped before the sync, some may be lost.
// Left open in this boot (berthd crashed), nothing was lost and the epoch
// carries on; left open in an earlier boot (the machine stopped), berthd
// says so and starts a new epoch, which tells clients to map again. The
// leases it could read come back either way.
func TestPowerCut(t *testing.T) {
	requireTools(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	boot := requireBootID(t)
	const warning = "the machine stopped while berthd ran: NAT-PMP/PCP leases of its last moments may not have reached the disk; " +
		"a new epoch tells those clients to map again"
	for _, tt := range []struct {
		name, boot string
		newEpoch   bool
	}{
		{"berthd crashed", boot, false},
		{"the machine stopped", "00000000-0000-4000-8000-000000000000", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			seedStore(t, state, 32000)
			if err := os.WriteFile(filepath.Join(state, "leases.open"), []byte(tt.boot+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			d, failed := launch(t, topo, bin, durableConfig, state)
			if failed != "" {
				t.Fatal(failed)
			}
			out := strings.TrimSpace(mustRun(t, 10*time.Second, topo.lan, python, "-c", natpmpEpoch, routerLAN.String()))
			epoch, err := strconv.Atoi(out)
			if err != nil {
				t.Fatalf("NAT-PMP external address request: %q", out)
			}
			// The seeded epoch began an hour ago.
			if got := epoch < 3000; got != tt.newEpoch {
				t.Errorf("epoch %d s; want a new one (under 3000 s): %v", epoch, tt.newEpoch)
			}
			d.mu.Lock()
			warned := containsMsg(d.msgs, warning)
			d.mu.Unlock()
			if warned != tt.newEpoch {
				t.Errorf("berthd warned of the machine's stop: %v, want %v", warned, tt.newEpoch)
			}
			waitUDP(t, topo, ext(32000), 32000, true)
		})
	}
}

// seedStore writes a lease store in dir as a berthd would leave it: an
// epoch that began an hour ago and a NAT-PMP lease of the LAN host for
// UDP port p (internal = external), closed cleanly.
func seedStore(t *testing.T, dir string, p uint16) {
	t.Helper()
	now := clock.Real{}.Now()
	st, _, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st.SetEpochBase(now.Add(-time.Hour))
	st.Put(mapping.Mapping{
		Key:      mapping.Key{Proto: mapping.UDP, External: netip.AddrPortFrom(routerWAN, p)},
		Internal: netip.AddrPortFrom(lanHost, p),
		Client:   lanHost,
		Origin:   mapping.Origin{Kind: mapping.KindNATPMP},
		Expires:  now.Add(time.Hour),
	})
	if err := st.Wait(ctx, st.Last()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSyncEveryAnswer: by default berthd keeps leases.open in its state
// directory while it runs (NAT-PMP/PCP leases are synced shortly after
// their answers) and removes it at a clean stop; with
// store.sync_every_answer every answer waits for the sync, and there is
// no marker to leave behind.
func TestSyncEveryAnswer(t *testing.T) {
	requireTools(t)
	requireBootID(t)
	bin := buildBerthd(t)
	topo := newTopology(t)
	for _, tt := range []struct {
		conf   string
		marker bool
	}{
		{durableConfig, true},
		{durableConfig + "\n[store]\nsync_every_answer = true\n", false},
	} {
		state := t.TempDir()
		d, failed := launch(t, topo, bin, tt.conf, state)
		if failed != "" {
			t.Fatal(failed)
		}
		natpmpcGranted(t, topo, 32100, 32100, "udp", 3600, 3600)
		marker := filepath.Join(state, "leases.open")
		if _, err := os.Stat(marker); (err == nil) != tt.marker {
			t.Errorf("sync_every_answer %v: leases.open while berthd runs: %v, want it there: %v", !tt.marker, err, tt.marker)
		}
		d.stop()
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("sync_every_answer %v: leases.open left after a clean stop", !tt.marker)
		}
	}
}

// requireBootID returns the machine's boot ID, without which berthd stores
// no lease lazily and writes no leases.open (skipped, or failed under
// BERTH_E2E=1).
func requireBootID(t *testing.T) string {
	t.Helper()
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		skipOrFail(t, "no boot ID (%v): berthd syncs every lease before answering", err)
	}
	return strings.TrimSpace(string(boot))
}
