// Package bufpool lends out I/O buffers from per-size-class pools, so that
// a request costs no allocation once the pools are warm. Every buffer
// starts on an Align boundary: NBD payload buffers are handed down through
// the volume to internal/backing, whose O_DIRECT path takes only aligned
// memory.
package bufpool

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Buffers come in power-of-two size classes from MinSize to MaxSize bytes;
// larger ones are allocated (aligned) and not pooled.
const (
	minShift = 12
	maxShift = 25

	// MinSize is the smallest class: a Get of fewer bytes still holds one.
	MinSize = 1 << minShift
	// MaxSize is the largest pooled buffer, the largest NBD request
	// encblk accepts (32 MiB).
	MaxSize = 1 << maxShift
	// Align is the address alignment of every buffer.
	Align = 4096
)

// pools holds one sync.Pool per size class. They store *[]byte so that Put
// does not allocate.
var pools [maxShift - minShift + 1]sync.Pool

// Get returns a buffer of length n (contents undefined) and the handle to
// give back to Put. Its capacity is n's size class.
func Get(n int) *[]byte {
	class := sizeClass(n)
	if class < 0 {
		b := alloc(n)
		return &b
	}
	if p, ok := pools[class].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := alloc(1 << (class + minShift))[:n]
	return &b
}

// Put returns a buffer from Get to its pool; one too large to pool, or not
// from Get (not a whole, aligned size class), is left to the garbage
// collector.
func Put(p *[]byte) {
	class := sizeClass(cap(*p))
	if class < 0 || cap(*p) != 1<<(class+minShift) || !aligned((*p)[:1]) {
		return
	}
	pools[class].Put(p)
}

// sizeClass is the pool index for n bytes, or -1 if n is above MaxSize.
func sizeClass(n int) int {
	if n <= MinSize {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}

// alloc allocates n bytes starting at an Align boundary. Go's allocator
// puts power-of-two blocks of 4 KiB and more on such a boundary, so the
// first try normally fits; the runtime does not promise it, hence the
// fallback that over-allocates and skips to the boundary.
func alloc(n int) []byte {
	b := make([]byte, n)
	if aligned(b) {
		return b
	}
	b = make([]byte, n+Align)
	skip := (Align - int(uintptr(unsafe.Pointer(&b[0]))%Align)) % Align
	return b[skip : skip+n : skip+n]
}

func aligned(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Align == 0
}
