package bufpool

import (
	"fmt"
	"testing"
)

func TestGet(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		n, cap int
	}{
		{0, MinSize},
		{1, MinSize},
		{MinSize - 1, MinSize},
		{MinSize, MinSize},
		{MinSize + 1, 2 * MinSize},
		{12 << 10, 16 << 10},
		{64 << 10, 64 << 10},
		{1<<20 + 512, 2 << 20},
		{MaxSize, MaxSize},
		{MaxSize + 1, MaxSize + 1}, // too large to pool: exactly n
	} {
		t.Run(fmt.Sprint(c.n), func(t *testing.T) {
			// Twice: a fresh allocation, then (usually) the pooled one.
			for range 2 {
				p := Get(c.n)
				if len(*p) != c.n || cap(*p) != c.cap {
					t.Fatalf("Get(%d): len %d cap %d, want len %d cap %d", c.n, len(*p), cap(*p), c.n, c.cap)
				}
				if !aligned((*p)[:cap(*p)]) {
					t.Fatalf("Get(%d) is not %d-aligned", c.n, Align)
				}
				// The whole capacity is usable.
				(*p)[:cap(*p)][cap(*p)-1] = 1
				Put(p)
			}
		})
	}
}

func TestSizeClass(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ n, class int }{
		{0, 0}, {MinSize, 0}, {MinSize + 1, 1}, {2 * MinSize, 1}, {2*MinSize + 1, 2},
		{MaxSize, maxShift - minShift}, {MaxSize + 1, -1},
	} {
		if got := sizeClass(c.n); got != c.class {
			t.Errorf("sizeClass(%d) = %d, want %d", c.n, got, c.class)
		}
	}
}

// A buffer that is not a whole size class (not from Get) never enters a
// pool, where a later Get would find it too small for its class.
func TestPutForeign(t *testing.T) {
	t.Parallel()
	b := make([]byte, 5000)
	Put(&b)
	for range 4 {
		p := Get(6000)
		if cap(*p) != 2*MinSize {
			t.Fatalf("Get(6000) returned a buffer of capacity %d", cap(*p))
		}
		defer Put(p)
	}
}

// A buffer of a class's exact size that is not aligned never enters the
// pool either: Get promises aligned memory.
func TestPutUnaligned(t *testing.T) {
	t.Parallel()
	big := alloc(2 * MinSize)
	b := big[1 : 1+MinSize : 1+MinSize]
	Put(&b)
	for range 4 {
		p := Get(MinSize)
		if !aligned(*p) {
			t.Fatal("Get returned the unaligned buffer given to Put")
		}
		defer Put(p)
	}
}

func TestAlloc(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, MinSize, 3 * MinSize, 1 << 20, MaxSize + MinSize} {
		b := alloc(n)
		if len(b) != n || cap(b) != n || !aligned(b) {
			t.Errorf("alloc(%d): len %d cap %d aligned %v", n, len(b), cap(b), aligned(b))
		}
	}
}
