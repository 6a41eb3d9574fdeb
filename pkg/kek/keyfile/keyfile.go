// Package keyfile is the KEK held in a file, typically random bytes on
// another device (a boot drive, a USB key). Every byte counts, a trailing
// newline included, as with cryptsetup's --key-file.
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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

// GeneratedLen is the size of a generated key file: 256 random bits.
const GeneratedLen = 32

// Generate writes a new key file of GeneratedLen random bytes at path
// (as Create) and returns its key.
func Generate(path string) (*keyring.Secret, error) {
	k, err := keyring.NewSecret(GeneratedLen)
	if err != nil {
		return nil, err
	}
	if _, err := rand.Read(k.Bytes()); err != nil {
		k.Destroy()
		return nil, err
	}
	if err := Create(path, k.Bytes()); err != nil {
		k.Destroy()
		return nil, err
	}
	return k, nil
}

// Create writes data to a new file at path, mode 0600; an existing file
// is left alone (the error wraps fs.ErrExist). The file and its directory
// are synced before it returns, so a keyslot made for the key afterwards
// never outlives it on disk; a file that could not be written whole is
// removed. An error opening the file is the *fs.PathError of open.
func Create(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir makes the entries of the directory dir durable: a key file
// created, renamed or removed there, or a link to one.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
