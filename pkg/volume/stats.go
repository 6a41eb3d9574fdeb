package volume

import "sync/atomic"

// Stats are a volume's counters since it was created.
type Stats struct {
	BytesRead      uint64 `json:"bytes_read"`
	BytesWritten   uint64 `json:"bytes_written"` // including zeroed bytes
	BytesDiscarded uint64 `json:"bytes_discarded"`
}

type counters struct {
	read, written, discarded atomic.Uint64
}

// Stats returns the counters.
func (v *Volume) Stats() Stats {
	return Stats{
		BytesRead:      v.stats.read.Load(),
		BytesWritten:   v.stats.written.Load(),
		BytesDiscarded: v.stats.discarded.Load(),
	}
}
