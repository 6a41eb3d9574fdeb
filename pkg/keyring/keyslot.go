package keyring

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/xts"
)

// A LUKS2 keyslot of type "luks2" wraps the volume key (DEK) like this:
//
//	k    = KDF(secret, kdf.salt)               area.key_size bytes
//	af   = AFsplit(DEK, af.stripes, af.hash)   key_size*stripes bytes, padded to 512
//	area = AES-XTS_k(af), 512-byte sectors, tweak 0, 1, 2 … from the area start
//
// and the digest section holds PBKDF2(DEK) so a candidate DEK can be
// checked. Opening runs the same steps backwards.

// areaCipherOK reports whether encblk can decrypt a keyslot area (or a
// LUKS1 key material block) encrypted with spec.
func areaCipherOK(spec string, keyLen int) error {
	if spec != "aes-xts-plain64" && spec != "aes-xts-plain" {
		return fmt.Errorf("%w: keyslot cipher %q (only aes-xts-plain64)", ErrUnsupported, spec)
	}
	if keyLen != 32 && keyLen != 64 {
		return fmt.Errorf("%w: keyslot key of %d bytes for %s", ErrUnsupported, keyLen, spec)
	}
	return nil
}

// unwrapArea reads and decrypts an AF-split key from dev at offset and
// merges it into a keyLen-byte key.
func unwrapArea(dev io.ReaderAt, offset uint64, k []byte, keyLen, stripes int, afHash string) (*secmem.Buffer, error) {
	h, err := hashByName(afHash)
	if err != nil {
		return nil, err
	}
	c, err := xts.New(k)
	if err != nil {
		return nil, fmt.Errorf("%w: keyslot key: %w", ErrUnsupported, err)
	}
	defer c.Close()
	n := afSectors(keyLen, stripes) * sectorSize512
	area, err := secmem.New(int(n))
	if err != nil {
		return nil, err
	}
	defer area.Destroy()
	if _, err := dev.ReadAt(area.Bytes(), int64(offset)); err != nil {
		return nil, fmt.Errorf("%w: read keyslot area at %d: %w", ErrIO, offset, err)
	}
	if err := c.DecryptSectors(area.Bytes(), area.Bytes(), sectorSize512, 0, 1); err != nil {
		return nil, err
	}
	key, err := secmem.New(keyLen)
	if err != nil {
		return nil, err
	}
	if err := afMerge(key.Bytes(), area.Bytes(), stripes, h); err != nil {
		key.Destroy()
		return nil, err
	}
	return key, nil
}

// wrapArea AF-splits key, encrypts it with k and writes it to dev at
// offset, then syncs dev.
func wrapArea(dev device, offset uint64, k, key []byte, stripes int, afHash string) error {
	h, err := hashByName(afHash)
	if err != nil {
		return err
	}
	c, err := xts.New(k)
	if err != nil {
		return err
	}
	defer c.Close()
	n := afSectors(len(key), stripes) * sectorSize512
	area, err := secmem.New(int(n))
	if err != nil {
		return err
	}
	defer area.Destroy()
	if err := afSplit(area.Bytes(), key, stripes, h); err != nil {
		return err
	}
	if err := c.EncryptSectors(area.Bytes(), area.Bytes(), sectorSize512, 0, 1); err != nil {
		return err
	}
	if _, err := dev.WriteAt(area.Bytes(), int64(offset)); err != nil {
		return fmt.Errorf("%w: write keyslot area at %d: %w", ErrIO, offset, err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync keyslot area: %w", ErrIO, err)
	}
	return nil
}

// openKeyslot unwraps the DEK from keyslot ks with secret. It does not
// check the result against the digest.
func openKeyslot(ctx context.Context, dev io.ReaderAt, ks *Keyslot, secret []byte) (*secmem.Buffer, error) {
	if ks.Type != "luks2" && ks.Type != "luks1" {
		return nil, fmt.Errorf("%w: keyslot %d has type %q", ErrUnsupported, ks.ID, ks.Type)
	}
	if ks.AFType != "luks1" {
		return nil, fmt.Errorf("%w: keyslot %d AF type %q", ErrUnsupported, ks.ID, ks.AFType)
	}
	if ks.AreaType != "raw" {
		return nil, fmt.Errorf("%w: keyslot %d area type %q", ErrUnsupported, ks.ID, ks.AreaType)
	}
	if err := areaCipherOK(ks.AreaEncryption, ks.AreaKeySize); err != nil {
		return nil, fmt.Errorf("keyslot %d: %w", ks.ID, err)
	}
	k, err := ks.KDF.derive(ctx, secret, ks.AreaKeySize)
	if err != nil {
		return nil, fmt.Errorf("keyslot %d: %w", ks.ID, err)
	}
	defer k.Destroy()
	return unwrapArea(dev, ks.AreaOffset, k.Bytes(), ks.KeySize, ks.AFStripes, ks.AFHash)
}

// newKeyslot wraps dek for secret into a new keyslot area at areaOffset
// (already reserved, areaSize bytes) and returns the keyslot's JSON.
func newKeyslot(ctx context.Context, dev device, dek, secret []byte, kdf KDF, areaOffset, areaSize uint64, priority int) (json.RawMessage, error) {
	const areaKeyLen = 64 // AES-256-XTS for the keyslot area, as cryptsetup
	k, err := kdf.derive(ctx, secret, areaKeyLen)
	if err != nil {
		return nil, err
	}
	defer k.Destroy()
	if err := wrapArea(dev, areaOffset, k.Bytes(), dek, afStripes, "sha256"); err != nil {
		return nil, err
	}
	obj := map[string]any{
		"type":     "luks2",
		"key_size": len(dek),
		"af":       map[string]any{"type": "luks1", "stripes": afStripes, "hash": "sha256"},
		"area": map[string]any{
			"type": "raw", "offset": strconv.FormatUint(areaOffset, 10), "size": strconv.FormatUint(areaSize, 10),
			"encryption": "aes-xts-plain64", "key_size": areaKeyLen,
		},
		"kdf": kdf.jsonObject(),
	}
	if priority != 1 {
		obj["priority"] = priority
	}
	return json.Marshal(obj)
}

// jsonObject is the kdf object of a keyslot.
func (k *KDF) jsonObject() map[string]any {
	if k.Type == "pbkdf2" {
		return map[string]any{"type": "pbkdf2", "hash": k.Hash, "iterations": k.Iterations, "salt": k.Salt}
	}
	return map[string]any{"type": k.Type, "time": k.Iterations, "memory": k.MemoryKiB, "cpus": k.Parallel, "salt": k.Salt}
}

// keyslotAreaSize is the area a key of keyLen bytes needs, as cryptsetup
// allocates it: the AF-split key rounded up to 4096 bytes.
func keyslotAreaSize(keyLen int) uint64 {
	return (uint64(keyLen)*afStripes + 4095) / 4096 * 4096
}

// wipeArea overwrites a keyslot area with random bytes and syncs, so the
// key material it held is gone even if a header copy still names it.
func wipeArea(dev device, offset, size uint64) error {
	buf := make([]byte, min(size, 1<<20))
	for off := uint64(0); off < size; {
		n := min(uint64(len(buf)), size-off)
		if _, err := rand.Read(buf[:n]); err != nil {
			return err
		}
		if _, err := dev.WriteAt(buf[:n], int64(offset+off)); err != nil {
			return fmt.Errorf("%w: wipe keyslot area at %d: %w", ErrIO, offset+off, err)
		}
		off += n
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	return nil
}
