package store

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkOpen100k loads a journal of 100,000 typical mappings.
func BenchmarkOpen100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	data := appendHeader(nil)
	for i := range n {
		data = appendPut(data, testMapping(i))
	}
	if err := os.WriteFile(filepath.Join(dir, journalName), data, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s, ld, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if len(ld.Mappings) != n || ld.Lost {
			b.Fatalf("loaded %d mappings, lost %v", len(ld.Mappings), ld.Lost)
		}
		s.Close()
	}
}

// BenchmarkPutWaitParallel is many clients each making a mapping and
// waiting for it to be durable, with real fsyncs. It reports the fsyncs
// per change: below 1 when group commit shares them.
func BenchmarkPutWaitParallel(b *testing.B) {
	sys := &faultFS{}
	s, _ := mustOpen(b, Options{Dir: b.TempDir()}, sys)
	var next atomic.Int64
	b.SetParallelism(16) // 16 × GOMAXPROCS concurrent clients
	before := sys.get().syncs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			m := testMapping(int(next.Add(1) % 100_000))
			if err := s.Wait(ctx, s.Put(m)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(sys.get().syncs-before)/float64(b.N), "fsyncs/op")
}

// BenchmarkPut is the cost a Put adds under the caller's mutex.
func BenchmarkPut(b *testing.B) {
	s, _ := mustOpen(b, Options{Dir: b.TempDir(), NoSync: true}, nil)
	m := testMapping(1)
	for b.Loop() {
		s.Put(m)
	}
}
