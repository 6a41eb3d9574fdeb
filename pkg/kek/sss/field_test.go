package sss

import (
	"bytes"
	"math/big"
	"testing"
)

// The field's arithmetic agrees with math/big's for random primes and
// values, edge values included.
func FuzzField(f *testing.F) {
	f.Add(uint64(1), []byte{}, []byte{})
	f.Add(uint64(2), bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Add(uint64(3), []byte{0}, []byte{1})
	// Fixed primes, so that a failing input reproduces: the largest below
	// 2^256, secp256k1's, P-256's and 2^255-19 (256- and 255-bit, like
	// clevis's random ones), and small ones.
	primes := []*big.Int{
		new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(189)),
		hexInt("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f"),
		hexInt("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"),
		new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19)),
		new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 127), big.NewInt(1)),
		big.NewInt(65537), big.NewInt(3),
	}
	for _, p := range primes {
		if !p.ProbablyPrime(20) {
			f.Fatalf("%v is not prime", p)
		}
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

func hexInt(s string) *big.Int {
	x, _ := new(big.Int).SetString(s, 16)
	return x
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
