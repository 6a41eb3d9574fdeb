package xts

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

// referenceEncrypt encrypts with golang.org/x/crypto/xts, sector by sector.
func referenceEncrypt(t testing.TB, key, src []byte, ss int, tw, step uint64) []byte {
	t.Helper()
	c, err := xxts.NewCipher(aesNew, key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(src))
	for off := 0; off < len(src); off += ss {
		c.Encrypt(out[off:off+ss], src[off:off+ss], tw)
		tw += step
	}
	return out
}

func TestAgainstXCrypto(t *testing.T) {
	for _, keyLen := range []int{32, 64} {
		for _, ss := range []int{512, 1024, 2048, 4096} {
			key := make([]byte, keyLen)
			rand.Read(key)
			src := make([]byte, ss*5)
			rand.Read(src)
			var b [8]byte
			rand.Read(b[:])
			tw := binary.LittleEndian.Uint64(b[:])
			step := uint64(ss / 512)
			want := referenceEncrypt(t, key, src, ss, tw, step)

			c, err := New(key)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(src))
			if err := c.EncryptSectors(got, src, ss, tw, step); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("key %d sector %d: ciphertext differs from x/crypto/xts", keyLen, ss)
			}
			// In place decryption restores the plaintext.
			if err := c.DecryptSectors(got, got, ss, tw, step); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, src) {
				t.Fatalf("key %d sector %d: decrypt(encrypt(x)) != x", keyLen, ss)
			}
		}
	}
}

func TestBadArguments(t *testing.T) {
	if _, err := New(make([]byte, 48)); err != ErrKeySize {
		t.Errorf("48-byte key: %v", err)
	}
	c, _ := New(make([]byte, 64))
	buf := make([]byte, 4096)
	if err := c.EncryptSectors(buf, buf[:1000], 512, 0, 1); err != ErrLength {
		t.Errorf("short length: %v", err)
	}
	if err := c.EncryptSectors(buf, buf[:512], 100, 0, 1); err != ErrSectorSize {
		t.Errorf("sector size 100: %v", err)
	}
	if err := c.EncryptSectors(buf[16:], buf[:1024], 512, 0, 1); err != ErrOverlap {
		t.Errorf("overlap: %v", err)
	}
	c.Close()
	if err := c.EncryptSectors(buf, buf, 512, 0, 1); err != ErrClosed {
		t.Errorf("after Close: %v", err)
	}
}
