package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/xts"
)

// Encryption in place with a data shift, as cryptsetup 2.6 does it for
// `cryptsetup reencrypt --encrypt --reduce-device-size R DEVICE`:
//
// A device of D bytes holds N = D-R bytes of plaintext (a filesystem shrunk
// beforehand by R). S = R/2 is both the new data offset (the LUKS2 header
// goes into the first S bytes) and the shift: every byte of plaintext at
// x moves to S+x, encrypted. Before the header can be written over the
// start of the device, the first S bytes of plaintext are copied to the
// last S bytes of the device (D-S), the "moved segment". Then the data is
// encrypted backward, from the end, in zones of at most S bytes: a zone
// [x, x+l) is read at x (at the moved copy for x = 0), encrypted and
// written at S+x, which never overlaps a part of the plaintext still
// needed, so a crash inside a zone is recovered by doing the zone again
// (resilience "datashift": nothing is stored in the resilience area).
//
// The metadata of each state (L: plaintext bytes not yet encrypted, the
// head [0, L) of the data; O = S the new data offset):
//
//	clean:  linear [D-S, +S) (moved copy of [0,S)) | linear [S, L) when L > S |
//	        crypt [O+L, +N-L) (iv_tweak L/512; "dynamic" once L is 0)
//	hot:    the linear parts of [0, x) | crypt [O+x, +l) in-reencryption |
//	        crypt [O+x+l, …) for the zone [x, x+l), x+l = L
//	then the backups: backup-previous (linear [0, N)), backup-final (crypt
//	at O, dynamic) and backup-moved-segment (the moved copy); every crypt
//	segment is bound to the new key's digest, and there is no old key.
//
// The next zone of a clean state at L is [L-S, L) when L ≥ 2S, [S, L)
// when S < L < 2S, and [0, S) (read from the moved copy) when L = S.
// When all is done the moved copy is overwritten with random bytes, the
// keyslots area grows up to the data offset and the reencryption is
// dropped from the metadata, as cryptsetup does.

// EncryptOptions describe EncryptInPlace.
type EncryptOptions struct {
	// Format is the new volume's header: key size, sector size (default
	// 512, as cryptsetup's --encrypt), KDF, label, UUID, metadata size.
	// DataOffset, KeyslotsSize (default: all of the room the header has)
	// and Detached are set here from ReduceSize.
	Format FormatOptions
	// ReduceSize is the bytes given up at the end of the device
	// (--reduce-device-size): half of it holds the header, the data
	// moves by the other half. A multiple of twice the sector size, at
	// most 1 GiB.
	ReduceSize uint64
}

// Errors of EncryptInPlace.
var (
	// ErrAlreadyLUKS means the device already starts with a LUKS header.
	ErrAlreadyLUKS = errors.New("already a LUKS volume")
	// ErrReduceSize means --reduce-device-size cannot hold the header or
	// is not whole sectors.
	ErrReduceSize = errors.New("bad reduce size")
	// ErrTooSmall means the device is too small for the reduce size.
	ErrTooSmall = errors.New("device too small")
)

// maxReduceSize is cryptsetup's limit on --reduce-device-size.
const maxReduceSize = 1 << 30

// EncryptDevice is the plaintext device EncryptInPlace turns into a
// volume: the data and, once written, the header.
type EncryptDevice interface {
	DataDevice
}

// EncryptInPlace records the encryption in place of the plaintext device
// dev (size bytes; the plaintext is its first size-ReduceSize bytes) as
// cryptsetup reencrypt --encrypt --reduce-device-size does: a new LUKS2
// header (random DEK, keyslot 0 for r) with the datashift reencryption
// metadata. The first S bytes of plaintext are copied to the end of the
// device and synced before the header is written over them. It returns
// the keyring of the new header; OpenReencryption and Run (or cryptsetup
// reencrypt --resume-only) then encrypt the data.
//
// Nothing is written when it refuses: a device that starts with a LUKS
// header (ErrAlreadyLUKS), a reduce size that is not whole sectors or too
// small for the header (ErrReduceSize), a device too small (ErrTooSmall).
//
// Between the moved copy's sync and the header's, a crash leaves a device
// with no valid header whose head [0, S) is partly overwritten; its
// plaintext is in the last S bytes of the device. (cryptsetup has the
// same window.)
func EncryptInPlace(ctx context.Context, dev EncryptDevice, size uint64, r Recipient, opts *EncryptOptions) (*Keyring, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: no reduce size", ErrReduceSize)
	}
	o := opts.Format
	if o.SectorSize == 0 {
		o.SectorSize = 512
	}
	if o.MetadataSize == 0 {
		o.MetadataSize = minHdrSize
	}
	if o.Opal != nil || o.Detached {
		return nil, fmt.Errorf("%w: in-place encryption of an opal or detached header", ErrUnsupported)
	}
	red := opts.ReduceSize
	ss := uint64(o.SectorSize)
	switch {
	case ss < 512 || ss > 4096 || ss&(ss-1) != 0:
		return nil, fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", ss)
	case red == 0 || red%(2*ss) != 0:
		return nil, fmt.Errorf("%w: reduce size %d is not a positive multiple of twice the %d-byte sector (half of it is the data shift)", ErrReduceSize, red, ss)
	case red > maxReduceSize:
		return nil, fmt.Errorf("%w: reduce size %d is more than 1 GiB", ErrReduceSize, red)
	}
	shift := red / 2
	keySize := o.KeySize
	if keySize == 0 {
		keySize = 64
	}
	// Room for the two metadata copies, keyslot 0 and the reencrypt
	// keyslot's 4 KiB area.
	need := 2*o.MetadataSize + keyslotAreaSize(keySize) + 4096
	if need > shift || (o.KeyslotsSize != 0 && (2*o.MetadataSize+o.KeyslotsSize > shift || need > 2*o.MetadataSize+o.KeyslotsSize)) {
		return nil, fmt.Errorf("%w: reduce size %d leaves %d bytes for the LUKS2 header, which needs %d (--reduce-device-size %d or more; cryptsetup recommends 32M)",
			ErrReduceSize, red, shift, need, 2*((need+ss-1)/ss*ss))
	}
	o.DataOffset = shift
	if o.KeyslotsSize == 0 {
		o.KeyslotsSize = min(shift-2*o.MetadataSize, maxKeyslotsSize) / 4096 * 4096
	}
	lay, err := o.layout()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReduceSize, err)
	}
	switch {
	case size%ss != 0:
		return nil, fmt.Errorf("%w: device size %d is not a multiple of the %d-byte sector", ErrTooSmall, size, ss)
	case size < red+shift:
		return nil, fmt.Errorf("%w: %d bytes; with --reduce-device-size %d it needs at least %d (the reduce size and half of it again)", ErrTooSmall, size, red, red+shift)
	}
	// A LUKS header (either copy, even one that does not validate) means
	// this is not plaintext: encrypting it again would lose data.
	if off, found, err := findLUKSMagic(dev, size); err != nil {
		return nil, err
	} else if found {
		return nil, fmt.Errorf("%w: the device holds a LUKS header at %d (encblk reencrypt without --encrypt changes its key; --resume continues an encryption)", ErrAlreadyLUKS, off)
	}

	// The header is made in memory first.
	mem := &headerImage{buf: make([]byte, shift), size: shift + ss}
	k, dek, err := formatDevice(ctx, mem, r, &lay)
	if err != nil {
		return nil, err
	}
	defer dek.Destroy()
	if err := k.recordEncrypt(dek, size, shift); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Move [0, S) to the end, durably, then write the header (and zeros
	// up to the data offset: no plaintext stays behind the header).
	buf := make([]byte, shift)
	if err := readFull(dev, buf, 0); err != nil {
		return nil, fmt.Errorf("%w: read the data's head: %w", ErrIO, err)
	}
	if _, err := dev.WriteAt(buf, int64(size-shift)); err != nil {
		return nil, fmt.Errorf("%w: copy the data's head to the end: %w", ErrIO, err)
	}
	clear(buf)
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	// The keyslots area (and zeros up to the data offset) first, then the
	// secondary copy, the primary last: until a copy is written the
	// device does not look like LUKS, and when one is, its keyslot is.
	for _, part := range [][2]uint64{{2 * lay.MetadataSize, shift}, {lay.MetadataSize, 2 * lay.MetadataSize}, {0, lay.MetadataSize}} {
		if _, err := dev.WriteAt(mem.buf[part[0]:part[1]], int64(part[0])); err != nil {
			return nil, fmt.Errorf("%w: write the header: %w", ErrIO, err)
		}
		if err := dev.Sync(); err != nil {
			return nil, fmt.Errorf("%w: sync: %w", ErrIO, err)
		}
	}
	return openDevice(dev, false)
}

// recordEncrypt turns the freshly formatted metadata of k (one crypt
// segment at the data offset shift, keyslot 0, digest 0) into the start
// state of an encryption in place of a device of size bytes.
func (k *Keyring) recordEncrypt(dek *secmem.Buffer, size, shift uint64) error {
	m := k.meta
	e := m.clone()
	n := size - 2*shift
	u := func(v uint64) *uint64 { return &v }
	lin := func(off uint64, sz *uint64, flags ...string) (json.RawMessage, error) {
		o := map[string]any{"type": "linear", "offset": strconv.FormatUint(off, 10), "size": "dynamic"}
		if sz != nil {
			o["size"] = strconv.FormatUint(*sz, 10)
		}
		if len(flags) > 0 {
			o["flags"] = flags
		}
		return json.Marshal(o)
	}
	final, err := segmentJSON(m.segments["0"], shift, 0, nil, []string{"backup-final"})
	if err != nil {
		return err
	}
	segs := []json.RawMessage{}
	moved, err := lin(size-shift, u(shift))
	if err != nil {
		return err
	}
	segs = append(segs, moved)
	if n > shift {
		second, err := lin(shift, u(n-shift))
		if err != nil {
			return err
		}
		segs = append(segs, second)
	}
	movedBackup, _ := lin(size-shift, u(shift), "backup-moved-segment")
	previous, _ := lin(0, u(n), "backup-previous")
	segs = append(segs, movedBackup, previous, final)
	e.segments = map[string]json.RawMessage{}
	for i, s := range segs {
		e.segments[strconv.Itoa(i)] = s
	}
	if e.digests["0"], err = setField(e.digests["0"], "segments", idStrings([]int{len(segs) - 1})); err != nil {
		return err
	}
	cur, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return err
	}
	reSlot, err := cur.freeKeyslotID(nil)
	if err != nil {
		return err
	}
	areaOff, err := cur.firstGap(k.bin.HdrSize, 4096)
	if err != nil {
		return err
	}
	if e.keyslots[strconv.Itoa(reSlot)], err = reencryptKeyslot(ReencryptModeEncrypt, "backward", map[string]any{
		"type": "datashift", "offset": strconv.FormatUint(areaOff, 10), "size": "4096",
		"shift_size": strconv.FormatUint(shift, 10)}); err != nil {
		return err
	}
	if err := e.setRequirement(true); err != nil {
		return err
	}
	cur, err = e.withVerificationDigest(k.bin.HdrSize, nil, dek.Bytes(), max(cur.Digests[0].Iterations, minPBKDF2Iterations))
	if err != nil {
		return err
	}
	return k.commit(cur)
}

// findLUKSMagic looks for a LUKS magic where a header copy can be: the
// primary at 0, a LUKS2 secondary at 16 KiB … 4 MiB.
func findLUKSMagic(dev DataDevice, size uint64) (uint64, bool, error) {
	var magic [6]byte
	for off := uint64(0); off < size && off <= 4<<20; off = max(off*2, minHdrSize) {
		if err := readFull(dev, magic[:], off); err != nil {
			return 0, false, fmt.Errorf("%w: read device: %w", ErrIO, err)
		}
		if bytes.Equal(magic[:], []byte("LUKS\xba\xbe")) || off > 0 && bytes.Equal(magic[:], []byte("SKUL\xba\xbe")) {
			return off, true, nil
		}
	}
	return 0, false, nil
}

// firstGap returns the offset of the first free range of n bytes in the
// keyslots area.
func (m *metadata) firstGap(hdrSize, n uint64) (uint64, error) {
	used := slices.SortedFunc(maps.Values(m.Keyslots), func(a, b *Keyslot) int { return cmpU64(a.AreaOffset, b.AreaOffset) })
	pos, end := 2*hdrSize, 2*hdrSize+m.Config.KeyslotsSize
	for _, ks := range used {
		if ks.AreaOffset >= pos+n {
			break
		}
		pos = max(pos, ks.AreaOffset+ks.AreaSize)
	}
	if pos+n > end {
		return 0, fmt.Errorf("%w: no %d bytes left in the keyslots area", ErrNoSpace, n)
	}
	return pos, nil
}

// headerImage is a header area in memory (formatDevice's target before the
// header goes to the device).
type headerImage struct {
	buf  []byte
	size uint64 // the size it claims
}

func (d *headerImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(d.buf)) {
		clear(p)
		return len(p), nil
	}
	n := copy(p, d.buf[off:])
	clear(p[n:])
	return len(p), nil
}

func (d *headerImage) WriteAt(p []byte, off int64) (int, error) {
	if off < int64(len(d.buf)) {
		copy(d.buf[off:], p)
	}
	return len(p), nil
}

func (d *headerImage) Sync() error                    { return nil }
func (d *headerImage) Truncate(int64) error           { return nil }
func (d *headerImage) Stat() (os.FileInfo, error)     { return headerImageInfo{d.size}, nil }
func (d *headerImage) Seek(int64, int) (int64, error) { return int64(d.size), nil }

type headerImageInfo struct{ size uint64 }

func (i headerImageInfo) Name() string       { return "memory" }
func (i headerImageInfo) Size() int64        { return int64(i.size) }
func (i headerImageInfo) Mode() fs.FileMode  { return 0o600 }
func (i headerImageInfo) ModTime() time.Time { return time.Time{} }
func (i headerImageInfo) IsDir() bool        { return false }
func (i headerImageInfo) Sys() any           { return nil }

// shiftState is the position of an encryption in place with a data shift.
type shiftState struct {
	offset  uint64 // new data offset (O = shift)
	shift   uint64 // S
	moved   uint64 // offset of the moved copy of [0, S)
	total   uint64 // N, plaintext bytes
	linear  uint64 // L, plaintext bytes not yet encrypted
	newTmpl json.RawMessage
	ss      int
}

// zone returns the next zone [x, x+l) of a clean state.
func (s *shiftState) zone() (x, l uint64) {
	switch L := s.linear; {
	case L <= s.shift:
		return 0, L
	case L < 2*s.shift:
		return s.shift, L - s.shift
	default:
		return L - s.shift, s.shift
	}
}

// openShiftEncrypt loads an encryption in place with a data shift
// (cryptsetup's --encrypt --reduce-device-size, or encblk's): the new
// key from ids, the verification digest, the position; a hot zone left
// by a crash is done again from its source.
func (k *Keyring) openShiftEncrypt(ctx context.Context, m *metadata, r *Reencryption, ids []Identity, data DataDevice, dataEnd uint64) (*Reencryptor, error) {
	switch {
	case r.Direction != "backward" || r.Resilience != "datashift" || r.Moved == nil:
		return nil, fmt.Errorf("%w: encryption with resilience %q, direction %q (encblk resumes datashift, backward, with a moved segment; cryptsetup reencrypt --resume-only finishes it)", ErrUnsupported, r.Resilience, r.Direction)
	case r.Old.Type != "linear" || r.Moved.Type != "linear" || r.New.Type != "crypt" || r.New.Encryption != "aes-xts-plain64":
		return nil, fmt.Errorf("%w: encryption from %s to %s %s", ErrUnsupported, r.Old.Type, r.New.Type, r.New.Encryption)
	case r.NewDigest < 0 || m.Digests[r.NewDigest] == nil:
		return nil, fmt.Errorf("%w: encryption without the new key's digest", ErrCorrupt)
	}
	S := r.ShiftSize
	st := &shiftState{offset: r.New.Offset, shift: S, moved: r.Moved.Offset, total: r.Old.Size, newTmpl: r.New.Raw, ss: r.New.SectorSize}
	switch {
	case r.Old.Offset != 0 || r.Old.Dynamic || r.New.Offset != S || !r.New.Dynamic || r.New.IVTweak != 0:
		return nil, fmt.Errorf("%w: encryption layout (old data at %d, new at %d, shift %d)", ErrUnsupported, r.Old.Offset, r.New.Offset, S)
	case r.Moved.Dynamic || r.Moved.Size != S || st.total < S:
		return nil, fmt.Errorf("%w: encryption of %d bytes with a %d-byte moved segment and a shift of %d (encblk resumes data at least as large as the shift)", ErrUnsupported, st.total, r.Moved.Size, S)
	case r.Moved.Offset+S > dataEnd || st.total+2*S > dataEnd || st.moved < st.total+S:
		return nil, fmt.Errorf("%w: the device (%d bytes) is smaller than the encryption recorded needs", ErrCorrupt, dataEnd)
	case S%uint64(st.ss) != 0 || st.total%uint64(st.ss) != 0:
		return nil, fmt.Errorf("%w: shift %d or size %d not whole %d-byte sectors", ErrCorrupt, S, st.total, st.ss)
	}
	rc := &Reencryptor{k: k, data: data, r: r, newSS: st.ss, oldSS: 512, shift: st}
	rc.layout.size = st.total
	ok := false
	defer func() {
		if !ok {
			rc.Close()
		}
	}()
	secrets, key, err := k.unlockSlots(ctx, m, m.Digests[r.NewDigest], ids, false)
	if err != nil {
		return nil, err
	}
	for _, s := range secrets {
		s.secret.Destroy()
	}
	rc.newKey = key
	if err := m.verifyReencryptDigest(r, nil, rc.newKey.Bytes()); err != nil {
		return nil, err
	}
	if rc.newC, err = xts.New(rc.newKey.Bytes()); err != nil {
		return nil, err
	}
	// The position: the linear (plaintext) segments' total.
	for _, s := range m.Segments {
		if isBackupSegment(s) || s.Type != "linear" {
			continue
		}
		if s.Dynamic {
			return nil, fmt.Errorf("%w: a linear segment of dynamic size in an encryption", ErrCorrupt)
		}
		st.linear += s.Size
	}
	if r.Hot != nil {
		x := r.Hot.Offset - min(r.Hot.Offset, st.offset)
		l := r.Hot.Size
		if r.Hot.Offset < st.offset || r.Hot.Dynamic || l == 0 || l > S || x+l > st.total || x != st.linear || (x != 0 && x < S) {
			return nil, fmt.Errorf("%w: hot zone segment %d", ErrCorrupt, r.Hot.ID)
		}
		st.linear = x + l
		if err := rc.shiftZone(x, l); err != nil {
			return nil, err
		}
	} else if st.linear > st.total || (st.linear != 0 && st.linear < S) {
		return nil, fmt.Errorf("%w: %d bytes left to encrypt of %d", ErrCorrupt, st.linear, st.total)
	}
	rc.progress = st.total - st.linear
	rc.layout.size = st.total
	ok = true
	return rc, nil
}

// shiftZone encrypts the zone [x, x+l) of the plaintext to [O+x, +l):
// read, encrypt, write, sync, commit the state after it. The hot state
// must already be committed.
func (rc *Reencryptor) shiftZone(x, l uint64) error {
	st := rc.shift
	buf := alignedBuffer(int(l))
	src := x
	if x == 0 {
		src = st.moved
	}
	if err := readFull(rc.data, buf, src); err != nil {
		return fmt.Errorf("read data at %d: %w", src, err)
	}
	if err := rc.encryptParallel(buf, x); err != nil {
		return err
	}
	if _, err := rc.data.WriteAt(buf, int64(st.offset+x)); err != nil {
		return fmt.Errorf("%w: write data at %d: %w", ErrIO, st.offset+x, err)
	}
	if err := rc.data.Sync(); err != nil {
		return fmt.Errorf("%w: sync data: %w", ErrIO, err)
	}
	st.linear = x
	if err := rc.commitShift(0, 0); err != nil {
		return err
	}
	rc.progress = st.total - st.linear
	return nil
}

// shiftStep does the next zone of a clean state: commit it hot, then
// shiftZone.
func (rc *Reencryptor) shiftStep() error {
	x, l := rc.shift.zone()
	if err := rc.commitShift(x, l); err != nil {
		return err
	}
	return rc.shiftZone(x, l)
}

// commitShift commits the segments of the current position, with the
// zone [x, x+l) hot when l > 0.
func (rc *Reencryptor) commitShift(x, l uint64) error {
	st := rc.shift
	var segs []json.RawMessage
	var crypt []int
	u := func(v uint64) *uint64 { return &v }
	lin := func(off, sz uint64) error {
		b, err := json.Marshal(map[string]any{"type": "linear", "offset": strconv.FormatUint(off, 10), "size": strconv.FormatUint(sz, 10)})
		segs = append(segs, b)
		return err
	}
	cr := func(x uint64, sz *uint64, flags ...string) error {
		b, err := segmentJSON(st.newTmpl, st.offset+x, x/512, sz, flags)
		crypt = append(crypt, len(segs))
		segs = append(segs, b)
		return err
	}
	head := st.linear // plaintext left before the crypt part
	if l > 0 {
		head = x
	}
	if head >= st.shift {
		if err := lin(st.moved, st.shift); err != nil {
			return err
		}
	}
	if head > st.shift {
		if err := lin(st.shift, head-st.shift); err != nil {
			return err
		}
	}
	if l > 0 {
		if err := cr(x, u(l), "in-reencryption"); err != nil {
			return err
		}
	}
	if done := st.linear; done < st.total {
		var sz *uint64
		if done > 0 || l > 0 {
			sz = u(st.total - done)
		}
		if err := cr(done, sz); err != nil {
			return err
		}
	}
	for _, b := range []*Segment{rc.r.Old, rc.r.New, rc.r.Moved} {
		if b == rc.r.New {
			crypt = append(crypt, len(segs))
		}
		segs = append(segs, b.Raw)
	}
	return rc.commitState(segs, rc.r.NewDigest, crypt)
}

// encryptParallel encrypts buf (plaintext of the data at x) in place on
// every CPU.
func (rc *Reencryptor) encryptParallel(buf []byte, x uint64) error {
	return parallelChunks(buf, func(b []byte, off uint64) error {
		return rc.newC.EncryptSectors(b, b, rc.newSS, (x+off)/512, uint64(rc.newSS/512))
	})
}

// finishShift ends an encryption in place whose data is all encrypted:
// the moved copy is overwritten with random bytes, then one commit leaves
// the crypt segment alone (dynamic, at the data offset), drops the
// reencrypt keyslot, its digest and the requirement, and grows the
// keyslots area up to the data offset (as cryptsetup does).
func (rc *Reencryptor) finishShift() error {
	st := rc.shift
	k := rc.k
	if err := rc.wipeRandom(st.moved, st.shift, "the moved copy"); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	seg, err := segmentJSON(st.newTmpl, st.offset, 0, nil, nil)
	if err != nil {
		return err
	}
	e, err := k.meta.withState([]json.RawMessage{seg}, rc.r.NewDigest, []int{0})
	if err != nil {
		return err
	}
	if e, err = e.endReencryption(k.bin.HdrSize, []int{rc.r.Keyslot}); err != nil {
		return err
	}
	if ks := min(st.offset-2*k.bin.HdrSize, maxKeyslotsSize) / 4096 * 4096; st.offset > 2*k.bin.HdrSize && ks > k.meta.Config.KeyslotsSize {
		if e.config["keyslots_size"], err = json.Marshal(strconv.FormatUint(ks, 10)); err != nil {
			return err
		}
	}
	n, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return err
	}
	return k.commit(n)
}

// wipeRandom overwrites the n bytes of data at off (what: their name in
// an error) with random bytes and syncs them.
func (rc *Reencryptor) wipeRandom(off, n uint64, what string) error {
	buf := alignedBuffer(int(min(n, 1<<20)))
	for done := uint64(0); done < n; done += uint64(len(buf)) {
		c := min(uint64(len(buf)), n-done)
		if _, err := rand.Read(buf[:c]); err != nil {
			return err
		}
		if _, err := rc.data.WriteAt(buf[:c], int64(off+done)); err != nil {
			return fmt.Errorf("%w: wipe %s: %w", ErrIO, what, err)
		}
	}
	if err := rc.data.Sync(); err != nil {
		return fmt.Errorf("%w: sync data: %w", ErrIO, err)
	}
	return nil
}
