// Package secmem holds key material in memory that is locked into RAM
// (mlock: never swapped), excluded from core dumps (MADV_DONTDUMP), kept
// out of the Go heap (so the garbage collector never copies it), and wiped
// when destroyed.
package secmem

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrDestroyed is returned when a destroyed Buffer is used.
var ErrDestroyed = errors.New("secmem: buffer destroyed")

// MaxSize bounds one Buffer; key material is small.
const MaxSize = 1 << 20

// Buffer is a fixed-size region of protected memory.
type Buffer struct {
	mu   sync.Mutex
	mem  []byte // whole mapping, page-aligned
	data []byte // the first n bytes of mem
}

// New returns a zeroed Buffer of n bytes, locked in RAM and excluded from
// core dumps. It fails rather than hand out unprotected memory.
func New(n int) (*Buffer, error) {
	if n <= 0 || n > MaxSize {
		return nil, fmt.Errorf("secmem: invalid size %d", n)
	}
	page := unix.Getpagesize()
	size := (n + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("secmem: mmap %d bytes: %w", size, err)
	}
	if err := unix.Mlock(mem); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("secmem: mlock (raise RLIMIT_MEMLOCK?): %w", err)
	}
	if err := unix.Madvise(mem, unix.MADV_DONTDUMP); err != nil {
		unix.Munlock(mem)
		unix.Munmap(mem)
		return nil, fmt.Errorf("secmem: madvise(MADV_DONTDUMP): %w", err)
	}
	return &Buffer{mem: mem, data: mem[:n:n]}, nil
}

// FromBytes copies src into a new Buffer and wipes src.
func FromBytes(src []byte) (*Buffer, error) {
	b, err := New(len(src))
	if err != nil {
		Wipe(src)
		return nil, err
	}
	copy(b.data, src)
	Wipe(src)
	return b, nil
}

// Bytes returns the protected bytes. The slice is valid until Destroy;
// callers must not keep it beyond that or copy it to unprotected memory
// longer than they need.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.data
}

// Len is the buffer's size in bytes (0 once destroyed).
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.data)
}

// Destroy wipes and unmaps the buffer. It is safe to call more than once.
func (b *Buffer) Destroy() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return
	}
	Wipe(b.mem)
	unix.Munlock(b.mem)
	unix.Munmap(b.mem)
	b.mem, b.data = nil, nil
}

// Wipe overwrites p with zeros.
func Wipe(p []byte) {
	clear(p)
}

// SetNonDumpable marks the process non-dumpable (prctl PR_SET_DUMPABLE 0):
// no core dumps, and other unprivileged processes of the same user cannot
// ptrace it or read /proc/PID/mem. Call it before loading keys.
func SetNonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("secmem: prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}
