package xts

import (
	"fmt"
	"testing"
)

// benchmarkPaths measures one call per buffer of size bytes (one sector of
// size bytes when size <= 4096, else 4096-byte sectors), per path.
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
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				for b.Loop() {
					if encrypt {
						err = c.EncryptSectors(buf, buf, ss, 0, uint64(ss/512))
					} else {
						err = c.DecryptSectors(buf, buf, ss, 0, uint64(ss/512))
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncrypt(b *testing.B) { benchmarkPaths(b, true) }
func BenchmarkDecrypt(b *testing.B) { benchmarkPaths(b, false) }
