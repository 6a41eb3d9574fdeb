package keyring

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/encblk/encblk/internal/secmem"
)

// MaxSecretLen is the largest Secret: key material is small.
const MaxSecretLen = secmem.MaxSize

// Secret is key material in protected memory: locked into RAM, excluded
// from core dumps, out of the Go heap, wiped by Destroy. It is what a KEK
// source hands the keyring (Identity.Unwrap, Recipient.Wrap): the byte
// string fed to a keyslot's KDF.
//
// A Secret is itself a KEK, the one LUKS calls a passphrase or key file: as
// an Identity it offers itself to every keyslot, as a Recipient it makes a
// keyslot with no token. Sources that read a passphrase or a key file
// return one.
type Secret struct {
	buf *secmem.Buffer
}

var (
	_ Identity  = (*Secret)(nil)
	_ Recipient = (*Secret)(nil)
)

// NewSecret returns a zeroed Secret of n bytes (1 to MaxSecretLen), for
// the caller to fill through Bytes.
func NewSecret(n int) (*Secret, error) {
	b, err := secmem.New(n)
	if err != nil {
		return nil, err
	}
	return &Secret{b}, nil
}

// SecretFromBytes moves p into a new Secret: p is copied, then wiped.
func SecretFromBytes(p []byte) (*Secret, error) {
	b, err := secmem.FromBytes(p)
	if err != nil {
		return nil, err
	}
	return &Secret{b}, nil
}

// Bytes returns the secret's bytes, valid until Destroy. Do not copy them
// to unprotected memory.
func (s *Secret) Bytes() []byte {
	if s == nil || s.buf == nil {
		return nil
	}
	return s.buf.Bytes()
}

// Len is the secret's length in bytes (0 once destroyed).
func (s *Secret) Len() int {
	if s == nil || s.buf == nil {
		return 0
	}
	return s.buf.Len()
}

// Clone returns a copy in new protected memory.
func (s *Secret) Clone() (*Secret, error) {
	if s.Len() == 0 {
		return nil, errors.New("keyring: the secret has been destroyed")
	}
	c, err := NewSecret(s.Len())
	if err != nil {
		return nil, err
	}
	copy(c.Bytes(), s.Bytes())
	return c, nil
}

// Equal reports whether s and t hold the same bytes (in constant time
// for equal lengths).
func (s *Secret) Equal(t *Secret) bool {
	a, b := s.Bytes(), t.Bytes()
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// Destroy wipes the secret. It is safe to call more than once, and on nil.
func (s *Secret) Destroy() {
	if s != nil {
		s.buf.Destroy()
	}
}

// Unwrap implements Identity: the secret is tried on every keyslot (a
// copy; the caller destroys it). With no keyslot (ks nil) it is returned
// as well: it does not depend on one.
func (s *Secret) Unwrap(ctx context.Context, ks *Keyslot) (*Secret, error) {
	return s.Clone()
}

// Wrap implements Recipient: the new keyslot opens with the secret (a
// copy); it has no token.
func (s *Secret) Wrap(ctx context.Context) (*Secret, []json.RawMessage, error) {
	c, err := s.Clone()
	return c, nil, err
}
