package volume

import (
	"context"
	"fmt"
	"testing"
)

// The in-process data path, without NBD: pread/pwrite on a page-cached
// file plus AES-XTS. Run with
//
//	go test -run '^$' -bench . -benchmem ./pkg/volume
func BenchmarkReadAt(b *testing.B)  { benchmarkIO(b, false) }
func BenchmarkWriteAt(b *testing.B) { benchmarkIO(b, true) }

func benchmarkIO(b *testing.B, write bool) {
	ctx := context.Background()
	for _, ss := range []int{512, 4096} {
		for _, n := range []int{4 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("ss%d/%dK", ss, n>>10), func(b *testing.B) {
				const size = 64 << 20
				v := newTestVolume(b, Config{SectorSize: ss, Size: size})
				p := make([]byte, n)
				if err := v.WriteAt(ctx, make([]byte, size/4), 0, false); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(n))
				b.ReportAllocs()
				off := int64(0)
				for b.Loop() {
					var err error
					if write {
						err = v.WriteAt(ctx, p, off, false)
					} else {
						err = v.ReadAt(ctx, p, off)
					}
					if err != nil {
						b.Fatal(err)
					}
					off = (off + int64(n)) % (size / 4)
				}
			})
		}
	}
}
