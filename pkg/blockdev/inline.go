package blockdev

import "time"

// InlinePolicy decides whether a frontend's request loop (pkg/nbd's
// connection reader, a pkg/ublk queue's ring thread) may run a kind of
// request itself instead of handing it to a worker goroutine. Running it
// saves a goroutine handoff (most of the cost of a 4 KiB request in the
// page cache) but stalls the loop while the request runs, so it is only
// done while such requests are quick: when their average time, less what
// copying their payload at InlineRate would take, rises above Slow (a real
// disk, a locked volume, dirty-page throttling), the loop stops inlining
// them for a while. A policy belongs to one goroutine.
type InlinePolicy struct {
	Slow    time.Duration
	avg     time.Duration // moving average of inline run times
	backoff int           // requests to dispatch before inlining again
}

// InlineSlow is the slow mark for most devices; InlineSlowSerial is the
// one for writes to a device whose writes run one at a time anyway
// (Info.SerialWrites): handing those to workers buys no parallelism, only
// handoffs, lock contention and sysmon retaking Ps from long pwrites, so
// the loop keeps them unless they wait for the disk, when reads should not
// queue behind them. Measured over NBD with 1 MiB sequential writes (qd16)
// on a plain file: 317-356 us of server CPU per request inline, 479-543 us
// on workers (nbdkit 344-436 us). InlineRate is the copy speed a request's
// size is allowed for: page-cache copies run at several GB/s.
const (
	InlineSlow       = 100 * time.Microsecond
	InlineSlowSerial = time.Millisecond
	InlineRate       = 1 << 30 // bytes per second
)

// OK reports whether the next request of this kind may run inline.
func (p *InlinePolicy) OK() bool {
	if p.backoff > 0 {
		p.backoff--
		if p.backoff == 0 {
			p.avg = 0
		}
		return false
	}
	return true
}

// Record notes that an inline request of n bytes took d.
func (p *InlinePolicy) Record(d time.Duration, n uint32) {
	d = max(0, d-time.Duration(n)*time.Second/InlineRate)
	p.avg += (d - p.avg) / 8
	if p.avg > p.Slow {
		p.backoff = 4096
	}
}
