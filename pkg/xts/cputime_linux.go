package xts

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPUTime is the CPU time the calling OS thread has used; callers
// lock the goroutine to its thread.
func threadCPUTime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("xts: thread CPU clock: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}
