package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/mapping"
)

// op is one change in a hand-built journal, with the model of what it does.
type op struct {
	rec []byte
	do  func(live map[mapping.Key]mapping.Mapping, epoch *time.Time)
}

func putOp(m mapping.Mapping) op {
	return op{appendPut(nil, m), func(live map[mapping.Key]mapping.Mapping, _ *time.Time) { live[m.Key] = m }}
}

func deleteOp(k mapping.Key) op {
	return op{appendDelete(nil, k), func(live map[mapping.Key]mapping.Mapping, _ *time.Time) { delete(live, k) }}
}

func epochOp(t time.Time) op {
	return op{appendEpoch(nil, t), func(_ map[mapping.Key]mapping.Mapping, e *time.Time) { *e = t }}
}

// smallJournal is a journal of five records of every type, and the
// offset where each record ends.
func smallJournal() ([]byte, []op, []int) {
	a, b, c := testMapping(1), goldens[1].rec.Mapping, goldens[2].rec.Mapping
	ops := []op{putOp(a), putOp(b), epochOp(base), deleteOp(a.Key), putOp(c)}
	data := appendHeader(nil)
	var ends []int
	for _, o := range ops {
		data = append(data, o.rec...)
		ends = append(ends, len(data))
	}
	return data, ops, ends
}

func writeJournal(t testing.TB, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, journalName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// reopenClean checks that the file Open left behind loads cleanly with
// the same mappings and returns what the second Open loaded.
func reopenClean(t *testing.T, o Options, want []mapping.Mapping) Loaded {
	t.Helper()
	s, ld, err := Open(o)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer s.Close()
	checkClean(t, ld)
	checkMappings(t, ld.Mappings, want)
	return ld
}

// TestTruncatedEverywhere cuts a small journal at every offset: Open
// never fails, recovers every record wholly before the cut, and reports a
// loss exactly when the cut is inside the header or a record.
func TestTruncatedEverywhere(t *testing.T) {
	data, ops, ends := smallJournal()
	for cut := 0; cut <= len(data); cut++ {
		live := map[mapping.Key]mapping.Mapping{}
		var epoch time.Time
		for i, end := range ends {
			if end <= cut {
				ops[i].do(live, &epoch)
			}
		}
		var want []mapping.Mapping
		for _, m := range live {
			want = append(want, m)
		}
		lost := cut < headerLen || cut > headerLen && !contains(ends, cut)
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			o := Options{Dir: writeJournal(t, data[:cut]), NoSync: true}
			s, ld, err := Open(o)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			s.Close()
			checkMappings(t, ld.Mappings, want)
			if ld.Lost != lost || (len(ld.Damage) > 0) != lost {
				t.Fatalf("Lost %v, damage %q; want lost %v", ld.Lost, ld.Damage, lost)
			}
			if lost {
				epoch = time.Time{} // state was lost: the epoch restarts
			}
			if !ld.EpochBase.Equal(epoch) {
				t.Errorf("EpochBase = %v, want %v", ld.EpochBase, epoch)
			}
			if ld := reopenClean(t, o, want); !ld.EpochBase.Equal(epoch) {
				t.Errorf("EpochBase after rewrite = %v, want %v", ld.EpochBase, epoch)
			}
		})
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestDamagedMiddleRecord spoils the middle one of three records in
// different ways: its neighbours are recovered and the damage reported.
func TestDamagedMiddleRecord(t *testing.T) {
	a, b, c := testMapping(1), goldens[1].rec.Mapping, testMapping(3)
	recB := appendPut(nil, b)
	offB := headerLen + len(appendPut(nil, a))
	tests := []struct {
		name   string
		spoil  func(rec []byte) []byte
		reason string
	}{
		{"flipped payload byte", func(r []byte) []byte { r[len(r)/2] ^= 0x40; return r }, "bad checksum"},
		{"flipped checksum byte", func(r []byte) []byte { r[offCRC] ^= 1; return r }, "bad checksum"},
		{"length too large for the file", func(r []byte) []byte {
			binary.BigEndian.PutUint32(r, 3000)
			return r
		}, "truncated record"},
		{"length above the bound", func(r []byte) []byte { r[0] = 0x80; return r }, "record length out of range"},
		{"length too small", func(r []byte) []byte { binary.BigEndian.PutUint32(r, 3); return r }, "bad checksum"},
		{"zeroed", func(r []byte) []byte { clear(r); return r }, "record length out of range"},
		{"bad field under a good checksum", func(r []byte) []byte {
			r[offPayload+2] = 7 // external address length
			return reframe(r[offPayload:])
		}, "external: bad field"},
		{"torn write: half the record", func(r []byte) []byte { return r[:len(r)/2] }, "bad checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spoilt := tt.spoil(bytes.Clone(recB))
			data := appendPut(appendHeader(nil), a)
			data = append(data, spoilt...)
			data = appendPut(data, c)
			o := Options{Dir: writeJournal(t, data), NoSync: true}
			s, ld, err := Open(o)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			s.Close()
			checkMappings(t, ld.Mappings, []mapping.Mapping{a, c})
			want := fmt.Sprintf("%s: offset %d: %s; skipped %d bytes", journalName, offB, tt.reason, len(spoilt))
			if !ld.Lost || len(ld.Damage) != 1 || ld.Damage[0] != want {
				t.Fatalf("damage %q, lost %v; want [%q], lost", ld.Damage, ld.Lost, want)
			}
			kept, err := os.ReadFile(filepath.Join(o.Dir, damagedName))
			if err != nil || !bytes.Equal(kept, data) {
				t.Errorf("damaged copy: %v, equal %v", err, bytes.Equal(kept, data))
			}
			reopenClean(t, o, []mapping.Mapping{a, c})
		})
	}
}

// TestZeroTail: zeros after the last record are the journal's space
// written ahead (writer.reserve) when they fill the file to a multiple of
// growJournal: not damage, and the next records go over them. Zeros
// anywhere else are damage (a crash that left an extension unwritten, a
// disk that zeroed synced records): the state may be lost.
func TestZeroTail(t *testing.T) {
	a, b := testMapping(1), testMapping(2)
	records := appendPut(appendHeader(nil), a)
	t.Run("reserved", func(t *testing.T) {
		data := append(slices.Clone(records), make([]byte, growJournal-len(records))...)
		o := Options{Dir: writeJournal(t, data), NoSync: true}
		s, ld, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, ld)
		checkMappings(t, ld.Mappings, []mapping.Mapping{a})
		wait(t, s, s.Put(b))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(o.Dir, journalName))
		if err != nil {
			t.Fatal(err)
		}
		if want := appendPut(slices.Clone(records), b); !bytes.Equal(got, want) {
			t.Errorf("journal after a Put and Close:\n got %x\nwant %x", got, want)
		}
		reopenClean(t, o, []mapping.Mapping{a, b})
	})
	t.Run("not reserved", func(t *testing.T) {
		data := append(slices.Clone(records), make([]byte, 5000)...)
		o := Options{Dir: writeJournal(t, data), NoSync: true}
		s, ld, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		checkMappings(t, ld.Mappings, []mapping.Mapping{a})
		want := fmt.Sprintf("%s: offset %d: record length out of range; skipped 5000 bytes", journalName, len(records))
		if !ld.Lost || len(ld.Damage) != 1 || ld.Damage[0] != want {
			t.Fatalf("damage %q; want [%q]", ld.Damage, want)
		}
	})
}

func TestBadHeader(t *testing.T) {
	a, b := testMapping(1), testMapping(2)
	records := appendPut(appendPut(nil, a), b)
	garbage := []byte(strings.Repeat("this is not a lease journal\n", 40))
	v2 := appendHeader(nil)
	v2[offVer+3] = 2
	flipped := appendHeader(nil)
	flipped[1] ^= 0x20
	tests := []struct {
		name   string
		data   []byte
		want   []mapping.Mapping
		damage string
	}{
		{"garbage", garbage, nil, fmt.Sprintf("offset 0: bad magic; skipped %d bytes", len(garbage))},
		{"empty file", nil, nil, "offset 0: truncated header; skipped 0 bytes"},
		{"short file", []byte("BERT"), nil, "offset 0: truncated header; skipped 4 bytes"},
		{"later version", append(v2, records...), nil,
			fmt.Sprintf("offset 0: unsupported format version 2; skipped %d bytes", headerLen+len(records))},
		{"flipped magic bit", append(flipped, records...), []mapping.Mapping{a, b}, "offset 0: bad magic; skipped 12 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Dir: writeJournal(t, tt.data), NoSync: true}
			s, ld, err := Open(o)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			checkMappings(t, ld.Mappings, tt.want)
			if want := journalName + ": " + tt.damage; !ld.Lost || len(ld.Damage) != 1 || ld.Damage[0] != want {
				t.Fatalf("damage %q, lost %v; want [%q], lost", ld.Damage, ld.Lost, want)
			}
			// The store is usable.
			c := testMapping(3)
			wait(t, s, s.Put(c))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			reopenClean(t, o, append(tt.want, c))
		})
	}
}

// TestResyncSkipsEmbeddedRecord: after a bad checksum the reader first
// tries the end of the damaged record, so a record hidden in a
// description (a client can choose one) is not taken for a real one.
func TestResyncSkipsEmbeddedRecord(t *testing.T) {
	a, c := testMapping(1), testMapping(3)
	evil := testMapping(9)
	evil.Internal = netip.MustParseAddrPort("192.0.2.66:22")
	b := testMapping(2)
	b.Origin.Description = string(appendPut(nil, evil))
	recB := appendPut(nil, b)
	recB[len(recB)-1] ^= 1
	data := append(appendPut(appendHeader(nil), a), recB...)
	data = appendPut(data, c)
	s, ld, err := Open(Options{Dir: writeJournal(t, data), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	checkMappings(t, ld.Mappings, []mapping.Mapping{a, c})
}

func BenchmarkResyncGarbage(b *testing.B) {
	garbage := make([]byte, 1<<20)
	for i := range garbage {
		garbage[i] = byte(i*7 + i>>8)
	}
	data := append(appendHeader(nil), garbage...)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		w := writer{live: map[string]string{}}
		w.load("bench", data)
	}
}
