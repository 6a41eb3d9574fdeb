// Package iouring is a minimal io_uring core on golang.org/x/sys/unix (no
// cgo): ring setup (optionally with 128-byte submission entries, which
// IORING_OP_URING_CMD needs for commands larger than 16 bytes), the mmap of
// the submission queue, completion queue and submission entries, and
// submit-and-wait. It holds what pkg/ublk needs and little else: no
// registered files or buffers, no SQPOLL.
//
// A Ring is not safe for concurrent use: one goroutine fills entries,
// submits and reaps. Some kernel drivers (ublk among them) accept commands
// only from the thread that issued the first ones; such a caller locks its
// goroutine to its OS thread (runtime.LockOSThread) for the ring's life.
//
// Go's runtime preempts goroutines with signals (SIGURG), which interrupt a
// thread blocked in io_uring_enter with EINTR; Submit and Wait retry, and
// entries the kernel did not consume before the signal are submitted again
// (the count comes from the kernel's submission queue head, not from the
// interrupted call).
package iouring
