package blockdev

import "sync"

// rangeLock orders the writes of a ByteGranular device that share
// blocks. Every write registers the byte range of the whole blocks it
// touches for the duration of its device call. An exclusive range (a
// read-modify-write of edge blocks) conflicts with every overlapping
// range; a shared one (whole blocks written as they are, a trim, a zeroing
// of whole blocks) conflicts only with exclusive ones, so whole-block
// writes never wait for each other.
//
// A read-modify-write racing a whole-block write of the same block would
// otherwise write back the stale rest of the block over the newer data: a
// lost update. In flight there are at most as many ranges as requests (the
// clients' queue depths), so a slice scan is cheap.
type rangeLock struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when a range is released while waiters exist
	held    []heldRange
	next    uint64
	waiters int
}

type heldRange struct {
	id         uint64
	start, end int64
	exclusive  bool
}

// lock waits until [start, end) may be held and returns its id for unlock.
func (l *rangeLock) lock(start, end int64, exclusive bool) uint64 {
	l.mu.Lock()
	if l.cond.L == nil {
		l.cond.L = &l.mu
	}
	for l.conflicts(start, end, exclusive) {
		l.waiters++
		l.cond.Wait()
		l.waiters--
	}
	l.next++
	id := l.next
	l.held = append(l.held, heldRange{id: id, start: start, end: end, exclusive: exclusive})
	l.mu.Unlock()
	return id
}

func (l *rangeLock) conflicts(start, end int64, exclusive bool) bool {
	for _, h := range l.held {
		if h.start < end && start < h.end && (exclusive || h.exclusive) {
			return true
		}
	}
	return false
}

// unlock releases the range lock returned.
func (l *rangeLock) unlock(id uint64) {
	l.mu.Lock()
	for i, h := range l.held {
		if h.id == id {
			last := len(l.held) - 1
			l.held[i] = l.held[last]
			l.held = l.held[:last]
			break
		}
	}
	if l.waiters > 0 {
		l.cond.Broadcast()
	}
	l.mu.Unlock()
}
