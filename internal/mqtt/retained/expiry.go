package retained

// expiryHeap is a min-heap of the entries with an expiry, by deadline; each
// entry knows its place (hidx), so that a replaced or deleted one leaves at
// once and the heap never holds more than the store.
type expiryHeap []*entry

func (h expiryHeap) less(i, j int) bool {
	a, _ := h[i].deadline()
	b, _ := h[j].deadline()
	return a < b
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = int32(i), int32(j)
}

func (h *expiryHeap) push(e *entry) {
	e.hidx = int32(len(*h))
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

// remove takes e, which is in h, out of it.
func (h *expiryHeap) remove(e *entry) {
	i, last := int(e.hidx), len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	e.hidx = -1
	if i != last {
		h.down(i)
		h.up(i)
	}
	if cap(*h) > 64 && cap(*h) > 4*len(*h) {
		*h = append(expiryHeap(nil), *h...) // a burst of expiring messages gone: so is its memory
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

func (h expiryHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}
