package sss

import (
	"bytes"
	"crypto/rand"
	"math/big"
	"testing"
)

// The field's arithmetic agrees with math/big's for random primes and
// values, edge values included.
func FuzzField(f *testing.F) {
	f.Add(uint64(1), []byte{}, []byte{})
	f.Add(uint64(2), bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Add(uint64(3), []byte{0}, []byte{1})
	primes := []*big.Int{
		// clevis-sized primes, and the largest prime below 2^256, and small ones
		new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(189)),
		big.NewInt(3), big.NewInt(65537), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 127), big.NewInt(1)),
	}
	for range 4 {
		p, err := rand.Prime(rand.Reader, 256)
		if err != nil {
			f.Fatal(err)
		}
		primes = append(primes, p)
	}
	f.Fuzz(func(t *testing.T, which uint64, ab, bb []byte) {
		p := primes[which%uint64(len(primes))]
		fd, err := newField(p)
		if err != nil {
			t.Fatal(err)
		}
		ab, bb = pad32(ab), pad32(bb)
		a, b := new(big.Int).SetBytes(ab), new(big.Int).SetBytes(bb)
		ea, eb := fd.load(ab), fd.load(bb)
		a.Mod(a, p)
		b.Mod(b, p)
		check := func(op string, e elem, want *big.Int) {
			t.Helper()
			got := make([]byte, 32)
			fd.store(&e, got)
			if new(big.Int).SetBytes(got).Cmp(want) != 0 {
				t.Fatalf("p=%v a=%v b=%v: %s = %x, want %v", p, a, b, op, got, want)
			}
		}
		check("a", ea, a)
		check("a+b", fd.add(&ea, &eb), new(big.Int).Mod(new(big.Int).Add(a, b), p))
		check("a-b", fd.sub(&ea, &eb), new(big.Int).Mod(new(big.Int).Sub(a, b), p))
		check("a*b", fd.mul(&ea, &eb), new(big.Int).Mod(new(big.Int).Mul(a, b), p))
		want := new(big.Int).ModInverse(a, p)
		if want == nil {
			want = new(big.Int)
		}
		check("1/a", fd.inv(&ea), want)
		r, err := fd.random(bytes.NewReader(append(bytes.Repeat(ab, 64), bytes.Repeat([]byte{0}, 32)...)))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 32)
		fd.store(&r, out)
		if new(big.Int).SetBytes(out).Cmp(p) >= 0 {
			t.Fatalf("random %x is not below p=%v", out, p)
		}
	})
}

func pad32(b []byte) []byte {
	if len(b) > 32 {
		b = b[:32]
	}
	return append(make([]byte, 32-len(b)), b...)
}

func TestNewFieldRefusesBadPrimes(t *testing.T) {
	for _, p := range []*big.Int{big.NewInt(0), big.NewInt(2), big.NewInt(-7), big.NewInt(1), big.NewInt(10), new(big.Int).Lsh(big.NewInt(1), 256)} {
		if _, err := newField(p); err == nil {
			t.Errorf("newField(%v) accepted", p)
		}
	}
}
