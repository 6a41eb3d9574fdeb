package keyring

import (
	"errors"
	"fmt"
)

// Metadata updates are crash-safe because the two header copies are never
// both in flight: the new metadata (seqid+1) is written to the primary copy
// and synced, then to the secondary copy and synced. A crash while the
// primary is written leaves a torn primary (bad checksum) and the old,
// valid secondary; a crash after it leaves a valid primary with the higher
// seqid. Either way Open finds one valid copy, and the one with the higher
// seqid is the newest complete state. Keyslot areas are written and synced
// before the header that names them, and wiped only after a header that
// no longer needs them… or before the header is updated when the old KEK
// must stop working even if the update is lost (see RemoveKeyslot).

// commit writes m as the new metadata, both copies, in the order above.
// The caller holds k.mu.
func (k *Keyring) commit(m *metadata) error {
	if err := k.beginUpdate(); err != nil {
		return err
	}
	text, err := m.marshal()
	if err != nil {
		return err
	}
	seq := k.bin.SeqID + 1
	for i := range 2 {
		if err := k.writeCopy(i, text, seq); err != nil {
			// The device is in an unknown state; re-read what is there so
			// the in-memory view matches the disk.
			if lerr := k.load(); lerr != nil {
				return fmt.Errorf("%w (and re-reading the header failed: %v)", err, lerr)
			}
			return err
		}
	}
	k.bin.SeqID = seq
	k.meta = m
	k.copyErr = [2]error{}
	return nil
}

// checkSeqID refuses to write when the header on disk is newer than the
// one this keyring holds: writing would silently undo another process's
// update (cryptsetup makes the same check).
func (k *Keyring) checkSeqID() error {
	bin := make([]byte, binHeaderSize)
	for i, off := range []uint64{0, k.bin.HdrSize} {
		if readFull(k.dev, bin, off) != nil {
			continue
		}
		h, err := parseBinHeader(bin, i == 1, off)
		if err != nil || h.UUID != k.bin.UUID {
			continue
		}
		if h.SeqID > k.bin.SeqID {
			return fmt.Errorf("%w (seqid %d on disk, %d in memory)", ErrStale, h.SeqID, k.bin.SeqID)
		}
	}
	return nil
}

// Reload re-reads the header from the device, e.g. after ErrStale.
func (k *Keyring) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.load()
}

// writeCopy writes header copy i (0 primary, 1 secondary) with JSON text
// and sequence number seq, then syncs.
func (k *Keyring) writeCopy(i int, text []byte, seq uint64) error {
	h := k.bin
	h.Secondary = i == 1
	h.HdrOffset = 0
	if h.Secondary {
		h.HdrOffset = h.HdrSize
	}
	h.Salt = k.salts[i]
	h.SeqID = seq
	buf, err := h.encodeCopy(text)
	if err != nil {
		return err
	}
	name := [2]string{"primary", "secondary"}[i]
	if _, err := k.dev.WriteAt(buf, int64(h.HdrOffset)); err != nil {
		return fmt.Errorf("%w: write %s header: %w", ErrIO, name, err)
	}
	if err := k.dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync %s header: %w", ErrIO, name, err)
	}
	return nil
}

// beginUpdate checks, before anything is written, that the metadata may
// be changed: not LUKS1, not read-only, and not changed on disk by
// someone else (a keyslot area chosen from stale metadata could be
// another writer's new keyslot).
func (k *Keyring) beginUpdate() error {
	if err := k.writable(); err != nil {
		return err
	}
	return k.checkSeqID()
}

// beginAdditiveUpdate is beginUpdate for updates that only add (a
// keyslot, a token): when another process changed the header, they are
// still meaningful on the newer metadata, so it is re-read instead of
// failing with ErrStale.
func (k *Keyring) beginAdditiveUpdate() error {
	err := k.beginUpdate()
	if errors.Is(err, ErrStale) {
		return k.load()
	}
	return err
}

func (k *Keyring) writable() error {
	if k.v1 != nil {
		return fmt.Errorf("%w: encblk does not change LUKS1 metadata (cryptsetup convert --type luks2 converts it)", ErrReadOnly)
	}
	if k.readOnly {
		return fmt.Errorf("%w: opened read-only", ErrReadOnly)
	}
	return nil
}

// Repair rewrites a header copy that is damaged or obsolete from the good
// one, like cryptsetup repair. It reports what it repaired ("" when both
// copies were good). Nothing else changes.
func (k *Keyring) Repair() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return "", err
	}
	text, err := k.meta.marshal()
	if err != nil {
		return "", err
	}
	var fixed string
	for i, name := range []string{"primary", "secondary"} {
		if k.copyErr[i] == nil {
			continue
		}
		if err := k.writeCopy(i, text, k.bin.SeqID); err != nil {
			return fixed, err
		}
		if fixed != "" {
			fixed += ", "
		}
		fixed += fmt.Sprintf("%s header (%s)", name, reason(k.copyErr[i]))
		k.copyErr[i] = nil
	}
	return fixed, nil
}
