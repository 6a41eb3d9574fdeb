// Package kektest has what the tests of the KEK sources (pkg/kek/...)
// share: a small LUKS2 volume made by the keyring to add their keyslots
// to (Volume), one made by cryptsetup (NewLUKSImage), and the real tools
// (cryptsetup, clevis) as judges of the keyslots a source makes.
package kektest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
)

// Passphrase opens the keyslot of every Volume.
const Passphrase = "correct horse"

// Volume formats a small LUKS2 volume with one keyslot for Passphrase
// (cheap KDF) and returns its path and DEK.
func Volume(tb testing.TB) (string, []byte) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "backing.img")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(17 << 20); err != nil {
		tb.Fatal(err)
	}
	pass, err := passphrase.New([]byte(Passphrase))
	if err != nil {
		tb.Fatal(err)
	}
	defer pass.Destroy()
	kr, dek, err := keyring.Format(context.Background(), f, pass, &keyring.FormatOptions{
		KDF: keyring.KDFParams{Type: "pbkdf2", Iterations: 1000},
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer dek.Destroy()
	kr.Close()
	return path, bytes.Clone(dek.Bytes())
}

// OpenKeyring opens the header at path read-write until the test ends.
func OpenKeyring(tb testing.TB, path string) *keyring.Keyring {
	tb.Helper()
	kr, err := keyring.Open(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { kr.Close() })
	return kr
}

// Unlocked opens v's keyring (closed when the test ends) and unlocks it
// with the key file: the DEK to add keyslots with (destroyed at the end).
func (v *LUKSImage) Unlocked(tb testing.TB) (*keyring.Keyring, *secmem.Buffer) {
	tb.Helper()
	kr := OpenKeyring(tb, v.Path)
	kf, err := keyring.SecretFromBytes([]byte("the first key file\n"))
	if err != nil {
		tb.Fatal(err)
	}
	defer kf.Destroy()
	dek, err := kr.Unlock(context.Background(), kf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(dek.Destroy)
	return kr, dek
}
