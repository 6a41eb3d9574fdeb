// Package xts implements AES-XTS (IEEE 1619) on whole disk sectors with the
// "plain64" tweak rule used by dm-crypt and LUKS2: the tweak of a sector is
// a 64-bit sector number, little-endian in a 16-byte block.
//
// The caller says where the tweaks start and how they step, because LUKS2
// (and dm-crypt without iv_large_sectors) counts tweaks in 512-byte units
// whatever the sector size: consecutive 4096-byte sectors step by 8.
package xts

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
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
	data, tweak cipher.Block
	closed      bool
}

// New returns a Cipher for key, which is the data key followed by the
// tweak key (32 bytes for AES-128-XTS, 64 for AES-256-XTS).
func New(key []byte) (*Cipher, error) {
	if len(key) != 32 && len(key) != 64 {
		return nil, ErrKeySize
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
	return &Cipher{data: d, tweak: t}, nil
}

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

// Close forgets the key. Later calls fail with ErrClosed.
//
// The standard library's AES key schedule cannot be wiped from here; the
// assembly paths keep their own schedules, which Close zeroes.
func (c *Cipher) Close() error {
	c.data, c.tweak, c.closed = nil, nil, true
	return nil
}

func checkArgs(dst, src []byte, sectorSize int) error {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return ErrSectorSize
	}
	if len(src)%sectorSize != 0 {
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
	var t [16]byte
	for off := 0; off < len(src); off += sectorSize {
		binary.LittleEndian.PutUint64(t[:8], tweak)
		clear(t[8:])
		c.tweak.Encrypt(t[:], t[:])
		cryptSectorGeneric(c.data, dst[off:off+sectorSize], src[off:off+sectorSize], &t, encrypt)
		tweak += step
	}
	return nil
}

// cryptSectorGeneric runs XTS over one sector with the encrypted tweak t,
// one block at a time.
func cryptSectorGeneric(b cipher.Block, dst, src []byte, t *[16]byte, encrypt bool) {
	var x [16]byte
	lo := binary.LittleEndian.Uint64(t[:8])
	hi := binary.LittleEndian.Uint64(t[8:])
	for i := 0; i < len(src); i += 16 {
		binary.LittleEndian.PutUint64(x[:8], binary.LittleEndian.Uint64(src[i:])^lo)
		binary.LittleEndian.PutUint64(x[8:], binary.LittleEndian.Uint64(src[i+8:])^hi)
		if encrypt {
			b.Encrypt(x[:], x[:])
		} else {
			b.Decrypt(x[:], x[:])
		}
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(x[:8])^lo)
		binary.LittleEndian.PutUint64(dst[i+8:], binary.LittleEndian.Uint64(x[8:])^hi)
		// Multiply the tweak by x in GF(2^128), little-endian bit order.
		carry := hi >> 63
		hi = hi<<1 | lo>>63
		lo = lo<<1 ^ carry*0x87
	}
	clear(x[:])
}
