package store

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// FuzzDecodeRecord checks that DecodeRecord never panics, reports its
// failures as a plausible *DecodeError, and round-trips: whatever decodes
// re-encodes with AppendTo to exactly the bytes it was decoded from, and
// decodes again to the same record. Each input is also tried as a payload
// under a correct frame. The reader's resync (load) runs on the
// same input as a journal body and must not panic either.
func FuzzDecodeRecord(f *testing.F) {
	for _, g := range goldens {
		rec := loadGolden(f, g.file)
		f.Add(rec)
		f.Add(rec[frameLen:]) // a payload, for the reframed decode
	}
	f.Add([]byte{})
	f.Add(append(appendHeader(nil), loadGolden(f, goldens[0].file)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		w := writer{live: map[string]string{}}
		data := append(appendHeader(nil), b...)
		damage, end := w.load("fuzz", data)
		w.mappings() // every live record must decode
		// Without damage the records end at end and only zeroed space
		// follows: appends go there.
		if end < headerLen || end > len(data) || len(damage) == 0 && slices.ContainsFunc(data[end:], func(c byte) bool { return c != 0 }) {
			t.Fatalf("load ended at %d of %d bytes with damage %q and %x after it", end, len(data), damage, data[min(max(end, 0), len(data)):])
		}

		checkDecode(t, b)
		// The same bytes as a payload under a correct frame, so that
		// mutations reach the field decoder past the checksum.
		if len(b) > 0 && len(b) <= MaxRecordLen {
			checkDecode(t, reframe(b))
		}
	})
}

// checkDecode decodes b and checks the error or the round trip.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	r, n, err := DecodeRecord(b)
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("got %T %v, want *DecodeError", err, err)
		}
		if de.Off < 0 || de.Off > len(b) || de.Field == "" || de.Err == nil {
			t.Fatalf("implausible %#v", de)
		}
		return
	}
	if n < frameLen+1 || n > len(b) || n > frameLen+MaxRecordLen {
		t.Fatalf("DecodeRecord took %d of %d bytes", n, len(b))
	}
	out := r.AppendTo(nil)
	if !bytes.Equal(out, b[:n]) {
		t.Fatalf("AppendTo = %x, want %x", out, b[:n])
	}
	r2, n2, err := DecodeRecord(out)
	if err != nil || n2 != n || !sameRecord(r, r2) {
		t.Fatalf("second decode = %s, %d, %v; want %s, %d", describeRecord(r2), n2, err, describeRecord(r), n)
	}
}
