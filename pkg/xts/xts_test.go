package xts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

var sectorSizes = []int{512, 1024, 2048, 4096}

// forEachPath runs f as a subtest for every implementation this CPU runs,
// the pure-Go one included.
func forEachPath(t *testing.T, f func(t *testing.T, p path)) {
	t.Helper()
	for _, p := range paths {
		t.Run(p.String(), func(t *testing.T) { f(t, p) })
	}
}

// mustNew is newPath for tests; the cipher is closed when the test ends.
func mustNew(tb testing.TB, key []byte, p path) *Cipher {
	tb.Helper()
	c, err := newPath(key, p)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// referenceEncrypt encrypts with golang.org/x/crypto/xts, sector by sector.
func referenceEncrypt(tb testing.TB, key, src []byte, ss int, tw, step uint64) []byte {
	tb.Helper()
	c, err := xxts.NewCipher(aesNew, key)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, len(src))
	for off := 0; off < len(src); off += ss {
		c.Encrypt(out[off:off+ss], src[off:off+ss], tw)
		tw += step
	}
	return out
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

// checkRoundTrip encrypts src with c and compares with x/crypto/xts, then
// decrypts in place and expects src back.
func checkRoundTrip(t *testing.T, c *Cipher, key, src []byte, ss int, tw, step uint64) {
	t.Helper()
	want := referenceEncrypt(t, key, src, ss, tw, step)
	got := make([]byte, len(src))
	if err := c.EncryptSectors(got, src, ss, tw, step); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("key %d bytes, sector %d, %d sectors, tweak %#x step %d: ciphertext differs from x/crypto/xts",
			len(key), ss, len(src)/ss, tw, step)
	}
	if err := c.DecryptSectors(got, got, ss, tw, step); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("key %d bytes, sector %d, %d sectors: decrypt(encrypt(x)) != x", len(key), ss, len(src)/ss)
	}
}

func TestAgainstXCrypto(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		r := rand.New(rand.NewPCG(1, uint64(p)))
		for _, keyLen := range []int{32, 64} {
			for _, ss := range sectorSizes {
				for _, count := range []int{1, 2, 3, 5, 33, 70} {
					key := randBytes(r, keyLen)
					c := mustNew(t, key, p)
					checkRoundTrip(t, c, key, randBytes(r, ss*count), ss, r.Uint64(), uint64(ss/512))
				}
			}
		}
	})
}

// TestTweakWraparound crosses 2^64: plain64 tweaks wrap to 0, as dm-crypt's.
func TestTweakWraparound(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		r := rand.New(rand.NewPCG(2, uint64(p)))
		key := randBytes(r, 64)
		c := mustNew(t, key, p)
		for _, step := range []uint64{1, 8, 1 << 63} {
			src := randBytes(r, 512*6)
			checkRoundTrip(t, c, key, src, 512, ^uint64(0)-2, step)
		}
	})
}

// TestLargeCount covers many batches of tweaks and calls split in chunks.
func TestLargeCount(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		r := rand.New(rand.NewPCG(3, uint64(p)))
		key := randBytes(r, 64)
		c := mustNew(t, key, p)
		checkRoundTrip(t, c, key, randBytes(r, 512*1000+512*37), 512, 7, 1)
		checkRoundTrip(t, c, key, randBytes(r, 4096*129), 4096, 1<<40, 8)
		// More than one assembly call (maxCall), tweaks wrapping across them.
		checkRoundTrip(t, c, key, randBytes(r, 2*maxCall+3*1024), 1024, ^uint64(0)-2000, 2)
	})
}

// TestMisaligned uses buffers that start at odd addresses.
func TestMisaligned(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		r := rand.New(rand.NewPCG(4, uint64(p)))
		key := randBytes(r, 64)
		c := mustNew(t, key, p)
		for _, shift := range []int{1, 3, 8, 15, 33} {
			buf := randBytes(r, 2048*3+shift)
			src := buf[shift:]
			checkRoundTrip(t, c, key, src, 2048, uint64(shift), 4)
			dst := make([]byte, len(src)+shift)[shift:]
			if err := c.EncryptSectors(dst, src, 2048, 9, 4); err != nil {
				t.Fatal(err)
			}
			if want := referenceEncrypt(t, key, src, 2048, 9, 4); !bytes.Equal(dst, want) {
				t.Fatalf("shift %d: misaligned dst differs", shift)
			}
		}
	})
}

// TestInPlace: encrypting a buffer onto itself equals encrypting a copy.
func TestInPlace(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		r := rand.New(rand.NewPCG(5, uint64(p)))
		for _, ss := range sectorSizes {
			key := randBytes(r, 32)
			c := mustNew(t, key, p)
			src := randBytes(r, ss*4)
			want := referenceEncrypt(t, key, src, ss, 100, 1)
			if err := c.EncryptSectors(src, src, ss, 100, 1); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(src, want) {
				t.Fatalf("sector %d: in-place ciphertext differs", ss)
			}
		}
	})
}

// TestLongerDst: only len(src) bytes of dst are written.
func TestLongerDst(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		c := mustNew(t, make([]byte, 64), p)
		dst := bytes.Repeat([]byte{0xaa}, 1536)
		if err := c.EncryptSectors(dst, make([]byte, 1024), 512, 0, 1); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst[1024:], bytes.Repeat([]byte{0xaa}, 512)) {
			t.Fatal("bytes past len(src) were written")
		}
		// Empty input is a no-op.
		if err := c.EncryptSectors(nil, nil, 4096, 0, 8); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBadArguments(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		for _, n := range []int{0, 16, 31, 48, 65} {
			if _, err := newPath(make([]byte, n), p); !errors.Is(err, ErrKeySize) {
				t.Errorf("%d-byte key: %v", n, err)
			}
		}
		c, err := newPath(make([]byte, 64), p)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		for _, tc := range []struct {
			name     string
			dst, src []byte
			ss       int
			want     error
		}{
			{"length", buf, buf[:1000], 512, ErrLength},
			{"partial sector", buf, buf[:4096+512], 4096, ErrLength},
			{"sector size 100", buf, buf[:512], 100, ErrSectorSize},
			{"sector size 0", buf, buf[:512], 0, ErrSectorSize},
			{"sector size 8192", buf, buf, 8192, ErrSectorSize},
			{"sector size -512", buf, buf[:512], -512, ErrSectorSize},
			{"overlap ahead", buf[16:], buf[:1024], 512, ErrOverlap},
			{"overlap behind", buf[:1024], buf[512:1536], 512, ErrOverlap},
		} {
			if err := c.EncryptSectors(tc.dst, tc.src, tc.ss, 0, 1); !errors.Is(err, tc.want) {
				t.Errorf("encrypt %s: %v, want %v", tc.name, err, tc.want)
			}
			if err := c.DecryptSectors(tc.dst, tc.src, tc.ss, 0, 1); !errors.Is(err, tc.want) {
				t.Errorf("decrypt %s: %v, want %v", tc.name, err, tc.want)
			}
		}
		if err := c.EncryptSectors(buf[:512], buf[:1024], 512, 0, 1); err == nil {
			t.Error("short dst accepted")
		}
		c.Close()
		c.Close()
		if err := c.EncryptSectors(buf, buf, 512, 0, 1); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
		if err := c.DecryptSectors(buf, buf, 512, 0, 1); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	})
}

// TestPaths checks that the dispatch offers the pure-Go path last and that
// New picks the first.
func TestPaths(t *testing.T) {
	if paths[len(paths)-1] != pathGeneric {
		t.Fatalf("paths %v do not end with the generic path", paths)
	}
	c, err := New(make([]byte, 64))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Implementation(); got != paths[0].String() {
		t.Errorf("New uses %s, want %s", got, paths[0])
	}
	t.Logf("paths on this CPU: %v", paths)
}

// TestConcurrent uses one Cipher from several goroutines at once.
func TestConcurrent(t *testing.T) {
	forEachPath(t, func(t *testing.T, p path) {
		r := rand.New(rand.NewPCG(6, uint64(p)))
		key := randBytes(r, 64)
		c := mustNew(t, key, p)
		srcs := make([][]byte, 4)
		wants := make([][]byte, 4)
		for i := range srcs {
			srcs[i] = randBytes(r, 4096*9)
			wants[i] = referenceEncrypt(t, key, srcs[i], 4096, uint64(i)<<20, 8)
		}
		errs := make(chan error, len(srcs))
		for i := range srcs {
			go func() {
				got := make([]byte, len(srcs[i]))
				for range 50 {
					if err := c.EncryptSectors(got, srcs[i], 4096, uint64(i)<<20, 8); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, wants[i]) {
						errs <- errors.New("concurrent ciphertext differs")
						return
					}
				}
				errs <- nil
			}()
		}
		for range srcs {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})
}
