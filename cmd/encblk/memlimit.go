package main

import (
	"os"
	"runtime/debug"
)

// serveMemoryLimit is the Go runtime's soft memory limit while a server
// runs. Request buffers are pooled, but with the default GOGC the heap may
// grow to twice what is in flight and the pools keep garbage for a cycle,
// so resident memory crept up under sustained mixed load (10 -> 76 MiB in
// a 60 s bench/soak.sh run); with this limit the collector runs earlier
// and it stays flat (about 45-50 MiB). The buffers are pointer-free, so
// the extra collections are cheap. A heap legitimately larger than this
// (many connections with deep queues of large requests) only makes the
// collector run more often; the limit is soft. GOMEMLIMIT overrides it.
const serveMemoryLimit = 48 << 20

// limitServeMemory applies serveMemoryLimit unless GOMEMLIMIT is set. It is
// called once the volumes are unlocked, so the KDF's memory during the
// first unlock is not squeezed.
func limitServeMemory() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return
	}
	debug.SetMemoryLimit(serveMemoryLimit)
}
