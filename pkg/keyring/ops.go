package keyring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/encblk/encblk/internal/secmem"
)

// KeyslotOptions modify AddKeyslot.
type KeyslotOptions struct {
	KDF KDFParams
	// Slot is the keyslot id to use; nil picks the lowest free one.
	Slot *int
}

// AddKeyslot wraps dek (the volume key, e.g. from Unlock) for a new KEK r
// in a new keyslot and commits it, with r's tokens bound to it. It
// returns the new keyslot's id. dek is checked against the volume's digest
// first, so a wrong key can never be wrapped. Safe while the volume is
// served: nothing the data path reads changes. If another process changed
// the header since it was read, it is re-read first.
func (k *Keyring) AddKeyslot(ctx context.Context, dek *secmem.Buffer, r Recipient, opts *KeyslotOptions) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginAdditiveUpdate(); err != nil {
		return -1, err
	}
	e, id, err := k.stageKeyslot(ctx, k.meta, dek, r, opts)
	if err != nil {
		return -1, err
	}
	if err := k.commit(e); err != nil {
		return -1, err
	}
	return id, nil
}

// stageKeyslot writes and syncs a new keyslot area wrapping dek for r and
// returns m with the keyslot (and r's tokens, bound to it) added, not
// committed: until a commit names it, the area is unreferenced and opens
// nothing. dek is checked against m's digest first, so a wrong key can
// never be wrapped. The caller holds k.mu.
func (k *Keyring) stageKeyslot(ctx context.Context, m *metadata, dek *secmem.Buffer, r Recipient, opts *KeyslotOptions) (*metadata, int, error) {
	var o KeyslotOptions
	if opts != nil {
		o = *opts
	}
	kdf, err := o.KDF.resolve(ctx, 64)
	if err != nil {
		return nil, -1, err
	}
	if err := m.checkRequirements(); err != nil {
		return nil, -1, err
	}
	d := m.segmentDigest(lowestSegment(m))
	if d == nil {
		return nil, -1, fmt.Errorf("%w: no digest for the data segment", ErrCorrupt)
	}
	if ok, err := d.verify(dek.Bytes()); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("the given volume key does not match the volume's digest")
		}
		return nil, -1, err
	}
	id, err := m.freeKeyslotID(o.Slot)
	if err != nil {
		return nil, -1, err
	}
	areaOff, areaSize, err := m.findArea(k.bin.HdrSize, keyslotAreaSize(dek.Len()))
	if err != nil {
		return nil, -1, err
	}
	secret, tokens, err := r.Wrap(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("new KEK: %w", err)
	}
	ks, err := newKeyslot(ctx, k.dev, dek.Bytes(), secret.Bytes(), kdf, areaOff, areaSize, 1)
	secret.Destroy()
	if err != nil {
		return nil, -1, err
	}
	e := m.clone()
	e.keyslots[strconv.Itoa(id)] = ks
	if e.digests[strconv.Itoa(d.ID)], err = setField(e.digests[strconv.Itoa(d.ID)], "keyslots", idStrings(append(slices.Clone(d.Keyslots), id))); err != nil {
		return nil, -1, err
	}
	// Parse once so that the new keyslot exists for its tokens to name.
	e2, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return nil, -1, err
	}
	if err := e2.addTokens(tokens, id); err != nil {
		return nil, -1, err
	}
	if e2, err = e2.reparse(k.bin.HdrSize); err != nil {
		return nil, -1, err
	}
	return e2, id, nil
}

func (m *metadata) freeKeyslotID(want *int) (int, error) {
	if want != nil {
		if *want < 0 || *want >= maxObjects {
			return -1, fmt.Errorf("keyslot %d out of range (0 … %d)", *want, maxObjects-1)
		}
		if m.Keyslots[*want] != nil {
			return -1, fmt.Errorf("keyslot %d is in use", *want)
		}
		return *want, nil
	}
	for i := range maxObjects {
		if m.Keyslots[i] == nil {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: all %d keyslots are in use", ErrNoSpace, maxObjects)
}

// findArea returns the first gap of size bytes in the keyslots area.
func (m *metadata) findArea(hdrSize, size uint64) (uint64, uint64, error) {
	used := slices.SortedFunc(maps.Values(m.Keyslots), func(a, b *Keyslot) int { return cmpU64(a.AreaOffset, b.AreaOffset) })
	off, end := 2*hdrSize, 2*hdrSize+m.Config.KeyslotsSize
	for _, ks := range used {
		if off+size <= ks.AreaOffset {
			break
		}
		off = max(off, ks.AreaOffset+ks.AreaSize)
	}
	if off+size > end {
		return 0, 0, fmt.Errorf("%w: keyslots area is full", ErrNoSpace)
	}
	return off, size, nil
}

// addTokens stores tokens bound to keyslot slot, at the lowest free ids.
func (m *metadata) addTokens(tokens []json.RawMessage, slot int) error {
	for _, t := range tokens {
		if _, err := m.addToken(t, []int{slot}); err != nil {
			return err
		}
	}
	return nil
}

func (m *metadata) addToken(t json.RawMessage, keyslots []int) (int, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(t, &obj); err != nil || obj == nil {
		return -1, fmt.Errorf("token is not a JSON object")
	}
	var typ string
	if err := json.Unmarshal(obj["type"], &typ); err != nil || typ == "" {
		return -1, fmt.Errorf("token has no \"type\" string")
	}
	id := -1
	for i := range maxObjects {
		if _, used := m.tokens[strconv.Itoa(i)]; !used {
			id = i
			break
		}
	}
	if id < 0 {
		return -1, fmt.Errorf("%w: all %d tokens are in use", ErrNoSpace, maxObjects)
	}
	if keyslots != nil {
		b, _ := json.Marshal(idStrings(keyslots))
		obj["keyslots"] = b
	} else if _, ok := obj["keyslots"]; !ok {
		obj["keyslots"] = json.RawMessage("[]")
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return -1, err
	}
	m.tokens[strconv.Itoa(id)] = raw
	return id, nil
}

// RemoveKeyslot destroys keyslot slot: its area is overwritten and synced
// first, so the KEK stops working even if the process dies before the
// metadata update, then the metadata drops it. Tokens bound only to it
// that describe it (encblk's, clevis's, systemd's: describesItsKeyslot)
// are removed; other tools' tokens are kept, unbound, as cryptsetup does. Removing the last keyslot that opens the volume is refused (see
// Erase).
func (k *Keyring) RemoveKeyslot(ctx context.Context, slot int) error {
	return k.RemoveKeyslots(ctx, []int{slot})
}

// RemoveKeyslots is RemoveKeyslot for several keyslots at once: every
// area is overwritten and synced, then ONE metadata update drops them all,
// so a crash leaves either all of them named (but no longer opening) or
// none. Removing every keyslot that opens the volume is refused.
func (k *Keyring) RemoveKeyslots(ctx context.Context, slots []int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	m := k.meta
	for _, slot := range slots {
		if m.Keyslots[slot] == nil {
			return fmt.Errorf("%w: %d", ErrKeyslotNotFound, slot)
		}
	}
	if d := m.segmentDigest(lowestSegment(m)); d != nil && len(d.Keyslots) > 0 &&
		!slices.ContainsFunc(d.Keyslots, func(s int) bool { return !slices.Contains(slots, s) }) {
		if len(slots) == 1 {
			return fmt.Errorf("keyslot %d is the last one that opens the volume; use erase to destroy all keys", slots[0])
		}
		return fmt.Errorf("keyslots %v are all that open the volume; use erase to destroy all keys", slots)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e, err := m.withoutKeyslots(slots)
	if err != nil {
		return err
	}
	for _, slot := range slots {
		ks := m.Keyslots[slot]
		if err := wipeArea(k.dev, ks.AreaOffset, ks.AreaSize); err != nil {
			return err
		}
	}
	return k.commit(e)
}

// describesItsKeyslot reports whether tokens of type typ only make sense
// bound to their keyslot, so that removing the keyslot removes them:
// encblk's own, clevis's (as clevis luks unbind) and systemd-cryptenroll's
// (as --wipe-slot). Other tools' tokens are kept, unbound, as cryptsetup
// does.
func describesItsKeyslot(typ string) bool {
	return strings.HasPrefix(typ, "encblk-") || typ == "clevis" || strings.HasPrefix(typ, "systemd-")
}

// withoutKeyslots returns a copy of m with the keyslots removed from every
// section.
func (m *metadata) withoutKeyslots(slots []int) (*metadata, error) {
	e := m.clone()
	drop := func(list []int) []int {
		return slices.DeleteFunc(slices.Clone(list), func(i int) bool { return slices.Contains(slots, i) })
	}
	for _, s := range slots {
		delete(e.keyslots, strconv.Itoa(s))
	}
	var err error
	for id, d := range m.Digests {
		if kept := drop(d.Keyslots); len(kept) != len(d.Keyslots) {
			if e.digests[strconv.Itoa(id)], err = setField(e.digests[strconv.Itoa(id)], "keyslots", idStrings(kept)); err != nil {
				return nil, err
			}
		}
	}
	for id, t := range m.Tokens {
		kept := drop(t.Keyslots)
		switch {
		case len(kept) == len(t.Keyslots):
		case len(kept) == 0 && describesItsKeyslot(t.Type):
			delete(e.tokens, strconv.Itoa(id))
		default:
			if e.tokens[strconv.Itoa(id)], err = setField(e.tokens[strconv.Itoa(id)], "keyslots", idStrings(kept)); err != nil {
				return nil, err
			}
		}
	}
	return e.reparse(m.Config.JSONSize + binHeaderSize)
}

// RotateKEK replaces the KEK old by new: it finds the keyslot old opens,
// wraps the same DEK for new in a new keyslot area (written and synced,
// but named by no header yet), then commits ONE metadata update that adds
// the new keyslot and drops the old one (with the encblk tokens bound only
// to it), and finally wipes the old keyslot's area. The DEK and the data
// do not change.
//
// Crash safety, at every write and sync: until the primary header copy
// of the commit is synced, the old KEK opens the volume and the new one
// does not; from then on the new one does and the old one does not (the
// newest valid copy wins; a stale secondary is repaired from it). The two
// never both work, and a nil error means the old keyslot's area has been
// overwritten too. A crash between the commit and that wipe leaves the
// old keyslot's bytes in an area no header names: only a header backup
// taken before the rotation could still use them (a backup always can;
// only reencryption retires a DEK). It returns the retired and the new
// keyslot ids.
func (k *Keyring) RotateKEK(ctx context.Context, old Identity, new Recipient, opts *KeyslotOptions) (oldSlot, newSlot int, err error) {
	oldSlot, dek, err := k.Match(ctx, old)
	if err != nil {
		return -1, -1, err
	}
	defer dek.Destroy()
	k.mu.Lock()
	defer k.mu.Unlock()
	ks := k.meta.Keyslots[oldSlot]
	if ks == nil {
		return oldSlot, -1, fmt.Errorf("%w: keyslot %d vanished during the rotation", ErrStale, oldSlot)
	}
	oldKS := *ks
	if err := k.beginAdditiveUpdate(); err != nil {
		return oldSlot, -1, err
	}
	// Another process may have changed the header since Match: the slot
	// must still be the one the old KEK opened.
	if now := k.meta.Keyslots[oldSlot]; now == nil || !bytes.Equal(now.KDF.Salt, oldKS.KDF.Salt) {
		return oldSlot, -1, fmt.Errorf("%w: keyslot %d was replaced by another process; nothing rotated", ErrStale, oldSlot)
	}
	e, newSlot, err := k.stageKeyslot(ctx, k.meta, dek, new, opts)
	if err != nil {
		return oldSlot, -1, err
	}
	if e, err = e.withoutKeyslots([]int{oldSlot}); err != nil {
		return oldSlot, -1, err
	}
	if err := k.commit(e); err != nil {
		return oldSlot, -1, err
	}
	if err := wipeArea(k.dev, oldKS.AreaOffset, oldKS.AreaSize); err != nil {
		return oldSlot, newSlot, fmt.Errorf("rotated to keyslot %d, but wiping old keyslot %d's area failed (no header names it any more): %w", newSlot, oldSlot, err)
	}
	return oldSlot, newSlot, nil
}

// Erase destroys every keyslot (crypto-erase): each area is overwritten and
// synced, then the metadata is committed without keyslots. No KEK opens
// the volume afterwards; the data is unrecoverable unless someone kept the
// DEK or a header backup.
func (k *Keyring) Erase(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	m := k.meta
	ids := slices.Sorted(maps.Keys(m.Keyslots))
	e, err := m.withoutKeyslots(ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		ks := m.Keyslots[id]
		if err := wipeArea(k.dev, ks.AreaOffset, ks.AreaSize); err != nil {
			return err
		}
	}
	return k.commit(e)
}
