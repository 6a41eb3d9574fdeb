package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come from per-size-class pools (powers of two from 4 KiB
// to maxPayload), so a request costs no allocation once the pools are warm.
const (
	minBufShift = 12
	maxBufShift = 25 // maxPayload
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// bufClass is the pool index of the smallest class holding n bytes.
func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of at least n bytes (n <= maxPayload); its
// contents are undefined.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if v := bufPools[c].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 1<<(c+minBufShift))
	return &b
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b *[]byte) {
	c := bufClass(cap(*b))
	*b = (*b)[:cap(*b)]
	bufPools[c].Put(b)
}
