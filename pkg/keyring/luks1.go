package keyring

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// The LUKS1 header (592 bytes at offset 0, big-endian), as written by
// cryptsetup --type luks1 and qemu-img create -f luks. encblk reads and
// unlocks LUKS1 volumes so it can serve them; it does not change them.
//
//	offset size field
//	     0    6 magic "LUKS\xba\xbe"
//	     6    2 version 1
//	     8   32 cipher name ("aes")
//	    40   32 cipher mode ("xts-plain64")
//	    72   32 hash spec ("sha256", "sha1")
//	   104    4 payload offset, in 512-byte sectors
//	   108    4 key bytes
//	   112   20 master key digest: PBKDF2(mk, salt, iterations), 20 bytes
//	   132   32 digest salt
//	   164    4 digest iterations
//	   168   40 uuid
//	   208  8×48 keyslots: active (0x00AC71F3) | iterations | salt[32] |
//	                       key material offset (sectors) | stripes
const (
	luks1HeaderSize   = 592
	luks1Keyslots     = 8
	luks1SlotActive   = 0x00AC71F3
	luks1SlotInactive = 0x0000DEAD
)

type luks1Slot struct {
	active     bool
	iterations uint32
	salt       [32]byte
	offset     uint32 // sectors
	stripes    uint32
}

type luks1Header struct {
	cipherName, cipherMode, hashSpec string
	payloadOffset                    uint32
	keyBytes                         int
	mkDigest                         [20]byte
	mkDigestSalt                     [32]byte
	mkDigestIter                     uint32
	uuid                             string
	slots                            [luks1Keyslots]luks1Slot
}

func readLUKS1(dev io.ReaderAt) (*luks1Header, error) {
	b := make([]byte, luks1HeaderSize)
	if err := readFull(dev, b, 0); err != nil {
		return nil, fmt.Errorf("LUKS1 header: %w", err)
	}
	return parseLUKS1(b)
}

func parseLUKS1(b []byte) (*luks1Header, error) {
	if len(b) < luks1HeaderSize || !bytes.Equal(b[:6], magicPrimary) || binary.BigEndian.Uint16(b[6:]) != 1 {
		return nil, fmt.Errorf("%w: no LUKS1 magic", ErrNotLUKS)
	}
	h := &luks1Header{
		cipherName:    cString(b[8:40]),
		cipherMode:    cString(b[40:72]),
		hashSpec:      cString(b[72:104]),
		payloadOffset: binary.BigEndian.Uint32(b[104:]),
		keyBytes:      int(binary.BigEndian.Uint32(b[108:])),
		mkDigestIter:  binary.BigEndian.Uint32(b[164:]),
		uuid:          cString(b[168:208]),
	}
	copy(h.mkDigest[:], b[112:132])
	copy(h.mkDigestSalt[:], b[132:164])
	if h.keyBytes <= 0 || h.keyBytes > maxKeySize {
		return nil, fmt.Errorf("%w: LUKS1 key size %d", ErrCorrupt, h.keyBytes)
	}
	if h.mkDigestIter == 0 {
		return nil, fmt.Errorf("%w: LUKS1 digest iterations 0", ErrCorrupt)
	}
	for i := range h.slots {
		o := 208 + 48*i
		s := &h.slots[i]
		switch st := binary.BigEndian.Uint32(b[o:]); st {
		case luks1SlotActive:
			s.active = true
		case luks1SlotInactive:
		default:
			return nil, fmt.Errorf("%w: LUKS1 keyslot %d has state 0x%08x", ErrCorrupt, i, st)
		}
		s.iterations = binary.BigEndian.Uint32(b[o+4:])
		copy(s.salt[:], b[o+8:o+40])
		s.offset = binary.BigEndian.Uint32(b[o+40:])
		s.stripes = binary.BigEndian.Uint32(b[o+44:])
		if s.active && (s.iterations == 0 || s.stripes == 0 || s.stripes > afStripes || s.offset == 0) {
			return nil, fmt.Errorf("%w: LUKS1 keyslot %d parameters out of range", ErrCorrupt, i)
		}
	}
	return h, nil
}

// cipherSpec is the dm-crypt cipher string, e.g. "aes-xts-plain64".
func (h *luks1Header) cipherSpec() string { return h.cipherName + "-" + h.cipherMode }

// areaSize is the extent of the header and the key material, rounded up
// to 4096 bytes as cryptsetup's header backups are.
func (h *luks1Header) areaSize() uint64 {
	end := uint64(luks1HeaderSize)
	for _, s := range h.slots {
		if s.offset != 0 {
			end = max(end, uint64(s.offset)*sectorSize512+afSectors(h.keyBytes, int(s.stripes))*sectorSize512)
		}
	}
	end = (end + 4095) / 4096 * 4096
	if h.payloadOffset != 0 {
		end = min(end, uint64(h.payloadOffset)*sectorSize512)
	}
	return end
}

func (h *luks1Header) slotKDF(i int) KDF {
	s := h.slots[i]
	return KDF{Type: "pbkdf2", Hash: h.hashSpec, Iterations: int(s.iterations), Salt: s.salt[:]}
}

func (h *luks1Header) keyslots() []Keyslot {
	var out []Keyslot
	for i, s := range h.slots {
		if !s.active {
			continue
		}
		out = append(out, Keyslot{
			ID: i, Type: "luks1", KeySize: h.keyBytes, Priority: 1, KDF: h.slotKDF(i),
			AFType: "luks1", AFStripes: int(s.stripes), AFHash: h.hashSpec,
			AreaType: "raw", AreaOffset: uint64(s.offset) * sectorSize512,
			AreaSize:       afSectors(h.keyBytes, int(s.stripes)) * sectorSize512,
			AreaEncryption: h.cipherSpec(), AreaKeySize: h.keyBytes,
		})
	}
	return out
}

func (h *luks1Header) segment() Segment {
	return Segment{
		ID: 0, Type: "crypt", Offset: uint64(h.payloadOffset) * sectorSize512, Dynamic: true,
		Encryption: h.cipherSpec(), SectorSize: sectorSize512,
	}
}

// metadata is the header in the LUKS2 model (read-only: never committed):
// one keyslot of type "luks1" per active slot, one dynamic segment, and
// one PBKDF2 digest binding them. Listing, the unlock loop and serving
// then treat LUKS1 volumes as they treat LUKS2 ones.
func (h *luks1Header) metadata() *metadata {
	m := &metadata{
		Keyslots: map[int]*Keyslot{}, Tokens: map[int]*Token{},
		Segments: map[int]*Segment{}, Digests: map[int]*digest{},
	}
	d := &digest{ID: 0, Type: "pbkdf2", Segments: []int{0}, Hash: h.hashSpec,
		Iterations: int(h.mkDigestIter), Salt: h.mkDigestSalt[:], Digest: h.mkDigest[:]}
	for _, ks := range h.keyslots() {
		m.Keyslots[ks.ID] = &ks
		d.Keyslots = append(d.Keyslots, ks.ID)
	}
	seg := h.segment()
	m.Segments[0] = &seg
	m.Digests[0] = d
	return m
}
