package keyring

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/encblk/encblk/internal/secmem"
)

// FormatOptions describe a new LUKS2 volume. The zero value gives what
// cryptsetup luksFormat gives: AES-256-XTS (512-bit key), 512-byte sectors,
// 16 KiB metadata copies, data at 16 MiB, argon2id benchmarked to 2 s.
type FormatOptions struct {
	Cipher     string // only "aes-xts-plain64"
	KeySize    int    // volume key bytes: 64 (AES-256-XTS, default) or 32
	SectorSize int    // 512 (default), 1024, 2048 or 4096

	// DataOffset is where the data starts on the data device, in bytes;
	// default 16 MiB, or 0 with Detached.
	DataOffset uint64
	// Detached says the header goes to a device of its own (cryptsetup's
	// --header): the data device is not touched.
	Detached bool
	// MetadataSize is the size of one header copy (16 KiB … 4 MiB).
	MetadataSize uint64
	// KeyslotsSize is the keyslots area; default: what fits before the
	// data offset, at most 128 MiB (16 MiB less the copies when detached).
	KeyslotsSize uint64

	KDF           KDFParams
	Label         string
	Subsystem     string
	UUID          string // default: random
	AllowDiscards bool   // sets the persistent "allow-discards" flag

	// Opal makes the data segment a self-encrypting drive's locking range,
	// as cryptsetup 2.7 does: "hw-opal-crypt" (dm-crypt on top, the
	// default) or "hw-opal". The volume key is then the range key
	// (Opal.KeySize bytes) followed by the KeySize-byte crypt key (none
	// for hw-opal). pkg/sed sets the drive up.
	Opal *OpalSegment
}

// OpalSegment describes the locking range behind a hw-opal segment. The
// range starts at the data offset.
type OpalSegment struct {
	Number  int    // opal_segment_number: the locking range, 1..8
	KeySize int    // opal_key_size: bytes of the range key, 1..32
	Size    uint64 // opal_segment_size: bytes in the range (the segment's size)
	Only    bool   // "hw-opal": the drive's encryption alone, no dm-crypt
}

// dekSize is the size of the volume key the options call for.
func (o *FormatOptions) dekSize() int {
	switch {
	case o.Opal == nil:
		return o.KeySize
	case o.Opal.Only:
		return o.Opal.KeySize
	}
	return o.Opal.KeySize + o.KeySize
}

const defaultDataOffset = 16 << 20

// Format writes a new LUKS2 header to dev (the backing device, or the
// header file when Detached), with a new random DEK wrapped in keyslot 0
// for r. It returns the open keyring and the DEK (caller destroys it).
// Everything in the header area that was there before is overwritten.
func Format(ctx context.Context, dev *os.File, r Recipient, opts *FormatOptions) (*Keyring, *secmem.Buffer, error) {
	return formatDevice(ctx, dev, r, opts)
}

type sizedDevice interface {
	device
	Stat() (os.FileInfo, error)
	Truncate(int64) error
}

func (o *FormatOptions) layout() (FormatOptions, error) {
	var c FormatOptions
	if o != nil {
		c = *o
	}
	if c.Cipher == "" {
		c.Cipher = "aes-xts-plain64"
	}
	if c.Cipher != "aes-xts-plain64" {
		return c, fmt.Errorf("%w: cipher %q (encblk formats aes-xts-plain64)", ErrUnsupported, c.Cipher)
	}
	if c.KeySize == 0 {
		c.KeySize = 64
	}
	if c.KeySize != 32 && c.KeySize != 64 {
		return c, fmt.Errorf("key size %d bits: want 256 or 512", c.KeySize*8)
	}
	if op := c.Opal; op != nil {
		switch {
		case op.Number < 1 || op.Number > 8:
			return c, fmt.Errorf("opal segment number %d: want 1..8", op.Number)
		case op.KeySize < 1 || op.KeySize > 32:
			return c, fmt.Errorf("opal key size %d: want 1..32 bytes", op.KeySize)
		case op.Size == 0 || op.Size%uint64(max(c.SectorSize, 512)) != 0:
			return c, fmt.Errorf("opal segment size %d: want a positive multiple of the sector size", op.Size)
		}
		if c.Subsystem == "" {
			c.Subsystem = "HW-OPAL" // as cryptsetup marks OPAL volumes
		}
	}
	if c.SectorSize == 0 {
		c.SectorSize = 512
	}
	switch c.SectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return c, fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", c.SectorSize)
	}
	if c.MetadataSize == 0 {
		c.MetadataSize = minHdrSize
	}
	if !isValidHdrSize(c.MetadataSize) {
		return c, fmt.Errorf("metadata size %d: want a power of two from 16 KiB to 4 MiB", c.MetadataSize)
	}
	if c.DataOffset == 0 && !c.Detached {
		c.DataOffset = defaultDataOffset
	}
	if c.DataOffset%uint64(c.SectorSize) != 0 {
		return c, fmt.Errorf("data offset %d is not a multiple of the sector size %d", c.DataOffset, c.SectorSize)
	}
	if c.KeyslotsSize == 0 {
		switch {
		case c.Detached:
			c.KeyslotsSize = defaultDataOffset - 2*c.MetadataSize
		case c.DataOffset > 2*c.MetadataSize:
			c.KeyslotsSize = min(c.DataOffset-2*c.MetadataSize, maxKeyslotsSize) / 4096 * 4096
		}
	}
	if c.KeyslotsSize%4096 != 0 || c.KeyslotsSize > maxKeyslotsSize || c.KeyslotsSize < keyslotAreaSize(c.dekSize()) {
		return c, fmt.Errorf("keyslots area of %d bytes: want a multiple of 4096 from %d to 128 MiB", c.KeyslotsSize, keyslotAreaSize(c.dekSize()))
	}
	if !c.Detached && c.DataOffset < 2*c.MetadataSize+c.KeyslotsSize {
		return c, fmt.Errorf("data offset %d is inside the header area (%d bytes)", c.DataOffset, 2*c.MetadataSize+c.KeyslotsSize)
	}
	return c, nil
}

func formatDevice(ctx context.Context, dev sizedDevice, r Recipient, opts *FormatOptions) (*Keyring, *secmem.Buffer, error) {
	o, err := opts.layout()
	if err != nil {
		return nil, nil, err
	}
	hdrArea := 2*o.MetadataSize + o.KeyslotsSize
	fi, err := dev.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrIO, err)
	}
	size, err := deviceSize(dev, fi)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case o.Detached && size < hdrArea && fi.Mode().IsRegular():
		if err := dev.Truncate(int64(hdrArea)); err != nil {
			return nil, nil, fmt.Errorf("%w: grow header file: %w", ErrIO, err)
		}
	case o.Detached && size < hdrArea:
		return nil, nil, fmt.Errorf("header device is %d bytes, the header needs %d", size, hdrArea)
	case !o.Detached && size <= o.DataOffset:
		return nil, nil, fmt.Errorf("device is %d bytes; with data at offset %d it needs at least %d", size, o.DataOffset, o.DataOffset+uint64(o.SectorSize))
	case !o.Detached && o.Opal != nil && size < o.DataOffset+o.Opal.Size:
		return nil, nil, fmt.Errorf("device is %d bytes; the opal segment needs %d", size, o.DataOffset+o.Opal.Size)
	}

	kdf, err := o.KDF.resolve(ctx, 64)
	if err != nil {
		return nil, nil, err
	}
	uuid := o.UUID
	if uuid != "" && !validUUID(uuid) {
		return nil, nil, fmt.Errorf("UUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", uuid)
	}
	if uuid == "" {
		if uuid, err = newUUID(); err != nil {
			return nil, nil, err
		}
	}
	k := &Keyring{dev: dev}
	k.bin = binHeader{HdrSize: o.MetadataSize, ChecksumAlg: "sha256", UUID: uuid, Label: o.Label, Subsystem: o.Subsystem}
	for i := range k.salts {
		if _, err := rand.Read(k.salts[i][:]); err != nil {
			return nil, nil, err
		}
	}
	if _, err := k.bin.marshal(); err != nil { // label, uuid lengths
		return nil, nil, err
	}

	dek, err := secmem.New(o.dekSize())
	if err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(dek.Bytes()); err != nil {
		dek.Destroy()
		return nil, nil, err
	}
	fail := func(err error) (*Keyring, *secmem.Buffer, error) {
		dek.Destroy()
		return nil, nil, err
	}

	// Zero the whole header area: old headers, keyslots and signatures go.
	if err := zeroRange(dev, 0, hdrArea); err != nil {
		return fail(err)
	}

	secret, tokens, err := r.Wrap(ctx)
	if err != nil {
		return fail(fmt.Errorf("KEK: %w", err))
	}
	areaOff, areaSize := 2*o.MetadataSize, keyslotAreaSize(o.dekSize())
	ks, err := newKeyslot(ctx, dev, dek.Bytes(), secret.Bytes(), kdf, areaOff, areaSize, 1)
	secret.Destroy()
	if err != nil {
		return fail(err)
	}
	iters, err := digestIterations(ctx, o.KDF.Iterations != 0)
	if err != nil {
		return fail(err)
	}
	dg, err := newDigest(dek.Bytes(), iters, []int{0}, []int{0})
	if err != nil {
		return fail(err)
	}
	seg := map[string]any{
		"type": "crypt", "offset": strconv.FormatUint(o.DataOffset, 10), "size": "dynamic",
		"iv_tweak": "0", "encryption": o.Cipher, "sector_size": o.SectorSize,
	}
	cfg := map[string]any{
		"json_size":     strconv.FormatUint(o.MetadataSize-binHeaderSize, 10),
		"keyslots_size": strconv.FormatUint(o.KeyslotsSize, 10),
	}
	if o.AllowDiscards {
		cfg["flags"] = []string{"allow-discards"}
	}
	if op := o.Opal; op != nil {
		seg["type"], seg["size"] = "hw-opal-crypt", strconv.FormatUint(op.Size, 10)
		seg["opal_segment_number"], seg["opal_key_size"], seg["opal_segment_size"] = op.Number, op.KeySize, strconv.FormatUint(op.Size, 10)
		if op.Only {
			seg["type"] = "hw-opal"
			delete(seg, "iv_tweak")
			delete(seg, "encryption")
			delete(seg, "sector_size")
		}
		cfg["requirements"] = map[string][]string{"mandatory": {"opal"}}
	}
	top := map[string]any{
		"keyslots": map[string]json.RawMessage{"0": ks},
		"tokens":   map[string]any{},
		"segments": map[string]any{"0": seg},
		"digests":  map[string]json.RawMessage{"0": dg},
		"config":   cfg,
	}
	text, err := json.Marshal(top)
	if err != nil {
		return fail(err)
	}
	m, err := parseMetadata(text, o.MetadataSize)
	if err != nil {
		return fail(fmt.Errorf("internal error: new metadata does not validate: %w", err))
	}
	if err := m.addTokens(tokens, 0); err != nil {
		return fail(err)
	}
	if m, err = m.reparse(o.MetadataSize); err != nil {
		return fail(err)
	}
	k.bin.SeqID = 0 // commit writes seqid 1
	if err := k.commit(m); err != nil {
		return fail(err)
	}
	return k, dek, nil
}

// newDigest returns the JSON of a pbkdf2-sha256 digest of dek.
func newDigest(dek []byte, iterations int, keyslots, segments []int) (json.RawMessage, error) {
	salt := make([]byte, digestSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	sum := make([]byte, sha256.Size)
	pbkdf2Key(sum, dek, salt, iterations, sha256.New)
	return json.Marshal(map[string]any{
		"type": "pbkdf2", "keyslots": idStrings(keyslots), "segments": idStrings(segments),
		"hash": "sha256", "iterations": iterations, "salt": salt, "digest": sum,
	})
}

// newUUID returns a random (version 4) UUID in the usual text form.
func newUUID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
			return false
		}
	}
	return true
}

// zeroRange writes zeros over [off, off+n) and syncs.
func zeroRange(dev device, off, n uint64) error {
	buf := make([]byte, min(n, 1<<20))
	for done := uint64(0); done < n; {
		c := min(uint64(len(buf)), n-done)
		if _, err := dev.WriteAt(buf[:c], int64(off+done)); err != nil {
			return fmt.Errorf("%w: wipe header area: %w", ErrIO, err)
		}
		done += c
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	return nil
}
