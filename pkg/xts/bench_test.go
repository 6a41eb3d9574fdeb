package xts

import (
	"fmt"
	"runtime"
	"testing"
)

// benchmarkPaths measures one call per buffer of size bytes (one sector of
// size bytes when size <= 4096, else 4096-byte sectors), per path. Besides
// the usual wall-clock MB/s it reports MB per CPU second of the thread
// (cpu-MB/s), which other load on a shared machine distorts less, and which
// is what openssl speed and encblk benchmark report.
func benchmarkPaths(b *testing.B, encrypt bool) {
	for _, p := range paths {
		for _, size := range []int{512, 4096, 1 << 20} {
			ss := min(size, 4096)
			b.Run(fmt.Sprintf("%s/%d", p, size), func(b *testing.B) {
				c, err := newPath(make([]byte, 64), p)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				f := c.EncryptSectors
				if !encrypt {
					f = c.DecryptSectors
				}
				buf := make([]byte, size)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.SetBytes(int64(size))
				start, err := threadCPUTime()
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for b.Loop() {
					if err := f(buf, buf, ss, uint64(n), uint64(ss/512)); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if end, err := threadCPUTime(); err == nil && end > start {
					b.ReportMetric(float64(n)*float64(size)/(end-start).Seconds()/1e6, "cpu-MB/s")
				}
			})
		}
	}
}

func BenchmarkEncrypt(b *testing.B) { benchmarkPaths(b, true) }
func BenchmarkDecrypt(b *testing.B) { benchmarkPaths(b, false) }
