package netif

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/mapping"
)

// TestListeningGolden parses testdata/proc (little-endian /proc/net files)
// and compares the result with testdata/proc/listeners.golden.
func TestListeningGolden(t *testing.T) {
	ls, err := listening("testdata/proc", binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/proc/listeners.golden")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(string(golden), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestListeningMissingFiles(t *testing.T) {
	dir := t.TempDir()
	header := "  sl  local_address rem_address   st\n"
	for _, name := range []string{"tcp", "udp"} {
		if err := os.WriteFile(dir+"/"+name, []byte(header), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if ls, err := listening(dir, binary.LittleEndian); err != nil || len(ls) != 0 {
		t.Errorf("without tcp6/udp6: got %v, %v; want nothing, no error", ls, err)
	}
	os.Remove(dir + "/udp")
	if _, err := listening(dir, binary.LittleEndian); err == nil || !strings.Contains(err.Error(), "netif: open "+dir+"/udp") {
		t.Errorf("without udp: got %v, want an error naming the file", err)
	}
}

func TestParseHexAddrPort(t *testing.T) {
	tests := []struct {
		in    string
		order binary.ByteOrder
		want  string // "" = error
	}{
		{"0100007F:0035", binary.LittleEndian, "127.0.0.1:53"},
		{"7F000001:0035", binary.BigEndian, "127.0.0.1:53"},
		{"0101A8C0:FFFF", binary.LittleEndian, "192.168.1.1:65535"},
		{"B80D0120000000000000000001000000:01BB", binary.LittleEndian, "[2001:db8::1]:443"},
		{"20010DB8000000000000000000000001:01BB", binary.BigEndian, "[2001:db8::1]:443"},
		{"0000000000000000FFFF00000101A8C0:0050", binary.LittleEndian, "192.168.1.1:80"},
		{"0100007F0035", binary.LittleEndian, ""},
		{"0100007:0035", binary.LittleEndian, ""},
		{"0100007G:0035", binary.LittleEndian, ""},
		{"0100007F:035", binary.LittleEndian, ""},
		{"0100007F:+035", binary.LittleEndian, ""},
		{":", binary.LittleEndian, ""},
	}
	for _, tt := range tests {
		got, err := parseHexAddrPort(tt.in, tt.order)
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s: got %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddrPort(tt.want) {
			t.Errorf("%s: got %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestParseProcNetErrors(t *testing.T) {
	const header = "  sl  local_address rem_address   st\n"
	tests := []struct {
		name, body, want string
	}{
		{"short line", "   0: 00000000:0016 00000000:0000\n", "line 2: 3 fields, want at least 4"},
		{"bad address", "   0: 0000000:0016 00000000:0000 0A\n", `line 2: local address: bad address "0000000:0016"`},
		{"bad state", "   0: 00000000:0016 00000000:0000 XY\n", `line 2: bad state "XY"`},
		{"long state", "   0: 00000000:0016 00000000:0000 00A\n", `line 2: bad state "00A"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseProcNet([]byte(header+tt.body), mapping.TCP, binary.LittleEndian)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %s", err, tt.want)
			}
		})
	}
}

// TestListeningPortsHost reads this host's /proc. It checks only that the
// files parse: hosts differ.
func TestListeningPortsHost(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skipf("no /proc/net/tcp on this host: %v", err)
	}
	ls, err := ListeningPorts()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if !l.Addr.IsValid() || !l.Proto.Valid() {
			t.Errorf("bad listener %v", l)
		}
	}
	t.Logf("%d listeners: %v", len(ls), ls)
}

// formatProcLine writes a socket line as the kernel would on a
// little-endian host.
func formatProcLine(ap netip.AddrPort, state int) string {
	b := ap.Addr().AsSlice()
	var hex strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&hex, "%08X", binary.LittleEndian.Uint32(b[i:]))
	}
	return fmt.Sprintf("   0: %s:%04X 00000000:0000 %02X 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
		hex.String(), ap.Port(), state)
}

// FuzzParseProcNet checks that parseProcNet never panics and that each
// listener it returns, written back in the kernel's format, parses to
// itself.
func FuzzParseProcNet(f *testing.F) {
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile("testdata/proc/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, name[0] == 'u')
	}
	f.Add([]byte("h\n 0: 0100007F:0035 0:0 07"), true)
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		proto, state := mapping.TCP, stateListen
		if udp {
			proto, state = mapping.UDP, stateClose
		}
		ls, err := parseProcNet(data, proto, binary.LittleEndian)
		if err != nil {
			return
		}
		for _, l := range ls {
			if l.Proto != proto || !l.Addr.IsValid() {
				t.Fatalf("bad listener %v", l)
			}
			again, err := parseProcNet([]byte("header\n"+formatProcLine(l.Addr, state)), proto, binary.LittleEndian)
			if err != nil || len(again) != 1 || again[0] != l {
				t.Fatalf("%v: written back and parsed gives %v, %v", l, again, err)
			}
		}
	})
}
