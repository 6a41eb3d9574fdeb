package daemon

import (
	"context"
	"testing"

	"github.com/encblk/encblk/internal/blockdevtest"
	"github.com/encblk/encblk/pkg/blockdev"
)

// BenchmarkInstrumented is the cost the metrics wrapper adds to a 4 KiB
// read of an in-memory device (compare the two sub-benchmarks).
func BenchmarkInstrumented(b *testing.B) {
	mem := blockdevtest.NewMem(4096, 1<<20)
	m := newMetrics(&Daemon{})
	for _, bc := range []struct {
		name string
		dev  blockdev.Device
	}{{"bare", mem}, {"instrumented", m.instrument("v", mem)}} {
		b.Run(bc.name, func(b *testing.B) {
			p := make([]byte, 4096)
			ctx := context.Background()
			b.SetBytes(4096)
			for i := 0; b.Loop(); i++ {
				if err := bc.dev.ReadAt(ctx, p, int64(i%256)*4096); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
