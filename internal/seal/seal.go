// Package seal encrypts a file with a passphrase, in the manner of age's
// scrypt recipient: a memory-hard KDF (argon2id) turns the passphrase into
// a key, and the contents are encrypted and authenticated in chunks
// (XChaCha20-Poly1305, the STREAM construction), so that reordering,
// truncation or any changed byte is detected. encblk seals LUKS header
// backups with it: a header backup holds every keyslot, and a sealed one
// is useless without the passphrase, even to someone who also knows a KEK.
//
// Format (integers big-endian):
//
//	offset  size  field
//	0       16    magic "encblk-sealed-v1"
//	16      1     KDF: 1 = argon2id
//	17      4     argon2id time cost (passes)
//	21      4     argon2id memory in KiB
//	25      1     argon2id parallelism
//	26      16    salt
//	42      16    nonce prefix
//	58      ...   chunks: each the sealed form of 64 KiB of plaintext (the
//	              last one shorter, possibly empty), i.e. len+16 bytes
//
// Chunk i is sealed with key = argon2id(passphrase, salt, ...), nonce =
// prefix ‖ i as 7 bytes ‖ 0x01 for the last chunk, 0x00 otherwise, and the
// 58 header bytes as additional data.
package seal

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/encblk/encblk/internal/secmem"
)

// Magic starts every sealed file.
const Magic = "encblk-sealed-v1"

const (
	headerLen = 58
	chunkSize = 64 << 10
	kdfArgon2 = 1
	saltLen   = 16
	prefixLen = 16
	maxChunks = 1 << 56
)

// Params are the argon2id costs of a new sealed file.
type Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultParams are RFC 9106's second recommended option: 3 passes over
// 64 MiB with 4 lanes.
var DefaultParams = Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Limits applied to a file being opened, so a crafted header cannot make
// opening take unbounded time or memory.
var maxParams = Params{Time: 64, MemoryKiB: 4 << 20, Threads: 64}

// Errors. Opening a file fails with one of these (wrapped).
var (
	// ErrNotSealed: the input does not start with Magic.
	ErrNotSealed = errors.New("not an encblk sealed file")
	// ErrWrongPassphrase: the first chunk does not authenticate, which is
	// what a wrong passphrase (or a damaged start of file) looks like.
	ErrWrongPassphrase = errors.New("wrong passphrase, or the sealed file is damaged")
	// ErrCorrupt: the header is invalid, a later chunk does not
	// authenticate, or the file is truncated or has trailing data.
	ErrCorrupt = errors.New("sealed file is corrupt or truncated")
)

func (p Params) check(limit Params) error {
	if p.Time < 1 || p.Threads < 1 || p.MemoryKiB < 8*uint32(p.Threads) {
		return fmt.Errorf("argon2id parameters t=%d m=%d KiB p=%d are below the minimum", p.Time, p.MemoryKiB, p.Threads)
	}
	if p.Time > limit.Time || p.MemoryKiB > limit.MemoryKiB || p.Threads > limit.Threads {
		return fmt.Errorf("argon2id parameters t=%d m=%d KiB p=%d exceed the limit t=%d m=%d KiB p=%d",
			p.Time, p.MemoryKiB, p.Threads, limit.Time, limit.MemoryKiB, limit.Threads)
	}
	return nil
}

// deriveKey runs argon2id into protected memory.
func deriveKey(passphrase, salt []byte, p Params) (*secmem.Buffer, error) {
	k := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
	return secmem.FromBytes(k)
}

// nonce is chunk i's nonce: prefix ‖ i (7 bytes) ‖ last-chunk flag.
func nonce(prefix []byte, i uint64, last bool) []byte {
	var ctr [8]byte
	binary.BigEndian.PutUint64(ctr[:], i)
	n := make([]byte, 0, chacha20poly1305.NonceSizeX)
	n = append(n, prefix...)
	n = append(n, ctr[1:]...)
	if last {
		return append(n, 1)
	}
	return append(n, 0)
}

// Seal reads all of r and writes it to w sealed with passphrase.
func Seal(w io.Writer, r io.Reader, passphrase []byte, p Params) error {
	if err := p.check(maxParams); err != nil {
		return err
	}
	hdr := make([]byte, headerLen)
	copy(hdr, Magic)
	hdr[16] = kdfArgon2
	binary.BigEndian.PutUint32(hdr[17:], p.Time)
	binary.BigEndian.PutUint32(hdr[21:], p.MemoryKiB)
	hdr[25] = p.Threads
	if _, err := rand.Read(hdr[26:headerLen]); err != nil {
		return err
	}
	aead, err := newAEAD(passphrase, hdr[26:42], p)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	br := bufio.NewReaderSize(r, chunkSize+1)
	buf := make([]byte, chunkSize, chunkSize+aead.Overhead())
	defer secmem.Wipe(buf[:cap(buf)])
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(br, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return err
		}
		last := n < chunkSize
		if !last {
			_, perr := br.Peek(1)
			last = errors.Is(perr, io.EOF)
			if perr != nil && !last {
				return perr
			}
		}
		if i >= maxChunks {
			return errors.New("seal: input too large")
		}
		out := aead.Seal(buf[:0], nonce(hdr[42:58], i, last), buf[:n], hdr)
		if _, err := w.Write(out); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// IsSealed reports whether b (the start of a file) carries the magic.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, []byte(Magic)) }

// Open reads a sealed file from r and writes its contents to w. Chunks
// are written as they authenticate, so on error w may hold a prefix of
// the contents: callers must discard what they wrote unless Open returns
// nil.
func Open(w io.Writer, r io.Reader, passphrase []byte) error {
	return open(w, r, passphrase, maxParams)
}

func open(w io.Writer, r io.Reader, passphrase []byte, limit Params) error {
	hdr := make([]byte, headerLen)
	if n, err := io.ReadFull(r, hdr); err != nil {
		if !IsSealed(hdr[:n]) {
			return ErrNotSealed
		}
		return fmt.Errorf("%w: short header", ErrCorrupt)
	}
	if !IsSealed(hdr) {
		return ErrNotSealed
	}
	if hdr[16] != kdfArgon2 {
		return fmt.Errorf("%w: unknown KDF %d", ErrCorrupt, hdr[16])
	}
	p := Params{Time: binary.BigEndian.Uint32(hdr[17:]), MemoryKiB: binary.BigEndian.Uint32(hdr[21:]), Threads: hdr[25]}
	if err := p.check(limit); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	aead, err := newAEAD(passphrase, hdr[26:42], p)
	if err != nil {
		return err
	}
	return openChunks(w, bufio.NewReaderSize(r, chunkSize+aead.Overhead()+1), aead, hdr)
}

func openChunks(w io.Writer, br *bufio.Reader, aead cipher.AEAD, hdr []byte) error {
	buf := make([]byte, chunkSize+aead.Overhead())
	defer secmem.Wipe(buf)
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(br, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return err
		}
		last := n < len(buf)
		if !last {
			_, perr := br.Peek(1)
			last = errors.Is(perr, io.EOF)
			if perr != nil && !last {
				return perr
			}
		}
		pt, err := aead.Open(buf[:0], nonce(hdr[42:58], i, last), buf[:n], hdr)
		if err != nil {
			if i == 0 {
				return ErrWrongPassphrase
			}
			return fmt.Errorf("%w: chunk %d does not authenticate", ErrCorrupt, i)
		}
		if _, err := w.Write(pt); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// newAEAD derives the key from passphrase and salt with p and returns the
// XChaCha20-Poly1305 AEAD over it; the derived key is wiped (the AEAD
// keeps its own copy).
func newAEAD(passphrase, salt []byte, p Params) (cipher.AEAD, error) {
	key, err := deriveKey(passphrase, salt, p)
	if err != nil {
		return nil, err
	}
	defer key.Destroy()
	return chacha20poly1305.NewX(key.Bytes())
}
