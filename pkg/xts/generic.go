package xts

import (
	"crypto/cipher"
	"encoding/binary"
)

// cryptGeneric is the pure-Go path, for CPUs without AES-NI and as the
// reference the assembly paths are tested against.
func (c *Cipher) cryptGeneric(dst, src []byte, sectorSize int, tweak, step uint64, encrypt bool) {
	var t [16]byte
	for off := 0; off < len(src); off += sectorSize {
		binary.LittleEndian.PutUint64(t[:8], tweak)
		clear(t[8:])
		c.tweak.Encrypt(t[:], t[:])
		cryptUnitGeneric(c.data, dst[off:off+sectorSize], src[off:off+sectorSize], &t, encrypt)
		tweak += step
	}
	clear(t[:])
}

// cryptUnitGeneric runs XTS over one data unit (any whole number of
// blocks) with the encrypted tweak t, one block at a time.
func cryptUnitGeneric(b cipher.Block, dst, src []byte, t *[16]byte, encrypt bool) {
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
