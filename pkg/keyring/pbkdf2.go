package keyring

import (
	"crypto/hmac"
	"encoding/binary"
	"hash"
)

// pbkdf2Key is PBKDF2 (RFC 8018) with HMAC over h. It is written here rather
// than taken from crypto/pbkdf2 because that API takes the password as a
// string, an unwipeable copy of the secret on the heap; this one reads the
// password from the caller's (protected) slice and fills dst.
func pbkdf2Key(dst, password, salt []byte, iter int, h func() hash.Hash) {
	prf := hmac.New(h, password)
	hLen := prf.Size()
	u := make([]byte, hLen)
	t := make([]byte, hLen)
	var ctr [4]byte
	for block, off := uint32(1), 0; off < len(dst); block++ {
		binary.BigEndian.PutUint32(ctr[:], block)
		prf.Reset()
		prf.Write(salt)
		prf.Write(ctr[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for i := 1; i < iter; i++ {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			for j := range t {
				t[j] ^= u[j]
			}
		}
		off += copy(dst[off:], t)
	}
	clear(u)
	clear(t)
	prf.Reset()
}
