//go:build !race

package bufpool

import "testing"

// Under the race detector sync.Pool drops some Puts on purpose, so this
// only runs without it.
func TestGetPutNoAlloc(t *testing.T) {
	for _, n := range []int{512, 4096, 64 << 10, 1 << 20} {
		Put(Get(n))
		if a := testing.AllocsPerRun(100, func() { Put(Get(n)) }); a != 0 {
			t.Errorf("Get(%d)+Put: %v allocations, want 0", n, a)
		}
	}
}
