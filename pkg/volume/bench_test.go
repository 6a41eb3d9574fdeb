package volume

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

// The in-process data path, without a frontend: pread/pwrite on a
// page-cached file plus AES-XTS, aligned requests on the volume itself
// (as ublk sends them) and through blockdev.ByteGranular (as the NBD
// server does: the "/nbd" runs). Run with
//
//	go test -run '^$' -bench . -benchmem ./pkg/volume
func BenchmarkReadAt(b *testing.B)  { benchmarkIO(b, false) }
func BenchmarkWriteAt(b *testing.B) { benchmarkIO(b, true) }

func benchmarkIO(b *testing.B, write bool) {
	ctx := context.Background()
	for _, ss := range []int{512, 4096} {
		for _, n := range []int{4 << 10, 1 << 20} {
			for _, nbd := range []bool{false, true} {
				name := fmt.Sprintf("ss%d/%dK", ss, n>>10)
				if nbd {
					name += "/nbd"
				}
				b.Run(name, func(b *testing.B) {
					const size = 64 << 20
					v := newTestVolume(b, Config{SectorSize: ss, Size: size})
					var d blockdev.Device = v.Volume
					if nbd {
						d = blockdev.ByteGranular(v.Volume)
					}
					p := make([]byte, n)
					if err := v.WriteAt(ctx, make([]byte, size/4), 0, false); err != nil {
						b.Fatal(err)
					}
					b.SetBytes(int64(n))
					b.ReportAllocs()
					off := int64(0)
					for b.Loop() {
						if err := benchRequest(ctx, d, write, p, off); err != nil {
							b.Fatal(err)
						}
						off = (off + int64(n)) % (size / 4)
					}
				})
			}
		}
	}
}

// BenchmarkParallel is many goroutines doing 4 KiB requests on one volume,
// as an NBD connection's workers (and several connections) do: the cost of
// admitting concurrent requests (acquire/release) shows here.
func BenchmarkParallel(b *testing.B) {
	ctx := context.Background()
	for _, write := range []bool{false, true} {
		b.Run(map[bool]string{false: "ReadAt", true: "WriteAt"}[write], func(b *testing.B) {
			const size, n = 16 << 20, 4 << 10
			v := newTestVolume(b, Config{SectorSize: 4096, Size: size})
			if err := v.WriteAt(ctx, make([]byte, size), 0, false); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetBytes(n)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				p := make([]byte, n)
				off := next.Add(1<<20) % size
				for pb.Next() {
					if err := benchRequest(ctx, v.Volume, write, p, off); err != nil {
						b.Error(err)
						return
					}
					off = (off + n) % size
				}
			})
		})
	}
}

// benchRequest is one request of a benchmark: a write or a read of p at off.
func benchRequest(ctx context.Context, v blockdev.Device, write bool, p []byte, off int64) error {
	if write {
		return v.WriteAt(ctx, p, off, false)
	}
	return v.ReadAt(ctx, p, off)
}
