package sss

import (
	"errors"
	"io"
	"math/big"
	"math/bits"
)

// elem is four little-endian 64-bit limbs: a value of GF(p) in Montgomery
// form (x·2^256 mod p), or (field.p, field.pm2) a plain number. Secrets (the key, the polynomial, the
// shares) live only in elems and byte slices, which the code clears; a
// math/big value could not be wiped (its arithmetic leaves copies on the
// heap). The arithmetic is constant-time in the values; only the public
// prime steers branches.
type elem [4]uint64

// field is GF(p) for a prime p below 2^256: p is public (it is in the
// JWE's header), so setting it up may use math/big.
type field struct {
	p    elem   // p
	pinv uint64 // -p^-1 mod 2^64
	r2   elem   // 2^512 mod p: mul(x, r2) brings x into Montgomery form
	one  elem   // 2^256 mod p: 1 in Montgomery form
	pm2  elem   // p-2: x^(p-2) is x's inverse
	bits int    // p's bit length
}

var errPrime = errors.New("the prime must be odd, above 2 and below 2^256")

func newField(prime *big.Int) (*field, error) {
	if prime.Bit(0) == 0 || prime.BitLen() > 256 || prime.Cmp(big.NewInt(3)) < 0 {
		return nil, errPrime
	}
	f := &field{bits: prime.BitLen()}
	limbs(&f.p, prime)
	limbs(&f.pm2, new(big.Int).Sub(prime, big.NewInt(2)))
	limbs(&f.r2, new(big.Int).Mod(new(big.Int).Lsh(big.NewInt(1), 512), prime))
	limbs(&f.one, new(big.Int).Mod(new(big.Int).Lsh(big.NewInt(1), 256), prime))
	// Newton's iteration for p^-1 mod 2^64: each step doubles the bits
	// that are right (p·p = 1 mod 8 gives three).
	inv := f.p[0]
	for range 5 {
		inv *= 2 - f.p[0]*inv
	}
	f.pinv = -inv
	return f, nil
}

// limbs sets l to x (0 <= x < 2^256), little-endian.
func limbs(l *elem, x *big.Int) {
	var b [32]byte
	x.FillBytes(b[:])
	*l = fromBE(&b)
}

func fromBE(b *[32]byte) elem {
	var l elem
	for i := range l {
		for _, c := range b[24-8*i : 32-8*i] {
			l[i] = l[i]<<8 | uint64(c)
		}
	}
	return l
}

func toBE(l *elem, b []byte) {
	for i := range l {
		for j := range 8 {
			b[31-8*i-j] = byte(l[i] >> (8 * j))
		}
	}
}

// load returns b (32 bytes big-endian, any value below 2^256) mod p, in
// Montgomery form.
func (f *field) load(b []byte) elem {
	var a [32]byte
	copy(a[:], b)
	x := fromBE(&a)
	clear(a[:])
	r := f.mul(&x, &f.r2)
	clear(x[:])
	return r
}

// store writes x (Montgomery form) to b as 32 bytes big-endian.
func (f *field) store(x *elem, b []byte) {
	unit := elem{1}
	y := f.mul(x, &unit)
	toBE(&y, b)
	clear(y[:])
}

// random returns a uniformly random value below p, in Montgomery form:
// draws of p's bit length until one is below p (at most half are not).
func (f *field) random(r io.Reader) (elem, error) {
	n := f.bits
	var b [32]byte
	defer clear(b[:])
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return elem{}, err
		}
		x := fromBE(&b)
		for i := range x { // clear the bits from n up
			switch lo := 64 * i; {
			case n <= lo:
				x[i] = 0
			case n < lo+64:
				x[i] &= 1<<(n-lo) - 1
			}
		}
		_, borrow := sub4(&x, &f.p)
		if borrow == 1 {
			e := f.mul(&x, &f.r2)
			clear(x[:])
			return e, nil
		}
		clear(x[:])
	}
}

// sub4 returns a-b and the borrow.
func sub4(a, b *elem) (elem, uint64) {
	var d elem
	var c uint64
	d[0], c = bits.Sub64(a[0], b[0], 0)
	d[1], c = bits.Sub64(a[1], b[1], c)
	d[2], c = bits.Sub64(a[2], b[2], c)
	d[3], c = bits.Sub64(a[3], b[3], c)
	return d, c
}

// add4 returns a+b and the carry.
func add4(a, b *elem) (elem, uint64) {
	var s elem
	var c uint64
	s[0], c = bits.Add64(a[0], b[0], 0)
	s[1], c = bits.Add64(a[1], b[1], c)
	s[2], c = bits.Add64(a[2], b[2], c)
	s[3], c = bits.Add64(a[3], b[3], c)
	return s, c
}

// reduce returns (carry·2^256 + t) - p if that is not negative, else t;
// t + carry·2^256 < 2p.
func (f *field) reduce(t *elem, carry uint64) elem {
	d, borrow := sub4(t, &f.p)
	// keep t when the subtraction borrowed and there is no carry to pay it
	keep := borrow &^ carry
	mask := -keep
	var r elem
	for i := range r {
		r[i] = t[i]&mask | d[i]&^mask
	}
	return r
}

// mul returns a·b·2^-256 mod p (Montgomery multiplication, CIOS), for
// a < 2^256 and b < p.
func (f *field) mul(a, b *elem) elem {
	var t [6]uint64
	for i := range 4 {
		var c uint64
		for j := range 4 {
			hi, lo := bits.Mul64(a[j], b[i])
			var k uint64
			lo, k = bits.Add64(lo, t[j], 0)
			hi += k
			lo, k = bits.Add64(lo, c, 0)
			hi += k
			t[j], c = lo, hi
		}
		var k uint64
		t[4], k = bits.Add64(t[4], c, 0)
		t[5] = k
		m := t[0] * f.pinv
		hi, lo := bits.Mul64(m, f.p[0])
		_, k = bits.Add64(lo, t[0], 0)
		c = hi + k
		for j := 1; j < 4; j++ {
			hi, lo := bits.Mul64(m, f.p[j])
			lo, k = bits.Add64(lo, t[j], 0)
			hi += k
			lo, k = bits.Add64(lo, c, 0)
			hi += k
			t[j-1], c = lo, hi
		}
		t[3], k = bits.Add64(t[4], c, 0)
		t[4] = t[5] + k
	}
	r := f.reduce((*elem)(t[:4]), t[4])
	clear(t[:])
	return r
}

// add returns a+b mod p.
func (f *field) add(a, b *elem) elem {
	s, c := add4(a, b)
	r := f.reduce(&s, c)
	clear(s[:])
	return r
}

// sub returns a-b mod p.
func (f *field) sub(a, b *elem) elem {
	d, borrow := sub4(a, b)
	mask := -borrow
	p := elem{f.p[0] & mask, f.p[1] & mask, f.p[2] & mask, f.p[3] & mask}
	r, _ := add4(&d, &p) // + p if it borrowed
	clear(d[:])
	return r
}

// inv returns a^-1 (a^(p-2)); the inverse of 0 is 0. The exponent is
// public, so its bits may steer the loop.
func (f *field) inv(a *elem) elem {
	r := f.one
	for i := 255; i >= 0; i-- {
		r = f.mul(&r, &r)
		if f.pm2[i/64]>>(i%64)&1 == 1 {
			r = f.mul(&r, a)
		}
	}
	return r
}

// isZero reports whether a is 0.
func isZero(a *elem) bool {
	return a[0]|a[1]|a[2]|a[3] == 0
}
