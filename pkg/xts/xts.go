// Package xts implements AES-XTS (IEEE 1619) on whole disk sectors with the
// "plain64" tweak rule used by dm-crypt and LUKS2: the tweak of a sector is
// a 64-bit sector number, little-endian in a 16-byte block.
//
// The caller says where the tweaks start and how they step, because LUKS2
// (and dm-crypt without iv_large_sectors) counts tweaks in 512-byte units
// whatever the sector size: consecutive 4096-byte sectors step by 8.
//
// On amd64 the work is done in assembly, chosen at run time from what the
// CPU offers (Cipher.Implementation names it): VAES with AVX-512 (32 blocks
// in flight in zmm registers), VAES with AVX2 (ymm), or AES-NI (xmm, eight
// blocks in flight). All of them compute the tweaks of many blocks at once
// with vector shifts and carry-less multiplications, encrypt the tweaks of
// up to 32 sectors together, and keep their round keys in locked,
// non-dumpable memory that Close wipes. Elsewhere, and on CPUs without
// AES-NI, a pure-Go implementation over crypto/aes runs. Each
// implementation is tested against golang.org/x/crypto/xts, the IEEE 1619
// and NIST vectors and OpenSSL on every CPU that runs it; `encblk
// benchmark` measures the one in use.
package xts

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"

	"github.com/encblk/encblk/internal/secmem"
)

// Errors returned for bad arguments; the cipher never panics on them.
var (
	ErrKeySize    = errors.New("xts: key must be 32 bytes (AES-128-XTS) or 64 bytes (AES-256-XTS)")
	ErrSectorSize = errors.New("xts: sector size must be 512, 1024, 2048 or 4096")
	ErrLength     = errors.New("xts: length is not a multiple of the sector size")
	ErrOverlap    = errors.New("xts: dst and src overlap but are not the same buffer")
	ErrClosed     = errors.New("xts: cipher is closed")
)

// Cipher is an AES-XTS cipher with a fixed key. It is safe for concurrent
// use until Close.
type Cipher struct {
	path path
	// Assembly paths: the expanded keys, in protected memory.
	ks  *schedule
	mem *secmem.Buffer
	// Pure-Go path.
	data, tweak cipher.Block
	closed      bool
}

// New returns a Cipher for key, which is the data key followed by the
// tweak key (32 bytes for AES-128-XTS, 64 for AES-256-XTS). It uses the
// fastest implementation the CPU supports (see Implementation). New does
// not keep key; the caller wipes it. The assembly implementations put the
// key schedule in one page of locked memory (internal/secmem); New fails
// rather than fall back to unprotected memory when RLIMIT_MEMLOCK is spent.
func New(key []byte) (*Cipher, error) {
	return newPath(key, paths[0])
}

// newPath is New with a given implementation, which the CPU must support.
func newPath(key []byte, p path) (*Cipher, error) {
	if len(key) != 32 && len(key) != 64 {
		return nil, ErrKeySize
	}
	c := &Cipher{path: p}
	if p != pathGeneric {
		if err := c.initSchedule(key); err != nil {
			return nil, err
		}
		return c, nil
	}
	half := len(key) / 2
	d, err := aes.NewCipher(key[:half])
	if err != nil {
		return nil, fmt.Errorf("xts: %w", err)
	}
	t, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, fmt.Errorf("xts: %w", err)
	}
	c.data, c.tweak = d, t
	return c, nil
}

// Implementation names the code path the cipher runs: "vaes-avx512",
// "vaes-avx2", "aesni" (amd64 assembly) or "generic" (pure Go).
func (c *Cipher) Implementation() string { return c.path.String() }

// EncryptSectors encrypts the consecutive sectors of src into dst. The
// first sector has tweak firstTweak, each next one the previous plus
// tweakStep. dst and src may be the same buffer (in place) but must not
// otherwise overlap; len(dst) must be at least len(src).
func (c *Cipher) EncryptSectors(dst, src []byte, sectorSize int, firstTweak, tweakStep uint64) error {
	return c.crypt(dst, src, sectorSize, firstTweak, tweakStep, true)
}

// DecryptSectors is the inverse of EncryptSectors.
func (c *Cipher) DecryptSectors(dst, src []byte, sectorSize int, firstTweak, tweakStep uint64) error {
	return c.crypt(dst, src, sectorSize, firstTweak, tweakStep, false)
}

// Close forgets the key: the assembly paths' round keys live in locked,
// non-dumpable memory that Close wipes and unmaps. The pure-Go path (used
// only on CPUs without AES-NI) holds crypto/aes ciphers, whose schedules
// cannot be wiped from here; Close drops them for the garbage collector.
// Later calls fail with ErrClosed. Close must not run concurrently with
// other methods; calling it twice is harmless.
func (c *Cipher) Close() error {
	if c.mem != nil {
		c.mem.Destroy()
	}
	c.ks, c.mem, c.data, c.tweak, c.closed = nil, nil, nil, nil, true
	return nil
}

func checkArgs(dst, src []byte, sectorSize int) error {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return ErrSectorSize
	}
	if len(src)&(sectorSize-1) != 0 { // a power of two: no division
		return ErrLength
	}
	if len(dst) < len(src) {
		return fmt.Errorf("xts: dst is shorter than src (%d < %d)", len(dst), len(src))
	}
	if len(src) > 0 && &dst[0] != &src[0] && overlaps(dst[:len(src)], src) {
		return ErrOverlap
	}
	return nil
}

func (c *Cipher) crypt(dst, src []byte, sectorSize int, tweak, step uint64, encrypt bool) error {
	if c.closed {
		return ErrClosed
	}
	if err := checkArgs(dst, src, sectorSize); err != nil {
		return err
	}
	if c.path == pathGeneric {
		c.cryptGeneric(dst, src, sectorSize, tweak, step, encrypt)
	} else {
		c.cryptAsm(dst, src, sectorSize, tweak, step, encrypt)
	}
	return nil
}
