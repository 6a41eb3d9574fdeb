package nbd

import (
	"sync"
	"time"
)

// refusalLog keeps the log short while clients flood a server that is at
// Server.MaxConnections: the first refusal after a quiet spell is logged
// at once, later ones at most once every refusalLogEvery, each line
// counting the refusals since the one before. (The count of a flood's
// last refusals reaches the log with the next refusal.)
type refusalLog struct {
	mu      sync.Mutex
	last    time.Time // when the last line was due; zero: never
	pending int64     // refusals not reported yet
	every   time.Duration
}

// refusalLogEvery is the shortest time between two lines about refused
// connections.
const refusalLogEvery = 10 * time.Second

// note counts one refusal at now and returns how many refusals the line
// due now reports, or 0 when no line is due.
func (r *refusalLog) note(now time.Time) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending++
	every := r.every
	if every == 0 {
		every = refusalLogEvery
	}
	if !r.last.IsZero() && now.Sub(r.last) < every {
		return 0
	}
	n := r.pending
	r.pending, r.last = 0, now
	return n
}
