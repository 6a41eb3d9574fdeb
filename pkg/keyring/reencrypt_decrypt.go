package keyring

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/encblk/encblk/pkg/xts"
)

// Decryption in place of a volume whose header is detached (cryptsetup
// reencrypt --decrypt --header FILE on a data device without a header), as
// cryptsetup 2.6.1 does it: mode "decrypt", direction backward, checksum
// resilience. The data does not move: each zone, from the end of the data
// backward, is hashed block by block into the resilience area (its old
// ciphertext), committed hot, decrypted in place, synced and committed
// done. With D the data size, P the start of the part decrypted already:
//
//	start:  0 crypt (old key, dynamic)
//	hot:    0 crypt [0, x) | 1 linear [x, x+l) in-reencryption | 2 linear [x+l, …) (dynamic)
//	post:   0 crypt [0, x) | 1 linear [x, …) (dynamic)
//	end:    0 linear (dynamic)
//
// (the crypt part is left out once x is 0; linear parts end "dynamic"),
// then backup-previous (the old crypt segment) and backup-final (linear);
// every crypt segment is bound to the old key's digest and there is no
// new key. The next zone of a clean state at P is [P-l, P), l the zone
// length or less at the start of the data.
//
// A volume whose header is on its data device is decrypted with a data
// shift instead (the header exported to a file, the data moved to the
// start of the device): reencrypt_unshift.go.

// backState is the position of a decryption in place.
type backState struct {
	offset  uint64 // data offset
	done    uint64 // P: data from P on is plaintext
	oldTmpl json.RawMessage
	newTmpl json.RawMessage
}

// StartDecrypt records the decryption in place of a volume with a
// detached header (the caller says so: a header on the data device needs a
// data shift, StartDecryptShift). One KEK among ids must open the
// volume key. No data is touched: OpenReencryption and Run (or cryptsetup
// reencrypt --resume-only) do that.
func (k *Keyring) StartDecrypt(ctx context.Context, ids []Identity) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	m := k.meta
	seg, d, err := m.soleSegment("decryption")
	if err != nil {
		return err
	}
	secrets, oldKey, err := k.unlockSlots(ctx, m, d, ids, false)
	if err != nil {
		return err
	}
	defer oldKey.Destroy()
	for _, s := range secrets {
		s.secret.Destroy()
	}
	e := m.clone()
	reSlot, reKeyslot, err := m.checksumKeyslot(k.bin.HdrSize, ReencryptModeDecrypt, "backward", max(4096, seg.SectorSize), "decryption")
	if err != nil {
		return err
	}
	e.keyslots[reSlot] = reKeyslot
	previous, err := segmentJSON(seg.Raw, seg.Offset, 0, nil, []string{"backup-previous"})
	if err != nil {
		return err
	}
	final, err := json.Marshal(map[string]any{"type": "linear", "offset": strconv.FormatUint(seg.Offset, 10), "size": "dynamic", "flags": []string{"backup-final"}})
	if err != nil {
		return err
	}
	e.segments = map[string]json.RawMessage{"0": seg.Raw, "1": previous, "2": final}
	if e.digests[strconv.Itoa(d.ID)], err = setField(e.digests[strconv.Itoa(d.ID)], "segments", idStrings([]int{0, 1})); err != nil {
		return err
	}
	if err := e.setRequirement(true); err != nil {
		return err
	}
	n, err := e.withVerificationDigest(k.bin.HdrSize, oldKey.Bytes(), nil, max(d.Iterations, minPBKDF2Iterations))
	if err != nil {
		return err
	}
	return k.commit(n)
}

// openDecrypt loads a decryption in place (encblk's or cryptsetup's):
// the old key from ids, the verification digest, the position; a hot zone
// left by a crash is recovered from its checksums.
func (k *Keyring) openDecrypt(ctx context.Context, m *metadata, r *Reencryption, ids []Identity, data DataDevice, dataEnd uint64, o ReencryptOptions) (*Reencryptor, error) {
	switch {
	case r.Direction != "backward" || r.Resilience != "checksum" || r.Moved != nil:
		return nil, fmt.Errorf("%w: decryption with resilience %q, direction %q (encblk resumes a detached header's: checksum, backward, no data shift; cryptsetup reencrypt --resume-only finishes it)", ErrUnsupported, r.Resilience, r.Direction)
	case r.Hash != "sha256":
		return nil, fmt.Errorf("%w: decryption checksum hash %q (encblk resumes sha256)", ErrUnsupported, r.Hash)
	case r.Old.Type != "crypt" || r.Old.Encryption != "aes-xts-plain64" || r.New.Type != "linear":
		return nil, fmt.Errorf("%w: decryption from %s %s to %s", ErrUnsupported, r.Old.Type, r.Old.Encryption, r.New.Type)
	case r.OldDigest < 0 || m.Digests[r.OldDigest] == nil:
		return nil, fmt.Errorf("%w: decryption without the old key's digest", ErrCorrupt)
	case r.Old.Offset != r.New.Offset || r.Old.IVTweak != 0 || !r.Old.Dynamic || !r.New.Dynamic:
		return nil, fmt.Errorf("%w: decryption that moves data or has fixed sizes", ErrUnsupported)
	case r.HashBlock%r.Old.SectorSize != 0:
		return nil, fmt.Errorf("%w: checksum block %d is not a multiple of the sector size", ErrCorrupt, r.HashBlock)
	case dataEnd <= r.Old.Offset || (dataEnd-r.Old.Offset)%uint64(r.HashBlock) != 0:
		return nil, fmt.Errorf("%w: data of %d bytes from %d is not whole %d-byte reencryption blocks", ErrUnsupported, dataEnd-min(dataEnd, r.Old.Offset), r.Old.Offset, r.HashBlock)
	}
	st := &backState{offset: r.Old.Offset, oldTmpl: r.Old.Raw, newTmpl: r.New.Raw}
	rc := &Reencryptor{k: k, data: data, r: r, oldSS: r.Old.SectorSize, newSS: 512, block: uint64(r.HashBlock), back: st}
	rc.layout.size = dataEnd - st.offset
	ok := false
	defer func() {
		if !ok {
			rc.Close()
		}
	}()
	if err := rc.openOldKey(ctx, m, ids); err != nil {
		return nil, err
	}
	hz := o.HotZone
	if hz == 0 {
		hz = defaultHotZone
	}
	rc.zone = min(hz, r.AreaSize/sha256.Size*rc.block)
	rc.zone -= rc.zone % rc.block
	if rc.zone == 0 {
		return nil, fmt.Errorf("%w: resilience area of %d bytes cannot hold one checksum", ErrCorrupt, r.AreaSize)
	}
	// The position: the end of the crypt part at the data offset.
	st.done = rc.layout.size
	for _, s := range m.Segments {
		if isBackupSegment(s) || s.Offset != st.offset {
			continue
		}
		switch {
		case s.Type == "linear":
			st.done = 0
		case s.Type == "crypt" && !s.Dynamic:
			st.done = s.Size
		}
	}
	if r.Hot != nil {
		x, l := r.Hot.Offset-min(r.Hot.Offset, st.offset), r.Hot.Size
		if r.Hot.Offset < st.offset || r.Hot.Dynamic || l == 0 || l%rc.block != 0 || x%rc.block != 0 ||
			x+l > rc.layout.size || l/rc.block*sha256.Size > r.AreaSize || x != st.done {
			return nil, fmt.Errorf("%w: hot zone segment %d", ErrCorrupt, r.Hot.ID)
		}
		if err := rc.recoverBack(x, l); err != nil {
			return nil, err
		}
	} else if st.done%rc.block != 0 || st.done > rc.layout.size {
		return nil, fmt.Errorf("%w: decryption position %d", ErrCorrupt, st.done)
	}
	rc.progress = rc.layout.size - st.done
	ok = true
	return rc, nil
}

// openOldKey opens the old key of a decryption (its only key) from ids,
// checks the verification digest with it and makes the old cipher.
func (rc *Reencryptor) openOldKey(ctx context.Context, m *metadata, ids []Identity) error {
	secrets, key, err := rc.k.unlockSlots(ctx, m, m.Digests[rc.r.OldDigest], ids, false)
	if err != nil {
		return err
	}
	for _, s := range secrets {
		s.secret.Destroy()
	}
	rc.oldKey = key
	if err := m.verifyReencryptDigest(rc.r, rc.oldKey.Bytes(), nil); err != nil {
		return err
	}
	rc.oldC, err = xts.New(rc.oldKey.Bytes())
	return err
}

// recoverBack finishes the hot zone [x, x+l) a crash left: blocks whose
// hash is the recorded one still hold ciphertext and are decrypted; the
// others are plaintext already. Then the zone is committed done.
func (rc *Reencryptor) recoverBack(x, l uint64) error {
	buf := alignedBuffer(int(l))
	if err := readFull(rc.data, buf, rc.back.offset+x); err != nil {
		return fmt.Errorf("read data at %d: %w", x, err)
	}
	if err := rc.decryptRecorded(buf, x); err != nil {
		return err
	}
	return rc.backWrite(buf, x)
}

// decryptRecorded decrypts in place the blocks of buf, the hot zone at x
// as a crash left it, whose hash is still the one the resilience area
// records: they hold ciphertext; the others are plaintext already.
func (rc *Reencryptor) decryptRecorded(buf []byte, x uint64) error {
	n := uint64(len(buf)) / rc.block
	sums := make([]byte, n*sha256.Size)
	if err := readFull(rc.k.dev, sums, rc.r.AreaOffset); err != nil {
		return fmt.Errorf("read resilience area: %w", err)
	}
	now := rc.checksums(buf)
	for i := uint64(0); i < n; i++ {
		if !bytes.Equal(now[i*sha256.Size:(i+1)*sha256.Size], sums[i*sha256.Size:(i+1)*sha256.Size]) {
			continue // plaintext already
		}
		b := buf[i*rc.block : (i+1)*rc.block]
		if err := rc.oldC.DecryptSectors(b, b, rc.oldSS, (x+i*rc.block)/512, uint64(rc.oldSS/512)); err != nil {
			return err
		}
	}
	return nil
}

// backWrite writes the plaintext of the zone at x, syncs it and commits
// the zone done.
func (rc *Reencryptor) backWrite(buf []byte, x uint64) error {
	if _, err := rc.data.WriteAt(buf, int64(rc.back.offset+x)); err != nil {
		return fmt.Errorf("%w: write data at %d: %w", ErrIO, x, err)
	}
	if err := rc.data.Sync(); err != nil {
		return fmt.Errorf("%w: sync data: %w", ErrIO, err)
	}
	rc.back.done = x
	if err := rc.commitBack(0, 0); err != nil {
		return err
	}
	rc.progress = rc.layout.size - x
	return nil
}

// backStep decrypts the next zone: hash, commit hot, decrypt, write,
// sync, commit done.
func (rc *Reencryptor) backStep() error {
	st := rc.back
	l := min(rc.zone, st.done)
	x := st.done - l
	buf := alignedBuffer(int(l))
	if err := readFull(rc.data, buf, st.offset+x); err != nil {
		return fmt.Errorf("read data at %d: %w", x, err)
	}
	sums := rc.checksums(buf)
	if err := rc.writeResilience(sums); err != nil {
		return err
	}
	if err := rc.commitBack(x, l); err != nil {
		return err
	}
	if err := rc.decryptParallel(buf, x); err != nil {
		return err
	}
	return rc.backWrite(buf, x)
}

// commitBack commits the segments of the current position, with the zone
// [x, x+l) hot when l > 0.
func (rc *Reencryptor) commitBack(x, l uint64) error {
	st := rc.back
	var segs []json.RawMessage
	var crypt []int
	u := func(v uint64) *uint64 { return &v }
	add := func(tmpl json.RawMessage, off uint64, size *uint64, isCrypt bool, flags ...string) error {
		b, err := segmentJSON(tmpl, st.offset+off, off/512, size, flags)
		if isCrypt {
			crypt = append(crypt, len(segs))
		}
		segs = append(segs, b)
		return err
	}
	start := st.done // plaintext from here on
	if l > 0 {
		start = x
	}
	if start > 0 {
		var size *uint64
		if start < rc.layout.size || l > 0 {
			size = u(start)
		}
		if err := add(st.oldTmpl, 0, size, true); err != nil {
			return err
		}
	}
	if l > 0 {
		if err := add(st.newTmpl, x, u(l), false, "in-reencryption"); err != nil {
			return err
		}
	}
	if end := start + l; end < rc.layout.size {
		if err := add(st.newTmpl, end, nil, false); err != nil {
			return err
		}
	}
	crypt = append(crypt, len(segs))
	segs = append(segs, rc.r.Old.Raw, rc.r.New.Raw)
	return rc.commitState(segs, rc.r.OldDigest, crypt)
}

// finishBack ends a decryption whose data is all plaintext: one commit
// leaves one linear segment, drops every keyslot of the old key, the
// reencrypt keyslot, the digests left bound to nothing and the
// requirement (as cryptsetup does); then the old keyslots' areas are
// wiped. What is left is a header with no keyslot: the data device is
// plain.
func (rc *Reencryptor) finishBack() error {
	k := rc.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	m := k.meta
	drop := []int{rc.r.Keyslot}
	var areas []*Keyslot
	if d := m.Digests[rc.r.OldDigest]; d != nil {
		for _, id := range d.Keyslots {
			drop = append(drop, id)
			if ks := m.Keyslots[id]; ks != nil {
				areas = append(areas, ks)
			}
		}
	}
	seg, err := segmentJSON(rc.r.New.Raw, rc.r.New.Offset, 0, nil, nil)
	if err != nil {
		return err
	}
	e, err := m.withState([]json.RawMessage{seg}, rc.r.OldDigest, nil)
	if err != nil {
		return err
	}
	if e, err = e.endReencryption(k.bin.HdrSize, drop); err != nil {
		return err
	}
	n, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return err
	}
	if err := k.commit(n); err != nil {
		return err
	}
	for _, ks := range areas {
		if err := wipeArea(k.dev, ks.AreaOffset, ks.AreaSize); err != nil {
			return fmt.Errorf("decryption finished, but wiping old keyslot %d failed: %w", ks.ID, err)
		}
	}
	return nil
}
