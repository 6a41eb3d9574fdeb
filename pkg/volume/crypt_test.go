package volume

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// Large requests are split across the crypt helpers, or run on the caller
// when every helper is busy. Many at once exercise both paths; every
// request must read back exactly what it wrote, through either path.
func TestConcurrentLargeRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, ss := range []int{512, 4096} {
		t.Run(fmt.Sprintf("ss%d", ss), func(t *testing.T) {
			t.Parallel()
			const reqs, n = 8, 2*parallelChunk + 3*4096 // split in two or more shares
			v := newTestVolume(t, Config{SectorSize: ss, Size: reqs * (n + 4096)})
			var wg sync.WaitGroup
			errs := make([]error, reqs)
			for i := range reqs {
				wg.Go(func() {
					off := int64(i * (n + 4096))
					want := bytes.Repeat([]byte{byte(i + 1)}, n)
					for range 3 {
						if err := v.WriteAt(ctx, bytes.Clone(want), off, false); err != nil {
							errs[i] = err
							return
						}
						got := make([]byte, n)
						if err := v.ReadAt(ctx, got, off); err != nil {
							errs[i] = err
							return
						}
						if !bytes.Equal(got, want) {
							errs[i] = fmt.Errorf("request %d read back different data", i)
							return
						}
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
