package keyring

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// hashByName returns the hash constructor for a LUKS hash name. sha1 is
// accepted for LUKS1 volumes and old digests; whirlpool and ripemd160 are
// not supported.
func hashByName(name string) (func() hash.Hash, error) {
	switch name {
	case "sha1":
		return sha1.New, nil
	case "sha256":
		return sha256.New, nil
	case "sha384":
		return sha512.New384, nil
	case "sha512":
		return sha512.New, nil
	}
	return nil, fmt.Errorf("%w: hash %q", ErrUnsupported, name)
}
