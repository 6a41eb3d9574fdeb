package ublk

import "sync/atomic"

// Stats counts what a device's queues did since it started: how many
// requests they served and what those cost the ring threads. The
// counters tell how a request is served (a benchmark reads them around a
// job): Waits/Requests is the io_uring_enter calls a request costs,
// Wakes/Requests the worker-to-ring wake-ups (an eventfd write, a
// completion and a re-armed read each).
type Stats struct {
	Requests uint64 `json:"requests"` // requests fetched from the kernel
	Inline   uint64 `json:"inline"`   // of which the ring thread ran itself
	Waits    uint64 `json:"waits"`    // io_uring_enter calls that waited for completions
	Wakes    uint64 `json:"wakes"`    // eventfd wake-ups of the ring by workers
}

// queueStats is one queue's Stats. The ring thread alone writes them;
// Stats reads them from any goroutine.
type queueStats struct {
	requests, inline, waits, wakes atomic.Uint64
}

// Stats sums the queues' counters.
func (d *Device) Stats() Stats {
	var s Stats
	for _, q := range d.queues {
		s.Requests += q.stats.requests.Load()
		s.Inline += q.stats.inline.Load()
		s.Waits += q.stats.waits.Load()
		s.Wakes += q.stats.wakes.Load()
	}
	return s
}
