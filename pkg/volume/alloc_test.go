//go:build !race

package volume

import (
	"context"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

// TestRequestsDoNotAllocate: once the buffer pools are warm, reads and
// writes, whole-sector or not (through blockdev.ByteGranular), cost no
// allocation. (Under the race
// detector sync.Pool drops some Puts on purpose, so this only runs
// without it.)
func TestRequestsDoNotAllocate(t *testing.T) {
	ctx := context.Background()
	v := blockdev.ByteGranular(newTestVolume(t, Config{SectorSize: 4096, Size: 1 << 20}))
	for _, c := range []struct {
		name string
		off  int64
		n    int
	}{
		{"aligned 4K", 8192, 4096},
		{"unaligned", 8192 + 100, 5000},
		{"aligned 64K", 64 << 10, 64 << 10},
	} {
		p := make([]byte, c.n)
		for name, op := range map[string]func() error{
			"read":  func() error { return v.ReadAt(ctx, p, c.off) },
			"write": func() error { return v.WriteAt(ctx, p, c.off, false) },
		} {
			if err := op(); err != nil {
				t.Fatalf("%s %s: %v", c.name, name, err)
			}
			if a := testing.AllocsPerRun(50, func() { _ = op() }); a != 0 {
				t.Errorf("%s %s: %v allocations per request, want 0", c.name, name, a)
			}
		}
	}
}
