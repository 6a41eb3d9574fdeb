package volume

import "sync"

// rangeLock orders writes that share sectors. Every write registers the
// byte range of the whole sectors it touches for the duration of its
// backing I/O. An exclusive range (a read-modify-write of edge sectors)
// conflicts with every overlapping range; a shared one (whole sectors
// written as they are, a discard) conflicts only with exclusive ones, so
// whole-sector writes never wait for each other.
//
// A read-modify-write racing a whole-sector write of the same sector would
// otherwise write back the stale rest of the sector over the newer data:
// a torn sector. In flight there are at most as many ranges as requests
// (the client's queue depth), so a slice scan is cheap.
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
