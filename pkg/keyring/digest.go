package keyring

import (
	"crypto/subtle"
	"fmt"
)

// digestSaltLen is the salt size of a LUKS pbkdf2 volume-key digest.
const digestSaltLen = 32

// verify reports whether key is the volume key this digest describes:
// PBKDF2(key, salt, iterations) must equal the stored digest.
func (d *digest) verify(key []byte) (bool, error) {
	if d.Type != "pbkdf2" {
		return false, fmt.Errorf("%w: digest type %q", ErrUnsupported, d.Type)
	}
	h, err := hashByName(d.Hash)
	if err != nil {
		return false, err
	}
	got := make([]byte, len(d.Digest))
	pbkdf2Key(got, key, d.Salt, d.Iterations, h)
	return subtle.ConstantTimeCompare(got, d.Digest) == 1, nil
}
