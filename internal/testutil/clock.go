package testutil

import (
	"sync"
	"testing"
	"time"
)

// ManualClock is a clock (Now, Timer) that moves only when a test
// advances it: code that takes a clock (the server's rotation scheduler)
// is tested without waiting and without timing assertions.
type ManualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []manualWaiter
}

type manualWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewManualClock returns a clock that reads t until advanced.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{now: t} }

// Now is the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Timer is time.NewTimer on this clock.
func (c *ManualClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch, func() {}
	}
	c.waiters = append(c.waiters, manualWaiter{c.now.Add(d), ch})
	stop := func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, w := range c.waiters {
			if w.ch == ch {
				c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				return
			}
		}
	}
	return ch, stop
}

// Advance moves the clock by d once something waits on it (so that it
// sees the new time), and fires the timers that are due. A timer the
// scheduler stopped is gone, so a waiter here is one set after the
// scheduler saw the latest state (a policy change wakes it and stops the
// old timer).
func (c *ManualClock) Advance(tb testing.TB, d time.Duration) {
	tb.Helper()
	WaitFor(tb, "the scheduler to wait on the clock", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.waiters) > 0
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
		} else {
			w.ch <- c.now
		}
	}
	c.waiters = kept
}

// WaitFor polls cond until it holds. The two-minute deadline only bounds
// a hang; it is no timing assertion.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
