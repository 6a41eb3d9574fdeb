package keyring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/encblk/encblk/internal/secmem"
)

// Identity is a KEK that can open keyslots, in the spirit of age's
// Identity. Unwrap returns the secret that is fed to keyslot ks's KDF (a
// passphrase, the bytes of a key file, a secret a key server decrypted from
// one of ks.Tokens…), in protected memory that the keyring destroys after
// use. An Identity that does not belong to ks returns an error wrapping
// ErrNoMatchingKeyslot, and the keyring tries the next keyslot; any other
// error stops the unlock.
type Identity interface {
	Unwrap(ctx context.Context, ks *Keyslot) (*secmem.Buffer, error)
}

// Recipient is a KEK that a new keyslot can be made for, in the spirit of
// age's Recipient. Wrap returns the secret the new keyslot's KDF will take,
// and tokens (JSON objects with at least a "type") that the keyring stores
// bound to the new keyslot in the same metadata update; their "keyslots"
// field is set by the keyring.
type Recipient interface {
	Wrap(ctx context.Context) (secret *secmem.Buffer, tokens []json.RawMessage, err error)
}

// MaxPassphraseLen is the longest passphrase read from a terminal or a
// passphrase file, as cryptsetup.
const MaxPassphraseLen = 512

// MaxKeyFileLen is the largest key file accepted (it must fit in one
// protected buffer).
const MaxKeyFileLen = secmem.MaxSize

// secret is a KEK that is a byte string fed straight to the keyslot KDF;
// that is what both a passphrase and a key file are in LUKS.
type secret struct {
	buf *secmem.Buffer
}

func (s *secret) copyOut() (*secmem.Buffer, error) {
	if s == nil || s.buf == nil || s.buf.Len() == 0 {
		return nil, errors.New("keyring: KEK has been destroyed")
	}
	out, err := secmem.New(s.buf.Len())
	if err != nil {
		return nil, err
	}
	copy(out.Bytes(), s.buf.Bytes())
	return out, nil
}

// Unwrap implements Identity: the secret is tried on every keyslot.
func (s *secret) Unwrap(ctx context.Context, ks *Keyslot) (*secmem.Buffer, error) {
	return s.copyOut()
}

// Wrap implements Recipient; it adds no tokens.
func (s *secret) Wrap(ctx context.Context) (*secmem.Buffer, []json.RawMessage, error) {
	b, err := s.copyOut()
	return b, nil, err
}

// Destroy wipes the secret.
func (s *secret) Destroy() {
	if s != nil {
		s.buf.Destroy()
	}
}

// Passphrase is a KEK typed by a person (or read from a passphrase file).
type Passphrase struct{ secret }

// NewPassphrase moves p into protected memory (p is wiped). It may be at
// most MaxPassphraseLen bytes and not empty.
func NewPassphrase(p []byte) (*Passphrase, error) {
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if len(p) > MaxPassphraseLen {
		secmem.Wipe(p)
		return nil, fmt.Errorf("passphrase is longer than %d bytes", MaxPassphraseLen)
	}
	b, err := secmem.FromBytes(p)
	if err != nil {
		return nil, err
	}
	return &Passphrase{secret{b}}, nil
}

// KeyFile is a KEK held in a file, typically random bytes on another device
// (a boot drive, a USB key). Every byte counts, a trailing newline
// included, as with cryptsetup's --key-file.
type KeyFile struct{ secret }

// ReadKeyFile reads a whole key file from r into protected memory. It
// fails on an empty file or one larger than MaxKeyFileLen.
func ReadKeyFile(r io.Reader) (*KeyFile, error) {
	buf, err := secmem.New(MaxKeyFileLen)
	if err != nil {
		return nil, err
	}
	defer buf.Destroy()
	n, err := io.ReadFull(r, buf.Bytes())
	switch {
	case err == nil:
		var one [1]byte
		m, _ := r.Read(one[:])
		secmem.Wipe(one[:]) // a byte of the key file (or passphrase)
		if m > 0 {
			return nil, fmt.Errorf("key file is larger than %d bytes", MaxKeyFileLen)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if n == 0 {
		return nil, errors.New("key file is empty")
	}
	out, err := secmem.New(n)
	if err != nil {
		return nil, err
	}
	copy(out.Bytes(), buf.Bytes()[:n])
	return &KeyFile{secret{out}}, nil
}

// OpenKeyFile reads the key file at path.
func OpenKeyFile(path string) (*KeyFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	k, err := ReadKeyFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
