package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/xts"
)

// DataDevice is where a volume's data lives: the backing file or block
// device (the header device itself unless the header is detached).
type DataDevice interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// ReencryptOptions modify StartReencrypt and OpenReencryption.
type ReencryptOptions struct {
	// KeySize is the new DEK's size in bytes (32 or 64 for
	// aes-xts-plain64); 0 keeps the current size.
	KeySize int
	// SectorSize is the new encryption sector size (512 … 4096); 0 keeps
	// the current one.
	SectorSize int
	// HotZone caps the bytes rewritten per step (one metadata commit
	// before and one after each); 0 is 64 MiB. The resilience area can
	// make it smaller.
	HotZone uint64
}

const defaultHotZone = 64 << 20

// ErrReencryptNotStarted means the volume records no reencryption.
var ErrReencryptNotStarted = errors.New("no reencryption in progress")

// ErrReencryptInProgress means a reencryption is already recorded; it can
// only be resumed.
var ErrReencryptInProgress = errors.New("a reencryption is already in progress")

// keyslotSecret is an old keyslot and the secret one of the caller's KEKs
// gives for it.
type keyslotSecret struct {
	ks     *Keyslot
	secret *Secret
}

// unlockSlots finds, for every keyslot of digest d, a KEK among ids that
// opens it. It returns the secrets (caller destroys them) and the key.
// Keyslots no KEK opens are listed in the error, which wraps
// ErrNoMatchingKeyslot.
func (k *Keyring) unlockSlots(ctx context.Context, m *metadata, d *digest, ids []Identity, all bool) ([]keyslotSecret, *secmem.Buffer, error) {
	var (
		out     []keyslotSecret
		key     *secmem.Buffer
		missing []string
	)
	fail := func(err error) ([]keyslotSecret, *secmem.Buffer, error) {
		for _, s := range out {
			s.secret.Destroy()
		}
		key.Destroy()
		return nil, nil, err
	}
	for _, slot := range slices.Sorted(slices.Values(d.Keyslots)) {
		ks := m.Keyslots[slot]
		if ks == nil || ks.Type != "luks2" {
			continue
		}
		// The one unlock loop, on this keyslot alone: it sorts the
		// identities' answers (not mine, unavailable, fatal).
		view := ks.clone()
		c := candidate{slot: slot, view: &view, open: func(ctx context.Context, secret []byte) (*secmem.Buffer, error) {
			return k.openVerified(ctx, ks, d, secret)
		}}
		_, err := unlockLoop(ctx, []candidate{c}, ids, func(c *candidate, secret *Secret) error {
			dek, err := c.open(ctx, secret.Bytes())
			if err != nil {
				secret.Destroy()
				return err
			}
			if key == nil {
				key = dek
			} else {
				dek.Destroy()
			}
			out = append(out, keyslotSecret{ks: ks, secret: secret})
			return nil
		})
		if err != nil && !errors.Is(err, ErrNoMatchingKeyslot) && !errors.Is(err, ErrUnavailable) {
			return fail(err)
		}
		found := err == nil
		if !found {
			missing = append(missing, strconv.Itoa(slot))
		}
		if found && !all {
			break
		}
	}
	if key == nil || (all && len(missing) > 0) {
		if key == nil {
			return fail(ErrNoMatchingKeyslot)
		}
		return fail(fmt.Errorf("%w: keyslot %s: none of the given KEKs opens it, and every keyslot must be re-wrapped for the new key (remove it first, or give its KEK)", ErrNoMatchingKeyslot, strings.Join(missing, ", ")))
	}
	return out, key, nil
}

// StartReencrypt records a reencryption of the data to a new random DEK,
// as cryptsetup reencrypt does (mode "reencrypt", forward, checksum
// resilience). Every keyslot of the volume is re-wrapped for the new DEK
// with the same KEK: ids must open all of them (a passphrase, a key file,
// a KMIP KEK…). The new keyslots are written first, then one metadata
// commit adds them with the reencrypt keyslot, the backup segments, the
// digests and the online-reencrypt-v2 requirement. No data is touched:
// OpenReencryption then Run does that.
func (k *Keyring) StartReencrypt(ctx context.Context, ids []Identity, opts *ReencryptOptions) error {
	var o ReencryptOptions
	if opts != nil {
		o = *opts
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	m := k.meta
	seg, d, err := m.soleSegment("reencryption")
	if err != nil {
		return err
	}
	oldSlots, oldKey, err := k.unlockSlots(ctx, m, d, ids, true)
	if err != nil {
		return err
	}
	defer func() {
		oldKey.Destroy()
		for _, s := range oldSlots {
			s.secret.Destroy()
		}
	}()
	keySize := o.KeySize
	if keySize == 0 {
		keySize = oldKey.Len()
	}
	if keySize != 32 && keySize != 64 {
		return fmt.Errorf("new key size %d bytes: aes-xts-plain64 takes 32 or 64", keySize)
	}
	ss := o.SectorSize
	if ss == 0 {
		ss = seg.SectorSize
	}
	if ss < 512 || ss > 4096 || ss&(ss-1) != 0 {
		return fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", ss)
	}
	if seg.Offset%uint64(ss) != 0 {
		return fmt.Errorf("sector size %d does not divide the data offset %d", ss, seg.Offset)
	}
	newKey, err := secmem.New(keySize)
	if err != nil {
		return err
	}
	defer newKey.Destroy()
	if _, err := rand.Read(newKey.Bytes()); err != nil {
		return err
	}

	e := m.clone()
	// New keyslots: same KEK (secret), same KDF kind and cost, new salt,
	// same priority, the same tokens bound to them.
	var newSlots []int
	var written []*Keyslot // areas written, wiped again if the commit fails
	defer func() {
		for _, ks := range written {
			wipeArea(k.dev, ks.AreaOffset, ks.AreaSize)
		}
	}()
	cur := m
	for _, s := range oldSlots {
		id, err := cur.freeKeyslotID(nil)
		if err != nil {
			return err
		}
		areaOff, areaSize, err := cur.findArea(k.bin.HdrSize, keyslotAreaSize(keySize))
		if err != nil {
			return err
		}
		kdf := s.ks.KDF
		kdf.Salt = make([]byte, kdfSaltLen)
		if _, err := rand.Read(kdf.Salt); err != nil {
			return err
		}
		raw, err := newKeyslot(ctx, k.dev, newKey.Bytes(), s.secret.Bytes(), kdf, areaOff, areaSize, s.ks.Priority)
		if err != nil {
			return err
		}
		written = append(written, &Keyslot{AreaOffset: areaOff, AreaSize: areaSize})
		e.keyslots[strconv.Itoa(id)] = raw
		for _, t := range s.ks.Tokens {
			key := strconv.Itoa(t.ID)
			tok := e.tokens[key]
			var bound struct {
				Keyslots []string `json:"keyslots"`
			}
			if err := json.Unmarshal(tok, &bound); err != nil {
				return fmt.Errorf("token %d: %v", t.ID, err)
			}
			if e.tokens[key], err = setField(tok, "keyslots", append(bound.Keyslots, strconv.Itoa(id))); err != nil {
				return err
			}
		}
		newSlots = append(newSlots, id)
		if cur, err = e.reparse(k.bin.HdrSize); err != nil {
			return err
		}
	}
	// The reencrypt keyslot, whose area (the largest gap left) holds the
	// hot zone's checksums.
	reSlot, reKeyslot, err := cur.checksumKeyslot(k.bin.HdrSize, ReencryptModeReencrypt, "forward", max(4096, seg.SectorSize, ss), "reencryption")
	if err != nil {
		return err
	}
	e.keyslots[reSlot] = reKeyslot
	// Backup segments and the new key's digest.
	oldBackup, err := segmentJSON(seg.Raw, seg.Offset, 0, nil, []string{"backup-previous"})
	if err != nil {
		return err
	}
	newTmpl, err := json.Marshal(map[string]any{"type": "crypt", "offset": strconv.FormatUint(seg.Offset, 10),
		"size": "dynamic", "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": ss})
	if err != nil {
		return err
	}
	newBackup, err := segmentJSON(newTmpl, seg.Offset, 0, nil, []string{"backup-final"})
	if err != nil {
		return err
	}
	newDigestID, err := freeID(e.digests)
	if err != nil {
		return err
	}
	if e.digests[strconv.Itoa(newDigestID)], err = newDigest(newKey.Bytes(), max(d.Iterations, minPBKDF2Iterations), newSlots, nil); err != nil {
		return err
	}
	if err := e.setRequirement(true); err != nil {
		return err
	}
	// The data size is not needed: the old part stays "dynamic".
	l := reencryptLayout{oldTmpl: oldBackup, newTmpl: newBackup, oldDigest: d.ID, newDigest: newDigestID, dataOffset: seg.Offset, size: ^uint64(0)}
	// Start state: the old segment alone, then the backups.
	if e, err = e.withSegments(l, 0, 0, false); err != nil {
		return err
	}
	// Digest keyslot lists must not name the reencrypt keyslot yet for
	// parsing; the verification digest is added last.
	n, err := e.withVerificationDigest(k.bin.HdrSize, oldKey.Bytes(), newKey.Bytes(), max(d.Iterations, minPBKDF2Iterations))
	if err != nil {
		return err
	}
	if err := k.commit(n); err != nil {
		return err
	}
	written = nil
	return nil
}

// checksumKeyslot returns the id (the lowest free one in m) and the JSON
// of a reencrypt keyslot of mode and direction with checksum resilience:
// the sha256 of each block of block bytes, in an area that is the
// largest gap of m's keyslots area in whole 4 KiB (at least one). what
// names the operation in an error.
func (m *metadata) checksumKeyslot(hdrSize uint64, mode, direction string, block int, what string) (string, json.RawMessage, error) {
	id, err := m.freeKeyslotID(nil)
	if err != nil {
		return "", nil, err
	}
	off, size := m.maxGap(hdrSize)
	size -= size % 4096
	if size < 4096 {
		return "", nil, fmt.Errorf("%w: no room left in the keyslots area for the %s's resilience area", ErrNoSpace, what)
	}
	raw, err := reencryptKeyslot(mode, direction, map[string]any{"type": "checksum", "offset": strconv.FormatUint(off, 10),
		"size": strconv.FormatUint(size, 10), "hash": "sha256", "sector_size": block})
	return strconv.Itoa(id), raw, err
}

// reencryptKeyslot returns the JSON of a reencrypt keyslot of mode and
// direction whose resilience area is the object area (its key_size is 1
// and its priority 0, as cryptsetup writes them).
func reencryptKeyslot(mode, direction string, area map[string]any) (json.RawMessage, error) {
	return json.Marshal(map[string]any{"type": "reencrypt", "key_size": 1, "priority": 0, "mode": mode, "direction": direction, "area": area})
}

// withVerificationDigest returns e, validated, with the reencryption's
// verification digest over the keys added (oldKey nil for an encryption).
func (e *metadata) withVerificationDigest(hdrSize uint64, oldKey, newKey []byte, iterations int) (*metadata, error) {
	n, err := e.reparse(hdrSize)
	if err != nil {
		return nil, err
	}
	r, err := n.reencryption()
	if err != nil {
		return nil, err
	}
	vid, err := freeID(n.digests)
	if err != nil {
		return nil, err
	}
	e = n.clone()
	if e.digests[strconv.Itoa(vid)], err = n.reencryptDigest(r, oldKey, newKey, iterations); err != nil {
		return nil, err
	}
	return parseMetadataEdit(e, hdrSize)
}

// soleSegment checks that the volume can start an operation (what:
// "reencryption", "decryption") on its data: none recorded already, no
// unknown requirement, exactly one segment, dm-crypt's aes-xts-plain64
// (not a self-encrypting drive's), dynamic, no iv_tweak. It returns the
// segment and its digest.
func (m *metadata) soleSegment(what string) (*Segment, *digest, error) {
	if m.reencryptKeyslot() >= 0 {
		return nil, nil, ErrReencryptInProgress
	}
	if err := m.checkRequirements(); err != nil {
		return nil, nil, err
	}
	if len(m.Segments) != 1 {
		return nil, nil, fmt.Errorf("%w: %d data segments (%s needs exactly one)", ErrUnsupported, len(m.Segments), what)
	}
	seg := m.Segments[lowestSegment(m)]
	switch {
	case seg.Type == "hw-opal" || seg.Type == "hw-opal-crypt":
		return nil, nil, fmt.Errorf("%w: segment type %q: the drive holds the data key, which %s cannot change", ErrUnsupported, seg.Type, what)
	case seg.Type != "crypt" || seg.Encryption != "aes-xts-plain64" || seg.Integrity:
		return nil, nil, fmt.Errorf("%w: %s of a %q segment encrypted with %q", ErrUnsupported, what, seg.Type, seg.Encryption)
	case !seg.Dynamic:
		return nil, nil, fmt.Errorf("%w: %s of a segment with a fixed size", ErrUnsupported, what)
	case seg.IVTweak != 0:
		return nil, nil, fmt.Errorf("%w: %s of a segment with iv_tweak %d", ErrUnsupported, what, seg.IVTweak)
	}
	d := m.segmentDigest(seg.ID)
	if d == nil {
		return nil, nil, fmt.Errorf("%w: no digest for segment %d", ErrCorrupt, seg.ID)
	}
	return seg, d, nil
}

// Reencryptor rewrites a volume's data under the new key, zone by zone,
// recording each step in the metadata so that it (or cryptsetup) can
// resume after an interruption.
type Reencryptor struct {
	k        *Keyring
	data     DataDevice
	r        *Reencryption
	layout   reencryptLayout
	oldKey   *secmem.Buffer
	newKey   *secmem.Buffer
	oldC     *xts.Cipher
	newC     *xts.Cipher
	oldSS    int
	newSS    int
	block    uint64 // checksum block
	zone     uint64 // hot zone length
	progress uint64
	oldSlots []int
	shift    *shiftState   // encryption in place with a data shift
	back     *backState    // decryption in place (detached header)
	unshift  *unshiftState // decryption in place with a data shift
}

// OpenReencryption loads the reencryption recorded in the metadata for
// resuming: ids must open a keyslot of the old key and one of the new key
// (the same KEK usually opens both); the verification digest is checked;
// data is the data device and dataEnd its size in bytes. A hot zone left
// by a crash is recovered first, from the checksums in the resilience
// area, and the step committed. Then Step or Run continue.
func (k *Keyring) OpenReencryption(ctx context.Context, ids []Identity, data DataDevice, dataEnd uint64, opts *ReencryptOptions) (*Reencryptor, error) {
	var o ReencryptOptions
	if opts != nil {
		o = *opts
	}
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	r, err := m.reencryption()
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, ErrReencryptNotStarted
	}
	// An encryption of the data where it is (a detached header, no data
	// shift) runs as a reencryption whose old side is plaintext.
	plainOld := r.Mode == ReencryptModeEncrypt && r.Moved == nil && !strings.HasPrefix(r.Resilience, "datashift")
	switch {
	case plainOld:
	case r.Mode == ReencryptModeEncrypt:
		return k.openShiftEncrypt(ctx, m, r, ids, data, dataEnd)
	case r.Mode == ReencryptModeDecrypt:
		if r.Moved != nil || strings.HasPrefix(r.Resilience, "datashift") {
			return k.openUnshift(ctx, m, r, ids, data, dataEnd)
		}
		return k.openDecrypt(ctx, m, r, ids, data, dataEnd, o)
	}
	if r.Mode != ReencryptModeReencrypt && !plainOld {
		// Refusing needs no verification: nothing is written.
		return nil, fmt.Errorf("%w: reencryption mode %q (encblk resumes %q and %q; cryptsetup reencrypt --resume-only finishes it)", ErrUnsupported, r.Mode, ReencryptModeReencrypt, ReencryptModeEncrypt)
	}
	oldD, newD := m.Digests[r.OldDigest], m.Digests[r.NewDigest]
	switch {
	case plainOld && (r.OldDigest >= 0 || newD == nil || r.Old.Type != "linear"):
		return nil, fmt.Errorf("%w: encryption needs a plain old segment and the new key's digest", ErrCorrupt)
	case !plainOld && (oldD == nil || newD == nil || r.OldDigest == r.NewDigest):
		return nil, fmt.Errorf("%w: reencryption needs distinct old and new digests", ErrCorrupt)
	}
	rc := &Reencryptor{k: k, data: data, r: r, oldSS: r.Old.SectorSize, newSS: r.New.SectorSize,
		block: uint64(r.HashBlock)}
	if plainOld {
		rc.oldSS = 512 // plaintext: any whole sectors
	} else {
		rc.oldSlots = slices.Clone(oldD.Keyslots)
	}
	ok := false
	defer func() {
		if !ok {
			rc.Close()
		}
	}()
	var secrets []keyslotSecret
	if !plainOld {
		if secrets, rc.oldKey, err = k.unlockSlots(ctx, m, oldD, ids, false); err != nil {
			return nil, fmt.Errorf("old key: %w", err)
		}
		for _, s := range secrets {
			s.secret.Destroy()
		}
	}
	if secrets, rc.newKey, err = k.unlockSlots(ctx, m, newD, ids, false); err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	for _, s := range secrets {
		s.secret.Destroy()
	}
	var oldBytes []byte
	if rc.oldKey != nil {
		oldBytes = rc.oldKey.Bytes()
	}
	if err := m.verifyReencryptDigest(r, oldBytes, rc.newKey.Bytes()); err != nil {
		return nil, err
	}
	switch {
	case r.Direction != "forward":
		return nil, fmt.Errorf("%w: reencryption direction %q (encblk resumes forward)", ErrUnsupported, r.Direction)
	case r.Resilience != "checksum" && r.Resilience != "journal":
		return nil, fmt.Errorf("%w: reencryption resilience %q (encblk resumes checksum and journal; cryptsetup reencrypt --resume-only finishes it)", ErrUnsupported, r.Resilience)
	case r.Resilience == "checksum" && r.Hash != "sha256":
		return nil, fmt.Errorf("%w: reencryption checksum hash %q (encblk resumes sha256)", ErrUnsupported, r.Hash)
	case !plainOld && (r.Old.Type != "crypt" || r.Old.Encryption != "aes-xts-plain64") || r.New.Type != "crypt" || r.New.Encryption != "aes-xts-plain64":
		return nil, fmt.Errorf("%w: reencryption between %s and %s (encblk resumes aes-xts-plain64)", ErrUnsupported, r.Old.Encryption, r.New.Encryption)
	case r.Old.Offset != r.New.Offset || r.Old.IVTweak != 0 || r.New.IVTweak != 0 || !r.Old.Dynamic || !r.New.Dynamic:
		return nil, fmt.Errorf("%w: reencryption that moves data or has fixed sizes", ErrUnsupported)
	case r.Resilience == "checksum" && (r.HashBlock%rc.oldSS != 0 || r.HashBlock%rc.newSS != 0):
		return nil, fmt.Errorf("%w: checksum block %d is not a multiple of the sector sizes", ErrCorrupt, r.HashBlock)
	}
	if r.Resilience == "journal" {
		// The journal holds the hot zone's old bytes as they were; its
		// zones are whole sectors of both sizes.
		rc.block = uint64(max(4096, rc.oldSS, rc.newSS))
	}
	if dataEnd <= r.New.Offset {
		return nil, fmt.Errorf("data device of %d bytes ends before the data offset %d", dataEnd, r.New.Offset)
	}
	size := dataEnd - r.New.Offset
	if size%rc.block != 0 {
		return nil, fmt.Errorf("%w: data size %d is not a multiple of the %d-byte reencryption block", ErrUnsupported, size, rc.block)
	}
	rc.layout = m.layoutOf(r, size)
	if !plainOld {
		if rc.oldC, err = xts.New(rc.oldKey.Bytes()); err != nil {
			return nil, err
		}
	}
	if rc.newC, err = xts.New(rc.newKey.Bytes()); err != nil {
		return nil, err
	}
	hz := o.HotZone
	if hz == 0 {
		hz = defaultHotZone
	}
	rc.zone = min(hz, rc.areaHolds())
	rc.zone -= rc.zone % rc.block
	if rc.zone == 0 {
		return nil, fmt.Errorf("%w: resilience area of %d bytes cannot protect one block", ErrCorrupt, r.AreaSize)
	}
	if r.Crashed() {
		if err := rc.recover(); err != nil {
			return nil, err
		}
	} else {
		rc.progress = m.progressOf(r, size)
	}
	ok = true
	return rc, nil
}

// Progress returns the bytes done and the data size.
func (rc *Reencryptor) Progress() (done, total uint64) { return rc.progress, rc.layout.size }

// Close wipes the keys. A reencryption not finished stays recorded.
func (rc *Reencryptor) Close() {
	if rc.oldC != nil {
		rc.oldC.Close()
	}
	if rc.newC != nil {
		rc.newC.Close()
	}
	rc.oldKey.Destroy()
	rc.newKey.Destroy()
}

// commitSegments commits the segments of progress p (hot zone of length
// hot when hot > 0, the end state when final).
func (rc *Reencryptor) commitSegments(p, hot uint64, final bool) error {
	k := rc.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	e, err := k.meta.withSegments(rc.layout, p, hot, final)
	if err != nil {
		return err
	}
	if final {
		if e, err = e.endReencryption(k.bin.HdrSize, append(slices.Clone(rc.oldSlots), rc.r.Keyslot)); err != nil {
			return err
		}
	}
	n, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return err
	}
	return k.commit(n)
}

// commitState commits, under the lock, the state withState makes of
// segs: the segments at the indexes bind bound to digest d.
func (rc *Reencryptor) commitState(segs []json.RawMessage, d int, bind []int) error {
	k := rc.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	e, err := k.meta.withState(segs, d, bind)
	if err != nil {
		return err
	}
	n, err := e.reparse(k.bin.HdrSize)
	if err != nil {
		return err
	}
	return k.commit(n)
}

// endReencryption returns a copy of e (its segments already final)
// without the keyslots drop (the old ones and the reencrypt keyslot), the
// digests left bound to nothing, and the reencryption requirement.
func (e *metadata) endReencryption(hdrSize uint64, drop []int) (*metadata, error) {
	n, err := e.reparse(hdrSize)
	if err != nil {
		return nil, err
	}
	if e, err = n.withoutKeyslots(drop); err != nil {
		return nil, err
	}
	e = e.clone()
	for key, raw := range e.digests {
		var d struct {
			Keyslots []string `json:"keyslots"`
			Segments []string `json:"segments"`
		}
		if json.Unmarshal(raw, &d) == nil && len(d.Keyslots) == 0 && len(d.Segments) == 0 {
			delete(e.digests, key)
		}
	}
	return e, e.setRequirement(false)
}

// areaHolds is the largest zone the resilience area protects.
func (rc *Reencryptor) areaHolds() uint64 {
	if rc.r.Resilience == "journal" {
		return rc.r.AreaSize
	}
	return rc.r.AreaSize / sha256.Size * rc.block
}

// protection is what goes to the resilience area before the zone buf (its
// old content) is rewritten: the checksums of its blocks, or (journal) a
// copy of it.
func (rc *Reencryptor) protection(buf []byte) []byte {
	if rc.r.Resilience == "journal" {
		return bytes.Clone(buf)
	}
	return rc.checksums(buf)
}

// checksums hashes each block of buf.
func (rc *Reencryptor) checksums(buf []byte) []byte {
	sums := make([]byte, 0, len(buf)/int(rc.block)*sha256.Size)
	for off := 0; off < len(buf); off += int(rc.block) {
		s := sha256.Sum256(buf[off : off+int(rc.block)])
		sums = append(sums, s[:]...)
	}
	return sums
}

// crypt turns the old ciphertext (or plaintext, for an encryption) of
// data bytes at progress offset p into the new ciphertext, in place.
func (rc *Reencryptor) crypt(buf []byte, p uint64) error {
	if rc.oldC != nil {
		if err := rc.oldC.DecryptSectors(buf, buf, rc.oldSS, p/512, uint64(rc.oldSS/512)); err != nil {
			return err
		}
	}
	return rc.newC.EncryptSectors(buf, buf, rc.newSS, p/512, uint64(rc.newSS/512))
}

func (rc *Reencryptor) readData(buf []byte, p uint64) error {
	if err := readFull(rc.data, buf, rc.layout.dataOffset+p); err != nil {
		return fmt.Errorf("read data at %d: %w", p, err)
	}
	return nil
}

func (rc *Reencryptor) writeData(buf []byte, p uint64) error {
	if _, err := rc.data.WriteAt(buf, int64(rc.layout.dataOffset+p)); err != nil {
		return fmt.Errorf("%w: write data at %d: %w", ErrIO, p, err)
	}
	return nil
}

// recover finishes the hot zone a crash left: each block whose hash is
// still the one recorded before the zone was rewritten holds old
// ciphertext and is rewritten; the others already hold new ciphertext.
// Then the step is committed as done.
func (rc *Reencryptor) recover() error {
	hot := rc.r.Hot
	if hot.Dynamic || hot.Offset < rc.layout.dataOffset || hot.Size == 0 || hot.Size%rc.block != 0 {
		return fmt.Errorf("%w: hot zone segment %d", ErrCorrupt, hot.ID)
	}
	p, n := hot.Offset-rc.layout.dataOffset, hot.Size
	if p%rc.block != 0 || p+n > rc.layout.size || n > rc.areaHolds() {
		return fmt.Errorf("%w: hot zone [%d, +%d) does not fit the data or the resilience area", ErrCorrupt, p, n)
	}
	if rc.r.Resilience == "journal" {
		// The journal holds the zone's old ciphertext, whole.
		buf := make([]byte, n)
		if err := readFull(rc.k.dev, buf, rc.r.AreaOffset); err != nil {
			return fmt.Errorf("read resilience area: %w", err)
		}
		if err := rc.cryptParallel(buf, p); err != nil {
			return err
		}
		if err := rc.writeData(buf, p); err != nil {
			return err
		}
		return rc.zoneDone(p, n)
	}
	sums := make([]byte, n/rc.block*sha256.Size)
	if err := readFull(rc.k.dev, sums, rc.r.AreaOffset); err != nil {
		return fmt.Errorf("read resilience area: %w", err)
	}
	buf := make([]byte, n)
	if err := rc.readData(buf, p); err != nil {
		return err
	}
	now := rc.checksums(buf)
	for i := uint64(0); i < n/rc.block; i++ {
		if !bytes.Equal(now[i*sha256.Size:(i+1)*sha256.Size], sums[i*sha256.Size:(i+1)*sha256.Size]) {
			continue // already new
		}
		b := buf[i*rc.block : (i+1)*rc.block]
		if err := rc.crypt(b, p+i*rc.block); err != nil {
			return err
		}
	}
	if err := rc.writeData(buf, p); err != nil {
		return err
	}
	return rc.zoneDone(p, n)
}

// zoneDone syncs the rewritten zone [p, p+n) and commits it as done.
func (rc *Reencryptor) zoneDone(p, n uint64) error {
	if err := rc.data.Sync(); err != nil {
		return fmt.Errorf("%w: sync data: %w", ErrIO, err)
	}
	if err := rc.commitSegments(p+n, 0, false); err != nil {
		return err
	}
	rc.progress = p + n
	return nil
}

// Done reports whether all data is under the new key.
func (rc *Reencryptor) Done() bool { return rc.progress >= rc.layout.size }

// Step rewrites one hot zone: its current blocks are hashed into the
// resilience area and the zone is committed as hot; then it is rewritten
// under the new key, synced, and committed as done. After the last zone
// Finish completes the reencryption.
func (rc *Reencryptor) Step() error {
	if rc.Done() {
		return nil
	}
	if rc.shift != nil {
		return rc.shiftStep()
	}
	if rc.back != nil {
		return rc.backStep()
	}
	if rc.unshift != nil {
		return rc.unshiftStep()
	}
	p := rc.progress
	n := min(rc.zone, rc.layout.size-p)
	buf := make([]byte, n)
	if err := rc.readData(buf, p); err != nil {
		return err
	}
	return rc.stepZone(buf, p, rc.protection(buf), func() error {
		if err := rc.crypt(buf, p); err != nil {
			return err
		}
		return rc.writeData(buf, p)
	})
}

// stepZone runs one zone whose old content (buf) and checksums are known:
// protect, rewrite (by write), sync, commit.
func (rc *Reencryptor) stepZone(buf []byte, p uint64, sums []byte, write func() error) error {
	n := uint64(len(buf))
	if err := rc.writeResilience(sums); err != nil {
		return err
	}
	if err := rc.commitSegments(p, n, false); err != nil {
		return err
	}
	if err := write(); err != nil {
		return err
	}
	return rc.zoneDone(p, n)
}

// writeResilience writes b (checksums or a journal) to the resilience
// area and syncs it, before the commit that marks the zone hot: between
// two syncs writes reach the disk in any order, and a hot zone whose
// area still holds the previous zone's checksums would be taken as done
// (its old ciphertext read as new), a journal's as the zone's old bytes.
func (rc *Reencryptor) writeResilience(b []byte) error {
	if _, err := rc.k.dev.WriteAt(b, int64(rc.r.AreaOffset)); err != nil {
		return fmt.Errorf("%w: write resilience area: %w", ErrIO, err)
	}
	if err := rc.k.dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync resilience area: %w", ErrIO, err)
	}
	return nil
}

// Finish ends a reencryption whose data is all done: one commit leaves
// only the new segment and the new keyslots and drops the requirement;
// then the old keyslots' areas are wiped, so the old key is gone.
func (rc *Reencryptor) Finish() error {
	if !rc.Done() {
		return fmt.Errorf("reencryption not done (%d of %d bytes)", rc.progress, rc.layout.size)
	}
	if rc.shift != nil {
		return rc.finishShift()
	}
	if rc.back != nil {
		return rc.finishBack()
	}
	if rc.unshift != nil {
		return rc.finishUnshift()
	}
	k := rc.k
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	var areas []*Keyslot
	for _, id := range rc.oldSlots {
		if ks := m.Keyslots[id]; ks != nil {
			areas = append(areas, ks)
		}
	}
	if err := rc.commitSegments(rc.layout.size, 0, true); err != nil {
		return err
	}
	for _, ks := range areas {
		if err := wipeArea(k.dev, ks.AreaOffset, ks.AreaSize); err != nil {
			return fmt.Errorf("reencryption finished, but wiping old keyslot %d failed: %w", ks.ID, err)
		}
	}
	return nil
}

// OldKeyslots are the keyslots of the old key, removed by Finish.
func (rc *Reencryptor) OldKeyslots() []int { return slices.Clone(rc.oldSlots) }

// Keys returns copies of the old and the new volume key (the caller
// destroys them), for a server that routes requests during an online
// reencryption.
func (rc *Reencryptor) Keys() (old, new *secmem.Buffer, err error) {
	if rc.oldKey == nil {
		return nil, nil, fmt.Errorf("%w: no old key (encryption in place)", ErrUnsupported)
	}
	clone := func(k *secmem.Buffer) (*secmem.Buffer, error) {
		b, err := secmem.New(k.Len())
		if err == nil {
			copy(b.Bytes(), k.Bytes())
		}
		return b, err
	}
	if old, err = clone(rc.oldKey); err != nil {
		return nil, nil, err
	}
	if new, err = clone(rc.newKey); err != nil {
		old.Destroy()
		return nil, nil, err
	}
	return old, new, nil
}

// NextZone is the length of the zone Step rewrites next (0 when done).
func (rc *Reencryptor) NextZone() uint64 {
	if rc.shift != nil {
		_, l := rc.shift.zone()
		return l
	}
	if rc.back != nil {
		return min(rc.zone, rc.back.done)
	}
	if st := rc.unshift; st != nil {
		switch {
		case st.plain:
			return 0
		case st.next < st.size:
			return min(st.shift, st.size-st.next)
		}
		return st.moved
	}
	return min(rc.zone, rc.layout.size-rc.progress)
}

// Online reports whether the recorded reencryption can run while the
// volume is served: the new segment has the old one's sector size, so
// that requests keep their shape on both sides of the boundary.
func (r *Reencryption) Online() bool {
	return r.Mode == ReencryptModeReencrypt && r.Old != nil && r.New != nil &&
		r.Old.Type == "crypt" && r.New.Type == "crypt" && r.Old.SectorSize == r.New.SectorSize &&
		r.Old.Offset == r.New.Offset && r.Old.IVTweak == 0 && r.New.IVTweak == 0
}
