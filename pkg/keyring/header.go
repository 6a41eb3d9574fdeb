package keyring

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// The LUKS2 binary header: the first 4096 bytes of each header copy,
// followed by the JSON area (hdr_size-4096 bytes). Big-endian integers;
// strings are NUL-padded.
//
//	offset size field
//	     0    6 magic       "LUKS\xba\xbe" (primary) / "SKUL\xba\xbe" (secondary)
//	     6    2 version     2
//	     8    8 hdr_size    binary header + JSON area, 16 KiB … 4 MiB (power of two)
//	    16    8 seqid       incremented on every metadata update
//	    24   48 label
//	    72   32 checksum_alg "sha256"
//	   104   64 salt        random, one per copy
//	   168   40 uuid
//	   208   48 subsystem
//	   256    8 hdr_offset  0 (primary) / hdr_size (secondary)
//	   264  184 padding
//	   448   64 csum        checksum of binary header (csum zeroed) + JSON area
//	   512 3584 padding
const (
	binHeaderSize = 4096
	minHdrSize    = 16 << 10
	maxHdrSize    = 4 << 20

	offVersion   = 6
	offHdrSize   = 8
	offSeqID     = 16
	offLabel     = 24
	offCsumAlg   = 72
	offSalt      = 104
	offUUID      = 168
	offSubsystem = 208
	offHdrOffset = 256
	offCsum      = 448

	labelLen   = 48
	csumAlgLen = 32
	saltLen    = 64
	uuidLen    = 40
	csumLen    = 64
)

var (
	magicPrimary   = []byte("LUKS\xba\xbe")
	magicSecondary = []byte("SKUL\xba\xbe")
)

// validHdrSizes are the metadata sizes cryptsetup accepts; they are also the
// offsets where a secondary copy may sit when the primary is unreadable.
var validHdrSizes = []uint64{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20}

func isValidHdrSize(n uint64) bool {
	for _, v := range validHdrSizes {
		if n == v {
			return true
		}
	}
	return false
}

// binHeader is the decoded binary header of one copy.
type binHeader struct {
	Secondary   bool
	HdrSize     uint64
	SeqID       uint64
	Label       string
	ChecksumAlg string
	Salt        [saltLen]byte
	UUID        string
	Subsystem   string
	HdrOffset   uint64
	Checksum    [csumLen]byte
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// putCString writes s NUL-padded into b, keeping a terminating NUL.
func putCString(b []byte, s string) error {
	if len(s) >= len(b) {
		return fmt.Errorf("%q is longer than %d bytes", s, len(b)-1)
	}
	clear(b)
	copy(b, s)
	return nil
}

// parseBinHeader decodes the first 4096 bytes of a header copy and checks
// what can be checked without the JSON area: magic, version, size and
// offset. The checksum is verified by verifyChecksum.
func parseBinHeader(b []byte, secondary bool, offset uint64) (*binHeader, error) {
	if len(b) < binHeaderSize {
		return nil, fmt.Errorf("binary header truncated (%d of %d bytes)", len(b), binHeaderSize)
	}
	magic := magicPrimary
	if secondary {
		magic = magicSecondary
	}
	if !bytes.Equal(b[:6], magic) {
		return nil, fmt.Errorf("%w: no LUKS2 magic", ErrNotLUKS)
	}
	if v := binary.BigEndian.Uint16(b[offVersion:]); v != 2 {
		return nil, fmt.Errorf("%w: header version %d, want 2", ErrUnsupported, v)
	}
	h := &binHeader{
		Secondary:   secondary,
		HdrSize:     binary.BigEndian.Uint64(b[offHdrSize:]),
		SeqID:       binary.BigEndian.Uint64(b[offSeqID:]),
		Label:       cString(b[offLabel : offLabel+labelLen]),
		ChecksumAlg: cString(b[offCsumAlg : offCsumAlg+csumAlgLen]),
		UUID:        cString(b[offUUID : offUUID+uuidLen]),
		Subsystem:   cString(b[offSubsystem : offSubsystem+labelLen]),
		HdrOffset:   binary.BigEndian.Uint64(b[offHdrOffset:]),
	}
	copy(h.Salt[:], b[offSalt:])
	copy(h.Checksum[:], b[offCsum:])
	if !isValidHdrSize(h.HdrSize) {
		return nil, fmt.Errorf("%w: header size %d is not one of 16 KiB … 4 MiB", ErrCorrupt, h.HdrSize)
	}
	if h.HdrOffset != offset {
		return nil, fmt.Errorf("%w: header says it is at offset %d but was read at %d", ErrCorrupt, h.HdrOffset, offset)
	}
	if secondary && offset != h.HdrSize {
		return nil, fmt.Errorf("%w: secondary header at %d does not follow a primary of %d bytes", ErrCorrupt, offset, h.HdrSize)
	}
	if h.ChecksumAlg != "sha256" {
		return nil, fmt.Errorf("%w: checksum algorithm %q (only sha256)", ErrUnsupported, h.ChecksumAlg)
	}
	return h, nil
}

// marshal encodes h into a 4096-byte binary header with a zero checksum
// field; seal fills the checksum in.
func (h *binHeader) marshal() ([]byte, error) {
	b := make([]byte, binHeaderSize)
	if h.Secondary {
		copy(b, magicSecondary)
	} else {
		copy(b, magicPrimary)
	}
	binary.BigEndian.PutUint16(b[offVersion:], 2)
	binary.BigEndian.PutUint64(b[offHdrSize:], h.HdrSize)
	binary.BigEndian.PutUint64(b[offSeqID:], h.SeqID)
	binary.BigEndian.PutUint64(b[offHdrOffset:], h.HdrOffset)
	copy(b[offSalt:offSalt+saltLen], h.Salt[:])
	for _, f := range []struct {
		name string
		off  int
		n    int
		s    string
	}{
		{"label", offLabel, labelLen, h.Label},
		{"checksum algorithm", offCsumAlg, csumAlgLen, h.ChecksumAlg},
		{"uuid", offUUID, uuidLen, h.UUID},
		{"subsystem", offSubsystem, labelLen, h.Subsystem},
	} {
		if err := putCString(b[f.off:f.off+f.n], f.s); err != nil {
			return nil, fmt.Errorf("header %s: %w", f.name, err)
		}
	}
	return b, nil
}

// headerChecksum is sha256 over the binary header with its checksum field
// zeroed, followed by the whole JSON area (including the zero padding).
func headerChecksum(bin, jsonArea []byte) [sha256.Size]byte {
	var zero [csumLen]byte
	h := sha256.New()
	h.Write(bin[:offCsum])
	h.Write(zero[:])
	h.Write(bin[offCsum+csumLen : binHeaderSize])
	h.Write(jsonArea)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// verifyChecksum reports whether the stored checksum matches.
func (h *binHeader) verifyChecksum(bin, jsonArea []byte) error {
	sum := headerChecksum(bin, jsonArea)
	var want [csumLen]byte
	copy(want[:], sum[:])
	if want != h.Checksum {
		return fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return nil
}

// encodeCopy returns one whole header copy (hdr_size bytes): the binary
// header with its checksum, and the JSON text NUL-padded to the area size.
func (h *binHeader) encodeCopy(jsonText []byte) ([]byte, error) {
	areaLen := int(h.HdrSize) - binHeaderSize
	if len(jsonText) >= areaLen {
		return nil, fmt.Errorf("%w: JSON metadata is %d bytes, area holds %d", ErrNoSpace, len(jsonText), areaLen-1)
	}
	bin, err := h.marshal()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, h.HdrSize)
	copy(buf, bin)
	copy(buf[binHeaderSize:], jsonText)
	sum := headerChecksum(buf[:binHeaderSize], buf[binHeaderSize:])
	copy(buf[offCsum:], sum[:])
	copy(h.Checksum[:], sum[:])
	return buf, nil
}
