package ssdp

import (
	"container/heap"
	"net/netip"
	"time"
)

// pending is one answer waiting for its send time.
type pending struct {
	due     time.Time
	seq     uint64
	k       *sock
	to      netip.AddrPort
	payload []byte
}

type queue []pending

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(pending)) }
func (q *queue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// enqueue schedules pkts first+i*Pace after now. A search that does not fit
// in MaxPending is dropped whole.
func (s *Server) enqueue(k *sock, to netip.AddrPort, pkts [][]byte, now time.Time, first time.Duration) {
	if len(pkts) == 0 {
		return
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closed.Load() {
		return
	}
	if s.queue.Len()+len(pkts) > s.cfg.MaxPending {
		s.overflow.Add(1)
		return
	}
	for i, p := range pkts {
		s.qSeq++
		heap.Push(&s.queue, pending{due: now.Add(first + time.Duration(i)*s.cfg.Pace), seq: s.qSeq, k: k, to: to, payload: p})
	}
	s.armLocked(now)
}

// armLocked makes sure a timer fires at the earliest due time. Called
// with qmu held.
func (s *Server) armLocked(now time.Time) {
	if s.queue.Len() == 0 {
		return
	}
	at := s.queue[0].due
	if s.qStop != nil && !at.Before(s.qAt) {
		return
	}
	if s.qStop != nil {
		s.qStop()
	}
	s.qGen++
	gen := s.qGen
	s.qAt = at
	s.qStop = s.cfg.Clock.AfterFunc(max(0, at.Sub(now)), func() { s.flush(gen) })
}

// flush sends the answers that are due and re-arms the timer.
func (s *Server) flush(gen uint64) {
	s.qmu.Lock()
	if gen != s.qGen || s.closed.Load() {
		s.qmu.Unlock() // superseded by a timer armed later
		return
	}
	s.qStop = nil
	now := s.cfg.Clock.Now()
	var due []pending
	for s.queue.Len() > 0 && !s.queue[0].due.After(now) {
		due = append(due, heap.Pop(&s.queue).(pending))
	}
	s.armLocked(now)
	s.qmu.Unlock()
	for _, p := range due {
		if s.write(p.k, p.payload, p.to) {
			s.answered.Add(1)
		}
	}
}
