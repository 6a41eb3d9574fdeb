package keyring

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"syscall"
)

// Keyring is an open LUKS volume header: its keyslots, tokens, segments
// and digests. It is safe for concurrent use; unlocking runs without
// holding the lock that metadata updates take.
type Keyring struct {
	mu       sync.Mutex
	dev      device
	file     *os.File // closed by Close when the keyring opened it
	readOnly bool

	// LUKS2 state: the copy in use and both copies' salts.
	bin     binHeader
	salts   [2][saltLen]byte
	meta    *metadata
	copyErr [2]error // why a copy was unusable or obsolete at open; nil when good

	v1 *luks1Header // set for LUKS1 volumes
}

// Options modify Open.
type Options struct {
	// ReadOnly opens the header device read-only; updates then fail with
	// ErrReadOnly.
	ReadOnly bool
}

// Open opens the LUKS header at path: the backing file or block device,
// or a detached header file (cryptsetup's --header). Nothing is written;
// a damaged copy is only repaired by Repair.
func Open(path string, opts *Options) (*Keyring, error) {
	ro := opts != nil && opts.ReadOnly
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil && !ro && (errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		ro = true
		f, err = os.OpenFile(path, os.O_RDONLY, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open header: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		// Opened read-only it would fail every read, an I/O error; it is
		// the wrong argument, as when opened read-write (EISDIR).
		f.Close()
		return nil, fmt.Errorf("open header: %w", &os.PathError{Op: "open", Path: path, Err: syscall.EISDIR})
	}
	k, err := openDevice(f, ro)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k.file = f
	return k, nil
}

// OpenFile opens the header held in f, which stays owned by the caller
// (Close does not close it). Open f read-write to allow updates.
func OpenFile(f *os.File, opts *Options) (*Keyring, error) {
	ro := opts != nil && opts.ReadOnly
	return openDevice(f, ro)
}

func openDevice(dev device, readOnly bool) (*Keyring, error) {
	k := &Keyring{dev: dev, readOnly: readOnly}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

// load (re)reads the header from the device.
func (k *Keyring) load() error {
	var magic [8]byte
	if err := readFull(k.dev, magic[:], 0); err == nil && bytes.Equal(magic[:6], magicPrimary) && magic[6] == 0 && magic[7] == 1 {
		v1, err := readLUKS1(k.dev)
		if err != nil {
			return err
		}
		k.v1, k.meta = v1, v1.metadata()
		k.bin = binHeader{UUID: v1.uuid}
		return nil
	}
	primary, secondary := readCopies(k.dev)
	c, err := pick(primary, secondary)
	if err != nil {
		return err
	}
	k.bin, k.meta = *c.bin, c.meta
	k.copyErr = [2]error{primary.err, secondary.err}
	if p, s := primary.copy, secondary.copy; p != nil && s != nil && p.bin.SeqID != s.bin.SeqID {
		if p.bin.SeqID < s.bin.SeqID {
			k.copyErr[0] = fmt.Errorf("obsolete (seqid %d, secondary has %d)", p.bin.SeqID, s.bin.SeqID)
		} else {
			k.copyErr[1] = fmt.Errorf("obsolete (seqid %d, primary has %d)", s.bin.SeqID, p.bin.SeqID)
		}
	}
	for i, cs := range []copyState{primary, secondary} {
		if cs.copy != nil {
			k.salts[i] = cs.copy.bin.Salt
		} else if _, err := rand.Read(k.salts[i][:]); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the header device if Open opened it.
func (k *Keyring) Close() error {
	if k.file == nil {
		return nil
	}
	err := k.file.Close()
	k.file = nil
	return err
}

// Version is the LUKS version: 1 or 2.
func (k *Keyring) Version() int {
	if k.v1 != nil {
		return 1
	}
	return 2
}

// UUID is the volume's UUID.
func (k *Keyring) UUID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bin.UUID
}

// Label is the LUKS2 label ("" for LUKS1).
func (k *Keyring) Label() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bin.Label
}

// Subsystem is the LUKS2 subsystem field ("" for LUKS1).
func (k *Keyring) Subsystem() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bin.Subsystem
}

// SeqID is the sequence number of the metadata in use (0 for LUKS1).
func (k *Keyring) SeqID() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bin.SeqID
}

// MetadataSize is hdr_size: one header copy, binary header plus JSON area.
func (k *Keyring) MetadataSize() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bin.HdrSize
}

// HeaderAreaSize is the size of everything the header owns at the start of
// its device: both copies and the keyslots area (LUKS1: up to the end of
// the last keyslot's key material). Header backups have this size.
func (k *Keyring) HeaderAreaSize() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.headerAreaSizeLocked()
}

// HeaderStatus reports, for the primary and the secondary copy, why it is
// unusable or obsolete, or nil if it is good. Repair fixes the bad one.
func (k *Keyring) HeaderStatus() (primary, secondary error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.copyErr[0], k.copyErr[1]
}

// Config returns the config section: sizes, persistent flags and
// mandatory requirements.
func (k *Keyring) Config() Config {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.meta.Config
	c.Flags = slices.Clone(c.Flags)
	c.Requirements = slices.Clone(c.Requirements)
	return c
}

// AllowDiscards reports the persistent "allow-discards" flag: TRIM may
// reach the backing (which reveals which sectors are unused).
func (k *Keyring) AllowDiscards() bool {
	return slices.Contains(k.Config().Flags, "allow-discards")
}

// Keyslots lists the keyslots in id order. The values are copies.
func (k *Keyring) Keyslots() []Keyslot {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	out := make([]Keyslot, 0, len(m.Keyslots))
	for _, id := range slices.Sorted(maps.Keys(m.Keyslots)) {
		out = append(out, m.Keyslots[id].clone())
	}
	return out
}

func (ks *Keyslot) clone() Keyslot {
	c := *ks
	c.Tokens = make([]Token, len(ks.Tokens))
	for i, t := range ks.Tokens {
		c.Tokens[i] = t.clone()
	}
	c.KDF.Salt = slices.Clone(ks.KDF.Salt)
	return c
}

// Segments lists the data segments in id order (LUKS1: its one segment).
func (k *Keyring) Segments() []Segment {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	out := make([]Segment, 0, len(m.Segments))
	for _, id := range slices.Sorted(maps.Keys(m.Segments)) {
		s := *m.Segments[id]
		s.Flags = slices.Clone(s.Flags)
		out = append(out, s)
	}
	return out
}

// knownRequirements are mandatory requirements encblk understands well
// enough to open the volume. "opal" volumes are parsed and unlocked; their
// hw-opal segments are served by pkg/sed.
var knownRequirements = []string{"opal", "opal-v2"}

// checkRequirements refuses volumes whose mandatory requirements encblk
// does not implement (for example an interrupted re-encryption).
func (m *metadata) checkRequirements() error {
	for _, r := range m.Config.Requirements {
		if !slices.Contains(knownRequirements, r) {
			return fmt.Errorf("%w: mandatory requirement %q", ErrUnsupported, r)
		}
	}
	return nil
}

// DataSegment returns the segment encblk serves: the volume must have
// exactly one segment, of type "crypt", encrypted with aes-xts-plain64,
// without integrity, and no unknown requirements. For other volumes the
// segment is returned with an error wrapping ErrUnsupported that says why.
func (k *Keyring) DataSegment() (Segment, error) {
	segs := k.Segments()
	// Requirements first: they say why (an interrupted reencryption has
	// several segments).
	k.mu.Lock()
	err := k.meta.checkRequirements()
	k.mu.Unlock()
	if err != nil {
		return segs[0], err
	}
	if len(segs) != 1 {
		return Segment{}, fmt.Errorf("%w: %d data segments (encblk serves exactly one)", ErrUnsupported, len(segs))
	}
	s := segs[0]
	switch {
	case s.Type == "hw-opal" || s.Type == "hw-opal-crypt":
		return s, fmt.Errorf("%w: segment type %q is a self-encrypting drive's locking range, which encblk does not serve (\"encblk unlock\" unlocks the range; cryptsetup opens it)", ErrUnsupported, s.Type)
	case s.Type != "crypt":
		return s, fmt.Errorf("%w: segment type %q (encblk serves \"crypt\")", ErrUnsupported, s.Type)
	case s.Encryption != "aes-xts-plain64":
		return s, fmt.Errorf("%w: data cipher %q (encblk serves aes-xts-plain64)", ErrUnsupported, s.Encryption)
	case s.Integrity:
		return s, fmt.Errorf("%w: authenticated (dm-integrity) segment", ErrUnsupported)
	}
	if kb := k.KeyBits(); kb != 256 && kb != 512 {
		return s, fmt.Errorf("%w: %d-bit aes-xts key", ErrUnsupported, kb)
	}
	return s, nil
}

// KeyBits is the size of the volume key (DEK) in bits.
func (k *Keyring) KeyBits() int {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	if d := m.segmentDigest(lowestSegment(m)); d != nil {
		for _, id := range d.Keyslots {
			return m.Keyslots[id].KeySize * 8
		}
	}
	return 0
}

// VolumeKeyID names the volume key (DEK) without revealing it: a
// fingerprint (hex) of the LUKS2 digest that checks it, over the digest's
// hash, iterations, salt and value, all public header fields. Every
// LUKS2 writer makes a new digest with a new random salt for a new volume
// key, so the ID changes whenever the data is reencrypted, by any tool,
// and not when keyslots are added, changed or removed. It is "" for LUKS1
// and while a reencryption is recorded (two volume keys).
func (k *Keyring) VolumeKeyID() string {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	if k.v1 != nil || m == nil || len(m.Segments) != 1 {
		return ""
	}
	d := m.segmentDigest(lowestSegment(m))
	if d == nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00", d.Hash, d.Iterations)
	h.Write(d.Salt)
	h.Write([]byte{0})
	h.Write(d.Digest)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func lowestSegment(m *metadata) int {
	ids := slices.Sorted(maps.Keys(m.Segments))
	if len(ids) == 0 {
		return -1
	}
	return ids[0]
}

// MetadataJSON returns the LUKS2 JSON metadata in use (what cryptsetup
// luksDump --dump-json-metadata prints). LUKS1 volumes have none.
func (k *Keyring) MetadataJSON() ([]byte, error) {
	if k.v1 != nil {
		return nil, fmt.Errorf("%w: LUKS1 volumes have no JSON metadata", ErrUnsupported)
	}
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	return m.marshal()
}
