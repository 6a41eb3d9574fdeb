package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// device is where the header lives: the backing file or block device, or a
// detached header file. *os.File is one; tests wrap it to simulate crashes.
type device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// headerCopy is one decoded, validated header copy.
type headerCopy struct {
	bin  *binHeader
	meta *metadata
	text []byte // the JSON text as read
}

// copyState is what reading one header copy found.
type copyState struct {
	copy *headerCopy
	err  error // why the copy is unusable; nil when valid
}

// readCopy reads and validates the header copy at offset.
func readCopy(dev io.ReaderAt, offset uint64, secondary bool) (*headerCopy, error) {
	bin := make([]byte, binHeaderSize)
	if err := readFull(dev, bin, offset); err != nil {
		if !errors.Is(err, errTruncated) {
			return nil, err
		}
		magic := magicPrimary
		if secondary {
			magic = magicSecondary
		}
		if bytes.HasPrefix(bin, magic) {
			return nil, fmt.Errorf("%w: binary header truncated (device ends inside it)", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w: device too small for a header at %d", ErrNotLUKS, offset)
	}
	h, err := parseBinHeader(bin, secondary, offset)
	if err != nil {
		return nil, err
	}
	area := make([]byte, h.HdrSize-binHeaderSize)
	if err := readFull(dev, area, offset+binHeaderSize); err != nil {
		return nil, fmt.Errorf("JSON area: %w", err)
	}
	if err := h.verifyChecksum(bin, area); err != nil {
		return nil, err
	}
	text, err := extractJSON(area)
	if err != nil {
		return nil, err
	}
	m, err := parseMetadata(text, h.HdrSize)
	if err != nil {
		return nil, err
	}
	return &headerCopy{bin: h, meta: m, text: text}, nil
}

// errTruncated marks a read that hit the end of the device.
var errTruncated = fmt.Errorf("%w: device too small (truncated header)", ErrCorrupt)

func readFull(dev io.ReaderAt, p []byte, offset uint64) error {
	n, err := dev.ReadAt(p, int64(offset))
	if n == len(p) {
		return nil
	}
	if errors.Is(err, io.EOF) || err == nil {
		return errTruncated
	}
	return fmt.Errorf("%w: read at %d: %w", ErrIO, offset, err)
}

// readCopies reads both LUKS2 header copies. When the primary's binary
// header is unreadable, the secondary is searched at every offset where
// cryptsetup may have put it.
func readCopies(dev io.ReaderAt) (primary, secondary copyState) {
	primary.copy, primary.err = readCopy(dev, 0, false)
	var hdrSize uint64
	if primary.copy != nil {
		hdrSize = primary.copy.bin.HdrSize
	} else {
		// The binary header may be fine while the JSON is not.
		bin := make([]byte, binHeaderSize)
		if readFull(dev, bin, 0) == nil {
			if h, err := parseBinHeader(bin, false, 0); err == nil {
				hdrSize = h.HdrSize
			}
		}
	}
	if hdrSize != 0 {
		secondary.copy, secondary.err = readCopy(dev, hdrSize, true)
		return primary, secondary
	}
	secondary.err = fmt.Errorf("%w: no LUKS2 magic", ErrNotLUKS)
	for _, off := range validHdrSizes {
		c, err := readCopy(dev, off, true)
		if err == nil {
			secondary.copy, secondary.err = c, nil
			break
		}
		if !errors.Is(err, ErrNotLUKS) {
			secondary.err = err
		}
	}
	return primary, secondary
}

// pick chooses the copy to use: the valid one with the highest seqid.
func pick(primary, secondary copyState) (*headerCopy, error) {
	p, s := primary.copy, secondary.copy
	switch {
	case p != nil && s != nil:
		if s.bin.SeqID > p.bin.SeqID {
			return s, nil
		}
		return p, nil
	case p != nil:
		return p, nil
	case s != nil:
		return s, nil
	}
	if errors.Is(primary.err, ErrNotLUKS) && errors.Is(secondary.err, ErrNotLUKS) {
		return nil, ErrNotLUKS
	}
	base := ErrCorrupt
	if errors.Is(primary.err, ErrIO) && errors.Is(secondary.err, ErrIO) {
		base = ErrIO
	}
	return nil, fmt.Errorf("%w: no valid LUKS2 header: primary: %s; secondary: %s", base, reason(primary.err), reason(secondary.err))
}

// reason strips the sentinel prefix from a copy's error for messages that
// already name the condition.
func reason(err error) string {
	for _, s := range []error{ErrCorrupt, ErrNotLUKS, ErrUnsupported, ErrIO} {
		prefix := s.Error() + ": "
		if msg := err.Error(); len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
			return msg[len(prefix):]
		}
	}
	return err.Error()
}
