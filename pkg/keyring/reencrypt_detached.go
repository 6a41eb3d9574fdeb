package keyring

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/encblk/encblk/internal/secmem"
)

// Encryption in place with a detached header, as cryptsetup 2.6 does it
// for `cryptsetup reencrypt --encrypt --header FILE DEVICE`: the header
// goes to FILE and the data stays where it is, encrypted forward zone by
// zone, each zone's plaintext hashed into the resilience area before it is
// rewritten (checksum resilience, mode "encrypt", requirement
// online-reencrypt-v2). It is a reencryption whose old side is plaintext
// (OpenReencryption runs it as one):
//
//	start:  0 linear (dynamic)
//	hot:    0 crypt [0, P) | 1 crypt [P, P+L) in-reencryption | 2 linear [P+L, …)
//	post:   0 crypt [0, P) | 1 linear [P, …)
//	end:    0 crypt (dynamic)
//
// then backup-previous (linear at 0, dynamic) and backup-final (crypt at
// 0, dynamic, the new key's digest); there is no old key.

// EncryptDetached records the encryption in place of the plaintext on the
// data device data of size bytes, with a new detached LUKS2 header (random
// volume key, keyslot 0 for r; opts as for Format, Detached implied, the
// sector size 512 by default as cryptsetup's --encrypt) written to hdr,
// which should be empty. Nothing is written to the data device: it returns
// the keyring of hdr, and OpenReencryption and Run (or cryptsetup reencrypt
// --resume-only --header FILE) encrypt the data. A crash before hdr is
// written and synced leaves the data untouched and no valid header. A data
// device that holds a LUKS header is refused (ErrAlreadyLUKS), as by
// EncryptInPlace.
func EncryptDetached(ctx context.Context, hdr, data DataDevice, size uint64, r Recipient, opts *FormatOptions) (*Keyring, error) {
	var o FormatOptions
	if opts != nil {
		o = *opts
	}
	if o.Opal != nil {
		return nil, fmt.Errorf("%w: in-place encryption of an opal volume", ErrUnsupported)
	}
	if o.SectorSize == 0 {
		o.SectorSize = 512
	}
	o.Detached, o.DataOffset = true, 0
	lay, err := o.layout()
	if err != nil {
		return nil, err
	}
	if ss := uint64(lay.SectorSize); size == 0 || size%max(4096, ss) != 0 {
		return nil, fmt.Errorf("%w: device size %d is not a positive multiple of %d bytes", ErrTooSmall, size, max(4096, ss))
	}
	if off, found, err := findLUKSMagic(data, size); err != nil {
		return nil, err
	} else if found {
		return nil, fmt.Errorf("%w: the device holds a LUKS header at %d (encblk reencrypt without --encrypt changes its key)", ErrAlreadyLUKS, off)
	}
	area := 2*lay.MetadataSize + lay.KeyslotsSize
	mem := &headerImage{buf: make([]byte, area), size: area}
	k, dek, err := formatDevice(ctx, mem, r, &lay)
	if err != nil {
		return nil, err
	}
	defer dek.Destroy()
	if err := k.recordEncryptDetached(dek); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := hdr.WriteAt(mem.buf, 0); err != nil {
		return nil, fmt.Errorf("%w: write the header: %w", ErrIO, err)
	}
	if err := hdr.Sync(); err != nil {
		return nil, fmt.Errorf("%w: sync the header: %w", ErrIO, err)
	}
	return openDevice(hdr, false)
}

// recordEncryptDetached turns the freshly formatted metadata of k (one
// crypt segment at 0, keyslot 0, digest 0) into the start state of an
// encryption of the data where it is.
func (k *Keyring) recordEncryptDetached(dek *secmem.Buffer) error {
	m := k.meta
	e := m.clone()
	seg := m.Segments[0]
	final, err := segmentJSON(seg.Raw, 0, 0, nil, []string{"backup-final"})
	if err != nil {
		return err
	}
	lin := func(flags ...string) (json.RawMessage, error) {
		o := map[string]any{"type": "linear", "offset": "0", "size": "dynamic"}
		if len(flags) > 0 {
			o["flags"] = flags
		}
		return json.Marshal(o)
	}
	plain, err := lin()
	if err != nil {
		return err
	}
	previous, err := lin("backup-previous")
	if err != nil {
		return err
	}
	e.segments = map[string]json.RawMessage{"0": plain, "1": previous, "2": final}
	if e.digests["0"], err = setField(e.digests["0"], "segments", []string{"2"}); err != nil {
		return err
	}
	cur, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return err
	}
	reSlot, reKeyslot, err := cur.checksumKeyslot(k.bin.HdrSize, ReencryptModeEncrypt, "forward", max(4096, seg.SectorSize), "encryption")
	if err != nil {
		return err
	}
	e.keyslots[reSlot] = reKeyslot
	if err := e.setRequirement(true); err != nil {
		return err
	}
	n, err := e.withVerificationDigest(k.bin.HdrSize, nil, dek.Bytes(), max(cur.Digests[0].Iterations, minPBKDF2Iterations))
	if err != nil {
		return err
	}
	return k.commit(n)
}
