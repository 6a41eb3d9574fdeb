//go:build !linux

package xts

import "time"

var processStart = time.Now()

// threadCPUTime falls back to wall-clock time where the thread CPU clock
// is not wired up.
func threadCPUTime() (time.Duration, error) { return time.Since(processStart), nil }
