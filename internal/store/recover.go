package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// load reads a journal's contents into the live set and returns what it
// had to skip, one report per damaged stretch, and where the records end;
// name is the file name used in the reports. It never fails: what it
// cannot read it skips. Zeros from a record boundary to the end of a file
// whose length is a multiple of growJournal are the space written ahead of
// the records (writer.reserve), not damage; elsewhere zeros are damage, as
// a disk that zeroed synced records would leave them.
//
// After a damaged record, reading resumes at the next offset where a
// whole record checks out: first right after the damaged record's frame
// when its length was plausible (a bad checksum or field spoils one
// record), else at the first such offset found scanning forward byte by
// byte. A record is at most MaxRecordLen bytes, so each offset costs at
// most one bounded checksum, and most are rejected by their length and
// type bytes before that.
func (w *writer) load(name string, data []byte) (damage []string, end int) {
	report := func(off, next int, why string) {
		damage = append(damage, fmt.Sprintf("%s: offset %d: %s; skipped %d bytes", name, off, why, next-off))
	}
	off := headerLen
	switch {
	case len(data) < headerLen:
		report(0, len(data), "truncated header")
		return damage, len(data)
	case string(data[offMagic:offMagic+len(magic)]) != magic:
		// Not a journal, or a damaged header: take what checks out.
		off = resync(data, 0)
		report(0, off, "bad magic")
	case binary.BigEndian.Uint32(data[offVer:]) != version:
		// A later format (a downgrade): its records cannot be trusted to
		// mean what this version reads them as.
		report(0, len(data), fmt.Sprintf("unsupported format version %d", binary.BigEndian.Uint32(data[offVer:])))
		return damage, len(data)
	}
	// Past zeroFrom every byte is zero; a record starts with its nonzero
	// length, so a boundary there is the end.
	zeroFrom := len(data)
	for len(data)%growJournal == 0 && zeroFrom > off && data[zeroFrom-1] == 0 {
		zeroFrom--
	}
	for off < zeroFrom {
		_, n, err := DecodeRecord(data[off:])
		if err == nil {
			w.apply(data[off : off+n])
			w.records++
			off += n
			continue
		}
		next := -1
		if skip := plausibleEnd(data[off:], err); skip > 0 && validAt(data, off+skip) {
			next = off + skip
		}
		if next < 0 {
			next = resync(data, off+1)
		}
		report(off, next, reason(err))
		off = next
	}
	return damage, off
}

// plausibleEnd returns the length of the damaged record at the start of b
// when its frame fits in b and only its checksum or contents are bad, or 0.
func plausibleEnd(b []byte, err error) int {
	if errors.Is(err, ErrTruncated) || errors.Is(err, ErrLength) {
		return 0
	}
	return frameLen + int(binary.BigEndian.Uint32(b[offLength:]))
}

// validAt reports whether a whole record that decodes starts at off, or
// off is the end of data.
func validAt(data []byte, off int) bool {
	if off == len(data) {
		return true
	}
	b := data[off:]
	if len(b) <= frameLen {
		return false
	}
	n := binary.BigEndian.Uint32(b[offLength:])
	if n == 0 || n > MaxRecordLen || int(n) > len(b)-frameLen {
		return false
	}
	if t := RecordType(b[offPayload]); t < TypePut || t > TypeEpoch {
		return false
	}
	_, _, err := DecodeRecord(b)
	return err == nil
}

// resync returns the first offset from from on where a valid record
// starts, or len(data).
func resync(data []byte, from int) int {
	for off := from; off < len(data); off++ {
		if validAt(data, off) {
			return off
		}
	}
	return len(data)
}

// reason words a DecodeError for a damage report.
func reason(err error) string {
	var de *DecodeError
	switch {
	case errors.Is(err, ErrChecksum), errors.Is(err, ErrTruncated), errors.Is(err, ErrLength):
		return errors.Unwrap(err).Error()
	case errors.As(err, &de):
		return de.Field + ": " + de.Err.Error()
	}
	return err.Error()
}
