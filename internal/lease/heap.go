package lease

import "time"

// expiryHeap is a min-heap of entries by deadline. Each entry records its
// index so that removal and update are O(log n).
type expiryHeap []*entry

func (h expiryHeap) less(i, j int) bool {
	return h[i].expires.Before(h[j].expires)
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = int32(i)
	h[j].heapIdx = int32(j)
}

func (h *expiryHeap) push(e *entry) {
	e.heapIdx = int32(len(*h))
	*h = append(*h, e)
	h.up(int(e.heapIdx))
}

func (h *expiryHeap) remove(e *entry) {
	i := int(e.heapIdx)
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	e.heapIdx = -1
	if i != last {
		h.fix(i)
	}
}

func (h expiryHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h expiryHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

func (h expiryHeap) min() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].expires, true
}
