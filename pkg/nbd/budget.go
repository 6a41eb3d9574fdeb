package nbd

import (
	"sync"
	"time"
)

// budget is a connection's in-flight allowance: bytes of payload buffers
// and a number of requests. Only the connection's reader acquires (so
// waiters never starve one another); replies release. This is the
// backpressure: a client that sends faster than the device or its own
// reading of replies allows finds the server no longer reading.
type budget struct {
	mu       sync.Mutex
	bytes    int64 // available
	reqs     int   // available
	maxBytes int64
	maxReqs  int
	// waiting: the reader found too little and may be waiting on wake.
	// Having one waiter, wake is a one-slot signal, never replaced: a
	// release sends to it, and a signal left over from a wait that ended
	// otherwise only costs the reader one more look.
	waiting bool
	wake    chan struct{}
	// idleAt is when the last request in flight was answered, kept only
	// once trackIdle was called (for Server.IdleTimeout): it costs a
	// clock read each time the connection goes idle.
	trackingIdle bool
	idleAt       time.Time
}

func newBudget(maxBytes int64, maxReqs int) *budget {
	return &budget{bytes: maxBytes, reqs: maxReqs, maxBytes: maxBytes, maxReqs: maxReqs, wake: make(chan struct{}, 1)}
}

// idle reports whether no request holds any of the budget: each one read
// so far has been answered (its reply written) or dropped.
func (b *budget) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs == b.maxReqs
}

// trackIdle starts keeping the time the budget last became idle, taking
// now as the first.
func (b *budget) trackIdle(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trackingIdle, b.idleAt = true, now
}

// idleSince reports whether the budget is idle and, if so, since when
// (see trackIdle).
func (b *budget) idleSince() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.idleAt, b.reqs == b.maxReqs
}

// charge is what a request of n payload bytes costs: a request larger than
// the whole budget is let through alone.
func (b *budget) charge(n int64) int64 { return min(n, b.maxBytes) }

// acquire takes n bytes (from charge) and one request slot, waiting until
// they are free or stop is closed; it reports whether it got them.
func (b *budget) acquire(n int64, stop <-chan struct{}) bool {
	for {
		w, ok := b.take(n)
		if ok {
			return true
		}
		select {
		case <-w:
		case <-stop:
			return false
		}
	}
}

// tryAcquire is acquire without waiting.
func (b *budget) tryAcquire(n int64) bool {
	_, ok := b.take(n)
	return ok
}

// take takes n bytes and a request slot if both are free; if not, it
// returns the channel signalled at the next release.
func (b *budget) take(n int64) (<-chan struct{}, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bytes >= n && b.reqs > 0 {
		b.bytes -= n
		b.reqs--
		return nil, true
	}
	b.waiting = true
	return b.wake, false
}

// release gives back what one acquire took.
func (b *budget) release(n int64) { b.releaseBatch(n, 1) }

// releaseBatch gives back what reqs acquires took, bytes in all: a batch
// of replies returns its requests' allowance under one lock.
func (b *budget) releaseBatch(bytes int64, reqs int) {
	b.mu.Lock()
	b.bytes += bytes
	b.reqs += reqs
	if b.trackingIdle && b.reqs == b.maxReqs {
		b.idleAt = time.Now()
	}
	if b.waiting {
		b.waiting = false
		select {
		case b.wake <- struct{}{}:
		default: // a signal is already pending
		}
	}
	b.mu.Unlock()
}
