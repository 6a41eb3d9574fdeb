package keyring

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash"
)

// The anti-forensic splitter (LUKS1 "AF", also used by LUKS2 keyslots)
// spreads a key over stripes blocks so that destroying any part of the
// keyslot area destroys the key: all stripes are needed to recover it.
//
//	d[0..n-2] random;  buf = H(buf ^ d[i]) for each of them
//	d[n-1] = buf ^ key
//
// H is a "diffusion": the block is hashed in hash-sized pieces, piece i
// replaced by hash(be32(i) || piece), the last piece truncated.

// afStripes is the stripe count LUKS uses.
const afStripes = 4000

// sectorSize512 is the unit of keyslot area encryption and of LUKS1 offsets.
const sectorSize512 = 512

// afSectors is the number of 512-byte sectors an AF-split key occupies.
func afSectors(keyLen, stripes int) uint64 {
	return (uint64(keyLen)*uint64(stripes) + sectorSize512 - 1) / sectorSize512
}

func diffuse(buf []byte, newHash func() hash.Hash) {
	h := newHash()
	size := h.Size()
	var ctr [4]byte
	var sum []byte
	for i, off := uint32(0), 0; off < len(buf); i, off = i+1, off+size {
		end := min(off+size, len(buf))
		binary.BigEndian.PutUint32(ctr[:], i)
		h.Reset()
		h.Write(ctr[:])
		h.Write(buf[off:end])
		sum = h.Sum(sum[:0])
		copy(buf[off:end], sum)
	}
	clear(sum)
	h.Reset()
}

// afSplit writes the split form of key (len(key)*stripes bytes) to dst.
func afSplit(dst, key []byte, stripes int, newHash func() hash.Hash) error {
	n := len(key)
	if len(dst) < n*stripes {
		return fmt.Errorf("AF buffer too small")
	}
	buf := make([]byte, n)
	defer clear(buf)
	if _, err := rand.Read(dst[:n*(stripes-1)]); err != nil {
		return fmt.Errorf("random stripes: %w", err)
	}
	for i := 0; i < stripes-1; i++ {
		xorInto(buf, dst[i*n:(i+1)*n])
		diffuse(buf, newHash)
	}
	last := dst[(stripes-1)*n : stripes*n]
	for i := range last {
		last[i] = buf[i] ^ key[i]
	}
	return nil
}

// afMerge recovers the key (len(key) bytes) from its split form src.
func afMerge(key, src []byte, stripes int, newHash func() hash.Hash) error {
	n := len(key)
	if len(src) < n*stripes {
		return fmt.Errorf("AF buffer too small")
	}
	buf := make([]byte, n)
	defer clear(buf)
	for i := 0; i < stripes-1; i++ {
		xorInto(buf, src[i*n:(i+1)*n])
		diffuse(buf, newHash)
	}
	last := src[(stripes-1)*n : stripes*n]
	for i := range key {
		key[i] = buf[i] ^ last[i]
	}
	return nil
}

func xorInto(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
