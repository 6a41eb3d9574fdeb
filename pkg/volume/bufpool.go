package volume

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Pooled buffers come in power-of-two size classes from minPooled to
// maxPooled bytes and are aligned to bufAlign, so a backing opened with
// O_DIRECT can take them as they are. Larger requests allocate.
const (
	minPooledShift = 12 // 4 KiB
	maxPooledShift = 25 // 32 MiB, the largest NBD request encblk accepts
	bufAlign       = 4096
)

// bufPools holds one sync.Pool per size class. Pools store *[]byte so that
// Put does not allocate.
var bufPools [maxPooledShift - minPooledShift + 1]sync.Pool

// getBuf returns a buffer of length n (contents undefined) and the handle
// to give back to putBuf.
func getBuf(n int) *[]byte {
	class := sizeClass(n)
	if class < 0 {
		b := alignedAlloc(n)
		return &b
	}
	if p, ok := bufPools[class].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := alignedAlloc(1 << (class + minPooledShift))[:n]
	return &b
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(p *[]byte) {
	class := sizeClass(cap(*p))
	if class < 0 || cap(*p) != 1<<(class+minPooledShift) {
		return
	}
	bufPools[class].Put(p)
}

// sizeClass is the pool index for n bytes, or -1 if n is too large.
func sizeClass(n int) int {
	if n <= 1<<minPooledShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxPooledShift {
		return -1
	}
	return shift - minPooledShift
}

// alignedAlloc allocates n bytes starting at a bufAlign boundary.
func alignedAlloc(n int) []byte {
	b := make([]byte, n+bufAlign)
	skip := (bufAlign - int(uintptr(unsafe.Pointer(&b[0]))%bufAlign)) % bufAlign
	return b[skip : skip+n : skip+n]
}
