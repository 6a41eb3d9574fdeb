package volume

import (
	"sync/atomic"
	"time"
)

// Stats are a volume's counters since it was created.
type Stats struct {
	BytesRead      uint64 `json:"bytes_read"`
	BytesWritten   uint64 `json:"bytes_written"` // including zeroed bytes
	BytesDiscarded uint64 `json:"bytes_discarded"`
	// LockWait is the time requests spent waiting for an unlock, summed
	// over requests.
	LockWait time.Duration `json:"lock_wait_ns"`
}

type counters struct {
	read, written, discarded atomic.Uint64
	lockWait                 atomic.Int64 // nanoseconds
}

// Stats returns the counters.
func (v *Volume) Stats() Stats {
	return Stats{
		BytesRead:      v.stats.read.Load(),
		BytesWritten:   v.stats.written.Load(),
		BytesDiscarded: v.stats.discarded.Load(),
		LockWait:       time.Duration(v.stats.lockWait.Load()),
	}
}
