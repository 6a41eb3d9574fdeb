package xts

import (
	"math/rand/v2"
	"testing"
)

// FuzzAgainstXCrypto compares every path with golang.org/x/crypto/xts over
// random keys, sector sizes, sector counts, first tweaks and steps.
func FuzzAgainstXCrypto(f *testing.F) {
	f.Add(uint64(0), uint8(0), uint8(1), uint64(0), uint64(1), false)
	f.Add(uint64(1), uint8(3), uint8(2), uint64(1<<40), uint64(8), true)
	f.Add(uint64(2), uint8(1), uint8(33), ^uint64(0)-3, uint64(2), true)
	f.Add(uint64(3), uint8(2), uint8(7), uint64(12345), ^uint64(0), false)
	f.Fuzz(func(t *testing.T, seed uint64, ssIndex, count uint8, tweak, step uint64, aes128 bool) {
		r := rand.New(rand.NewPCG(seed, 7))
		keyLen := 64
		if aes128 {
			keyLen = 32
		}
		key := randBytes(r, keyLen)
		ss := sectorSizes[int(ssIndex)%len(sectorSizes)]
		n := int(count)%40 + 1
		src := randBytes(r, ss*n)
		for _, p := range paths {
			c, err := newPath(key, p)
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, c, key, src, ss, tweak, step)
			c.Close()
		}
	})
}
