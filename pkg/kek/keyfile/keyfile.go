// Package keyfile is the KEK held in a file, typically random bytes on
// another device (a boot drive, a USB key). Every byte counts, a trailing
// newline included, as with cryptsetup's --key-file.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/encblk/encblk/pkg/keyring"
)

// MaxLen is the largest key file accepted (it must fit in one Secret).
const MaxLen = keyring.MaxSecretLen

// Read reads a whole key file from r into protected memory. It fails on an
// empty file or one larger than MaxLen.
func Read(r io.Reader) (*keyring.Secret, error) {
	buf, err := keyring.NewSecret(MaxLen)
	if err != nil {
		return nil, err
	}
	defer buf.Destroy()
	n, err := io.ReadFull(r, buf.Bytes())
	switch {
	case err == nil:
		var one [1]byte
		m, _ := r.Read(one[:])
		clear(one[:]) // a byte of the key file
		if m > 0 {
			return nil, fmt.Errorf("key file is larger than %d bytes", MaxLen)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if n == 0 {
		return nil, errors.New("key file is empty")
	}
	out, err := keyring.NewSecret(n)
	if err != nil {
		return nil, err
	}
	copy(out.Bytes(), buf.Bytes()[:n])
	return out, nil
}

// Open reads the key file at path.
func Open(path string) (*keyring.Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	k, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
