package keyring

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Decryption in place of a volume whose header is on its data device, as
// cryptsetup 2.6 does it for `cryptsetup reencrypt --decrypt --header
// NEWFILE DEVICE` ("datashift-checksum" resilience, direction forward,
// requirement online-reencrypt-v3): the header moves out to NEWFILE and
// the plaintext moves back to the start of the device.
//
// The device holds the header in [0, S) and the ciphertext of the D bytes
// of data at S (S: the data offset, which is also the shift). Data byte x
// ends as plaintext at x. The first M = min(S, 20 MiB, D) bytes of
// ciphertext are first copied to [0, M) (the "moved segment"), over the
// header, which by then is in NEWFILE and wiped from the device. Then the
// data is decrypted forward from M, in zones of at most S bytes: a zone
// [x, x+l) is read at S+x and written as plaintext at x, where nothing
// still needed lies (its ciphertext was decrypted already, or was the
// header), so a crash inside a zone is recovered by doing the zone again
// (plain "datashift": nothing is stored). Last, the moved segment is
// decrypted in place, protected like a checksum zone: the sha256 of each
// block of its ciphertext goes to the resilience area before it is
// rewritten, and a block whose hash still matches after a crash holds
// ciphertext.
//
// The metadata of each state (all in NEWFILE; P the plaintext done after
// the moved segment, x = M+P):
//
//	start:  0 crypt [0, M) at 0 | 1 crypt at S+M (iv_tweak M/512, dynamic)
//	hot:    0 crypt [0, M) | 1 linear [M, x) when P > 0 |
//	        2 linear [x, x+l) in-reencryption | 3 crypt at S+x+l, dynamic,
//	        when x+l < D
//	post:   0 crypt [0, M) | 1 linear [M, x) ("dynamic" once x = D) |
//	        2 crypt at S+x, dynamic, when x < D
//	moved:  0 linear [0, M) in-reencryption | 1 linear at M, dynamic
//	plain:  0 linear at 0, dynamic (cryptsetup's; encblk goes from the
//	        moved segment's hot state to the end in one commit: see
//	        movedWrite)
//	end:    0 linear at 0, dynamic, no keyslot, no backups
//
// then the backups: backup-previous (the old crypt segment at S),
// backup-final (linear at 0, dynamic) and backup-moved-segment (crypt
// [0, M) at 0); every crypt segment is bound to the old key's digest, and
// there is no new key. When all is plain, the last S bytes of the device
// (old ciphertext, decrypted already) are overwritten with random bytes,
// and one commit drops every keyslot, the digests and the requirement:
// NEWFILE is left a header with no keyslot and one linear segment.

// defaultMovedSegment is cryptsetup's cap on the moved segment
// (LUKS2_DEFAULT_NONE_REENCRYPTION_LENGTH).
const defaultMovedSegment = 20 << 20

// decryptShiftVersion is the reencryption requirement version cryptsetup
// 2.6 writes for a decryption with a data shift.
const decryptShiftVersion = 3

// unshiftState is the position of a decryption with a data shift.
type unshiftState struct {
	shift   uint64 // S: the old data offset, and the shift
	moved   uint64 // M: the moved segment's length
	size    uint64 // D: data bytes
	next    uint64 // x: the next zone of the part after M; D when done
	plain   bool   // the moved segment is decrypted too: all done
	oldTmpl json.RawMessage
}

// StartDecryptShift records the decryption in place of the volume whose
// header k reads from the data device data (size bytes), with the header
// moved out to newHdr, as cryptsetup reencrypt --decrypt --header NEWFILE
// does: one KEK among ids must open the volume key; then the header area
// is copied to newHdr and synced, both header copies on data are wiped,
// the first M bytes of ciphertext are copied to the start of data and
// synced, and the reencryption is committed in newHdr. It returns the
// keyring of newHdr; OpenReencryption and Run (or cryptsetup reencrypt
// --resume-only --header NEWFILE) then decrypt the data. opts.HotZone,
// when set, caps M (cryptsetup's --hotzone-size).
//
// Nothing is written when it refuses: a reencryption already recorded, a
// volume that is not one aes-xts-plain64 segment at a data offset, a KEK
// that opens nothing. A crash after the header copy and before the commit
// leaves the volume's header in newHdr (valid, recording nothing) and its
// data in place at the data offset; the device's own header is gone (as
// with cryptsetup): cryptsetup luksHeaderRestore (or encblk header
// restore) with newHdr as the backup puts it back.
func (k *Keyring) StartDecryptShift(ctx context.Context, ids []Identity, data DataDevice, size uint64, newHdr DataDevice, opts *ReencryptOptions) (*Keyring, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.writable(); err != nil {
		return nil, err
	}
	m := k.meta
	seg, d, err := m.soleSegment("decryption")
	if err != nil {
		return nil, err
	}
	S := seg.Offset
	ss := uint64(seg.SectorSize)
	block := max(4096, ss)
	switch {
	case S == 0:
		return nil, fmt.Errorf("%w: the data starts at offset 0: the header is detached already (decrypt it with its --header)", ErrUnsupported)
	case S%block != 0:
		return nil, fmt.Errorf("%w: data offset %d is not a multiple of %d bytes", ErrUnsupported, S, block)
	case size <= S:
		return nil, fmt.Errorf("%w: the device (%d bytes) ends before its data offset %d", ErrCorrupt, size, S)
	case (size-S)%ss != 0:
		return nil, fmt.Errorf("%w: data size %d is not whole %d-byte sectors", ErrUnsupported, size-S, ss)
	}
	D := size - S
	M := min(S, defaultMovedSegment, D)
	if opts != nil && opts.HotZone != 0 {
		M = min(M, opts.HotZone)
	}
	if M%block != 0 {
		return nil, fmt.Errorf("%w: the moved segment (%d bytes) is not whole %d-byte checksum blocks", ErrUnsupported, M, block)
	}
	secrets, key, err := k.unlockSlots(ctx, m, d, ids, false)
	if err != nil {
		return nil, err
	}
	defer key.Destroy()
	for _, s := range secrets {
		s.secret.Destroy()
	}

	// The metadata of the start state, made and checked before anything
	// is written.
	e := m.clone()
	reSlot, err := m.freeKeyslotID(nil)
	if err != nil {
		return nil, err
	}
	// Not checksumKeyslot's area: this one must hold the checksums of the
	// whole moved segment, and it records the shift.
	areaOff, areaSize := m.maxGap(k.bin.HdrSize)
	areaSize -= areaSize % 4096
	if areaSize < 4096 || M/block*sha256.Size > areaSize {
		return nil, fmt.Errorf("%w: the keyslots area has no room for the checksums of a %d-byte moved segment", ErrNoSpace, M)
	}
	if e.keyslots[strconv.Itoa(reSlot)], err = reencryptKeyslot(ReencryptModeDecrypt, "forward", map[string]any{
		"type": "datashift-checksum", "offset": strconv.FormatUint(areaOff, 10),
		"size": strconv.FormatUint(areaSize, 10), "hash": "sha256", "sector_size": block,
		"shift_size": strconv.FormatUint(S, 10)}); err != nil {
		return nil, err
	}
	u := func(v uint64) *uint64 { return &v }
	first, err := segmentJSON(seg.Raw, 0, 0, u(M), nil)
	if err != nil {
		return nil, err
	}
	segs := []json.RawMessage{first}
	if D > M {
		rest, err := segmentJSON(seg.Raw, S+M, M/512, nil, nil)
		if err != nil {
			return nil, err
		}
		segs = append(segs, rest)
	}
	moved, err := segmentJSON(seg.Raw, 0, 0, u(M), []string{"backup-moved-segment"})
	if err != nil {
		return nil, err
	}
	previous, err := segmentJSON(seg.Raw, S, 0, nil, []string{"backup-previous"})
	if err != nil {
		return nil, err
	}
	final, err := json.Marshal(map[string]any{"type": "linear", "offset": "0", "size": "dynamic", "flags": []string{"backup-final"}})
	if err != nil {
		return nil, err
	}
	// cryptsetup's order at the start: the moved backup first.
	segs = append(segs, moved, previous, final)
	e.segments = map[string]json.RawMessage{}
	var crypt []int
	for i, s := range segs {
		e.segments[strconv.Itoa(i)] = s
		if i < len(segs)-1 {
			crypt = append(crypt, i)
		}
	}
	if e.digests[strconv.Itoa(d.ID)], err = setField(e.digests[strconv.Itoa(d.ID)], "segments", idStrings(crypt)); err != nil {
		return nil, err
	}
	if err := e.setRequirementVersion(decryptShiftVersion); err != nil {
		return nil, err
	}
	n, err := e.withVerificationDigest(k.bin.HdrSize, key.Bytes(), nil, max(d.Iterations, minPBKDF2Iterations))
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// The header area to newHdr, durably.
	area := alignedBuffer(int(2*k.bin.HdrSize + m.Config.KeyslotsSize))
	if err := readFull(k.dev, area, 0); err != nil {
		return nil, fmt.Errorf("%w: read the header area: %w", ErrIO, err)
	}
	if _, err := newHdr.WriteAt(area, 0); err != nil {
		return nil, fmt.Errorf("%w: write the new header file: %w", ErrIO, err)
	}
	if err := newHdr.Sync(); err != nil {
		return nil, fmt.Errorf("%w: sync the new header file: %w", ErrIO, err)
	}
	nk, err := openDevice(newHdr, false)
	if err != nil {
		return nil, fmt.Errorf("the header written to the new file does not read back: %w", err)
	}
	if nk.bin.UUID != k.bin.UUID || nk.bin.SeqID != k.bin.SeqID {
		return nil, fmt.Errorf("%w: the header written to the new file reads back as another", ErrIO)
	}
	// Both header copies on the device wiped (as cryptsetup's wipe of the
	// signatures), then the moved segment over them.
	zero := alignedBuffer(4096)
	for _, off := range []uint64{0, k.bin.HdrSize} {
		if _, err := data.WriteAt(zero, int64(off)); err != nil {
			return nil, fmt.Errorf("%w: wipe the header on the device: %w", ErrIO, err)
		}
	}
	if err := data.Sync(); err != nil {
		return nil, fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	buf := alignedBuffer(int(M))
	if err := readFull(data, buf, S); err != nil {
		return nil, fmt.Errorf("%w: read the data's head: %w", ErrIO, err)
	}
	if _, err := data.WriteAt(buf, 0); err != nil {
		return nil, fmt.Errorf("%w: move the data's head: %w", ErrIO, err)
	}
	if err := data.Sync(); err != nil {
		return nil, fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	if err := nk.commit(n); err != nil {
		return nil, err
	}
	return nk, nil
}

// openUnshift loads a decryption with a data shift (cryptsetup's or
// encblk's): the old key from ids, the verification digest (version 3),
// the position from the segments; a hot zone left by a crash is done
// again (a zone after the moved segment) or recovered from its checksums
// (the moved segment).
func (k *Keyring) openUnshift(ctx context.Context, m *metadata, r *Reencryption, ids []Identity, data DataDevice, dataEnd uint64) (*Reencryptor, error) {
	switch {
	case r.Direction != "forward" || r.Resilience != "datashift-checksum" || r.Moved == nil:
		return nil, fmt.Errorf("%w: decryption with a data shift with resilience %q, direction %q (encblk resumes datashift-checksum, forward, with a moved segment; cryptsetup reencrypt --resume-only finishes it)", ErrUnsupported, r.Resilience, r.Direction)
	case r.Hash != "sha256":
		return nil, fmt.Errorf("%w: decryption checksum hash %q (encblk resumes sha256)", ErrUnsupported, r.Hash)
	case r.Old.Type != "crypt" || r.Old.Encryption != "aes-xts-plain64" || r.New.Type != "linear" || r.Moved.Type != "crypt" || r.Moved.Encryption != r.Old.Encryption:
		return nil, fmt.Errorf("%w: decryption from %s %s to %s (moved segment %s)", ErrUnsupported, r.Old.Type, r.Old.Encryption, r.New.Type, r.Moved.Type)
	case r.OldDigest < 0 || m.Digests[r.OldDigest] == nil || r.NewDigest >= 0:
		return nil, fmt.Errorf("%w: decryption without the old key's digest, or with a new key", ErrCorrupt)
	case m.segmentDigest(r.Moved.ID) == nil || m.segmentDigest(r.Moved.ID).ID != r.OldDigest:
		return nil, fmt.Errorf("%w: the moved segment is not bound to the old key", ErrCorrupt)
	}
	S, M, block := r.ShiftSize, r.Moved.Size, uint64(r.HashBlock)
	ss := uint64(r.Old.SectorSize)
	switch {
	case r.Old.Offset != S || r.Old.IVTweak != 0 || !r.Old.Dynamic || r.New.Offset != 0 || !r.New.Dynamic:
		return nil, fmt.Errorf("%w: decryption layout (old data at %d, new at %d, shift %d) or fixed sizes", ErrUnsupported, r.Old.Offset, r.New.Offset, S)
	case r.Moved.Offset != 0 || r.Moved.Dynamic || r.Moved.IVTweak != 0 || r.Moved.SectorSize != r.Old.SectorSize:
		return nil, fmt.Errorf("%w: moved segment at %d (iv_tweak %d)", ErrUnsupported, r.Moved.Offset, r.Moved.IVTweak)
	case dataEnd <= S || (dataEnd-S)%ss != 0:
		return nil, fmt.Errorf("%w: data of %d bytes from %d is not whole %d-byte sectors", ErrUnsupported, dataEnd-min(dataEnd, S), S, ss)
	case M == 0 || M > S || M > dataEnd-S || M%block != 0 || block%ss != 0 || S%ss != 0:
		return nil, fmt.Errorf("%w: moved segment of %d bytes, shift %d, checksum block %d", ErrCorrupt, M, S, block)
	case M/block*sha256.Size > r.AreaSize:
		return nil, fmt.Errorf("%w: resilience area of %d bytes cannot hold the moved segment's checksums", ErrCorrupt, r.AreaSize)
	}
	st := &unshiftState{shift: S, moved: M, size: dataEnd - S, oldTmpl: r.Old.Raw}
	rc := &Reencryptor{k: k, data: data, r: r, oldSS: r.Old.SectorSize, newSS: 512, block: block, unshift: st}
	rc.layout.size = st.size
	ok := false
	defer func() {
		if !ok {
			rc.Close()
		}
	}()
	if err := rc.openOldKey(ctx, m, ids); err != nil {
		return nil, err
	}
	x, l, err := st.position(m)
	if err != nil {
		return nil, err
	}
	switch {
	case l == 0:
		// Clean.
	case x == 0:
		if err := rc.recoverMoved(); err != nil {
			return nil, err
		}
	default:
		if err := rc.unshiftZone(x, l); err != nil {
			return nil, err
		}
	}
	rc.progress = st.progress()
	ok = true
	return rc, nil
}

// position reads the state from the data segments: it sets next and
// plain, and returns the hot zone [x, x+l) (l = 0 when clean). Segments
// are not covered by the verification digest: anything but a state of
// the layout above is ErrCorrupt.
func (st *unshiftState) position(m *metadata) (x, l uint64, err error) {
	var segs []*Segment
	for _, id := range slices.Sorted(maps.Keys(m.Segments)) {
		if s := m.Segments[id]; !isBackupSegment(s) {
			segs = append(segs, s)
		}
	}
	bad := func() (uint64, uint64, error) {
		return 0, 0, fmt.Errorf("%w: the data segments are not a state of a decryption with a data shift of %d (moved segment %d, data %d)", ErrCorrupt, st.shift, st.moved, st.size)
	}
	hot := func(s *Segment) bool { return slices.Contains(s.Flags, "in-reencryption") }
	isLinear := func(s *Segment, off uint64) bool { return s.Type == "linear" && s.Offset == off && !hot(s) }
	// crypt part at S+x, from x on, to the end.
	isRest := func(s *Segment, x uint64) bool {
		return s.Type == "crypt" && s.Offset == st.shift+x && s.IVTweak == x/512 && s.Dynamic && !hot(s) && x < st.size
	}
	if len(segs) == 0 {
		return bad()
	}
	s0 := segs[0]
	if s0.Type == "linear" {
		// The moved segment is done (end) or hot.
		switch {
		case len(segs) == 1 && isLinear(s0, 0) && s0.Dynamic:
			st.next, st.plain = st.size, true
			return 0, 0, nil
		case hot(s0) && s0.Offset == 0 && !s0.Dynamic && s0.Size == st.moved &&
			(len(segs) == 1 && st.moved == st.size || len(segs) == 2 && isLinear(segs[1], st.moved) && segs[1].Dynamic):
			st.next = st.size
			return 0, st.moved, nil
		}
		return bad()
	}
	if s0.Type != "crypt" || s0.Offset != 0 || s0.Dynamic || s0.Size != st.moved || s0.IVTweak != 0 || hot(s0) {
		return bad()
	}
	rest := segs[1:]
	x = st.moved
	if len(rest) > 0 && isLinear(rest[0], st.moved) {
		lin := rest[0]
		rest = rest[1:]
		if lin.Dynamic {
			// All plain after the moved segment.
			if len(rest) != 0 {
				return bad()
			}
			st.next = st.size
			return 0, 0, nil
		}
		if lin.Size == 0 || lin.Size > st.size-st.moved {
			return bad()
		}
		x += lin.Size
	}
	switch {
	case len(rest) == 1 && isRest(rest[0], x):
		st.next = x
		return 0, 0, nil
	case len(rest) >= 1 && hot(rest[0]) && rest[0].Type == "linear" && rest[0].Offset == x && !rest[0].Dynamic:
		l = rest[0].Size
		if l == 0 || l > st.shift || x+l > st.size || (x+l < st.size) != (len(rest) == 2) || len(rest) == 2 && !isRest(rest[1], x+l) {
			return bad()
		}
		st.next = x
		return x, l, nil
	case len(rest) == 0 && x == st.moved && st.moved == st.size:
		// Only the moved segment, which is all the data.
		st.next = st.size
		return 0, 0, nil
	}
	return bad()
}

// progress is the plaintext done: the part after the moved segment, then
// all of it.
func (st *unshiftState) progress() uint64 {
	if st.plain {
		return st.size
	}
	return st.next - st.moved
}

// unshiftZone decrypts the zone [x, x+l) after the moved segment: read at
// S+x, decrypt, write at x, sync, commit the state after it. The hot
// state must already be committed (the zone's source is intact until the
// commit after it, so doing it again is its recovery).
func (rc *Reencryptor) unshiftZone(x, l uint64) error {
	st := rc.unshift
	buf := alignedBuffer(int(l))
	if err := readFull(rc.data, buf, st.shift+x); err != nil {
		return fmt.Errorf("read data at %d: %w", st.shift+x, err)
	}
	if err := rc.decryptParallel(buf, x); err != nil {
		return err
	}
	if _, err := rc.data.WriteAt(buf, int64(x)); err != nil {
		return fmt.Errorf("%w: write data at %d: %w", ErrIO, x, err)
	}
	if err := rc.data.Sync(); err != nil {
		return fmt.Errorf("%w: sync data: %w", ErrIO, err)
	}
	st.next = x + l
	if err := rc.commitUnshift(0, 0); err != nil {
		return err
	}
	rc.progress = st.progress()
	return nil
}

// decryptParallel decrypts buf (ciphertext of the data at x, old key) in
// place on every CPU.
func (rc *Reencryptor) decryptParallel(buf []byte, x uint64) error {
	return parallelChunks(buf, func(b []byte, off uint64) error {
		return rc.oldC.DecryptSectors(b, b, rc.oldSS, (x+off)/512, uint64(rc.oldSS/512))
	})
}

// recoverMoved finishes the moved segment's zone a crash left: blocks
// whose hash is the recorded one still hold ciphertext and are
// decrypted; the others are plaintext already.
func (rc *Reencryptor) recoverMoved() error {
	buf := alignedBuffer(int(rc.unshift.moved))
	if err := readFull(rc.data, buf, 0); err != nil {
		return fmt.Errorf("read the moved segment: %w", err)
	}
	if err := rc.decryptRecorded(buf, 0); err != nil {
		return err
	}
	return rc.movedWrite(buf)
}

// movedWrite writes the moved segment's plaintext and syncs it. The state
// "all plain" is not committed: the hot state stays on disk until
// Finish's commit ends the decryption. cryptsetup 2.6.1 writes that state,
// but its own resume from it decrypts the moved segment a second time
// (its position is then the moved segment again): leaving the hot state
// instead, which both tools recover (the checksums no longer match: all
// plain), never hands it that state.
func (rc *Reencryptor) movedWrite(buf []byte) error {
	if _, err := rc.data.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("%w: write data at 0: %w", ErrIO, err)
	}
	if err := rc.data.Sync(); err != nil {
		return fmt.Errorf("%w: sync data: %w", ErrIO, err)
	}
	rc.unshift.plain = true
	rc.progress = rc.unshift.progress()
	return nil
}

// unshiftStep does the next zone: after the moved segment, commit it hot
// and unshiftZone; last, the moved segment: hash its blocks into the
// resilience area, commit it hot, decrypt, write, sync, commit.
func (rc *Reencryptor) unshiftStep() error {
	st := rc.unshift
	if st.next < st.size {
		x := st.next
		l := min(st.shift, st.size-x)
		if err := rc.commitUnshift(x, l); err != nil {
			return err
		}
		return rc.unshiftZone(x, l)
	}
	buf := alignedBuffer(int(st.moved))
	if err := readFull(rc.data, buf, 0); err != nil {
		return fmt.Errorf("read the moved segment: %w", err)
	}
	if err := rc.writeResilience(rc.checksums(buf)); err != nil {
		return err
	}
	if err := rc.commitUnshift(0, st.moved); err != nil {
		return err
	}
	if err := rc.decryptParallel(buf, 0); err != nil {
		return err
	}
	return rc.movedWrite(buf)
}

// commitUnshift commits the segments of the current position, with the
// zone [x, x+l) hot when l > 0 (x = 0: the moved segment).
func (rc *Reencryptor) commitUnshift(x, l uint64) error {
	st := rc.unshift
	var segs []json.RawMessage
	var crypt []int
	u := func(v uint64) *uint64 { return &v }
	lin := func(off uint64, size *uint64, flags ...string) error {
		o := map[string]any{"type": "linear", "offset": strconv.FormatUint(off, 10), "size": "dynamic"}
		if size != nil {
			o["size"] = strconv.FormatUint(*size, 10)
		}
		if len(flags) > 0 {
			o["flags"] = flags
		}
		b, err := json.Marshal(o)
		segs = append(segs, b)
		return err
	}
	cr := func(off, iv uint64, size *uint64) error {
		b, err := segmentJSON(st.oldTmpl, off, iv, size, nil)
		crypt = append(crypt, len(segs))
		segs = append(segs, b)
		return err
	}
	var err error
	switch {
	case l > 0 && x == 0:
		if err = lin(0, u(st.moved), "in-reencryption"); err == nil && st.moved < st.size {
			err = lin(st.moved, nil)
		}
	default:
		// Plain up to end (the hot zone's start, or next), crypt from
		// cryptFrom on.
		end, cryptFrom := st.next, st.next
		if l > 0 {
			end, cryptFrom = x, x+l
		}
		err = cr(0, 0, u(st.moved))
		if err == nil && end > st.moved {
			var size *uint64
			if end < st.size || l > 0 {
				size = u(end - st.moved)
			}
			err = lin(st.moved, size)
		}
		if err == nil && l > 0 {
			err = lin(x, u(l), "in-reencryption")
		}
		if err == nil && cryptFrom < st.size {
			err = cr(st.shift+cryptFrom, cryptFrom/512, nil)
		}
	}
	if err != nil {
		return err
	}
	// The backups, in cryptsetup's order: previous, final, moved.
	bind := []int{len(segs), len(segs) + 2}
	segs = append(segs, rc.r.Old.Raw, rc.r.New.Raw, rc.r.Moved.Raw)
	bind = append(bind, crypt...)
	return rc.commitState(segs, rc.r.OldDigest, bind)
}

// finishUnshift ends a decryption with a data shift whose data is all
// plain: the last S bytes of the device (old ciphertext, decrypted
// already) are overwritten with random bytes and synced, as cryptsetup
// does; then one commit leaves one linear segment and drops every keyslot
// of the old key, the reencrypt keyslot, the digests and the requirement;
// then the old keyslots' areas are wiped. The header file opens nothing
// any more; the device holds the plaintext from offset 0.
func (rc *Reencryptor) finishUnshift() error {
	st := rc.unshift
	if err := rc.wipeRandom(st.size, st.shift, "the old ciphertext at the end"); err != nil {
		return err
	}
	return rc.finishBack()
}
