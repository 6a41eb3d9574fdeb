package nbd

import (
	"fmt"
	"math/bits"
)

// export is a Backend as negotiated for one connection: its Info read once,
// its limits normalised and its transmission flags computed.
type export struct {
	name    string
	backend Backend
	info    Info
	size    uint64
	// minBlock, prefBlock, maxBlock are the advertised size constraints.
	minBlock, prefBlock, maxBlock uint32
	statuser                      BlockStatuser
	cacher                        Cacher
}

// newExport reads the backend's Info and checks it. An invalid Info is a
// programming error in the Backend; the client is told the export is
// unavailable rather than given limits that make no sense.
func newExport(name string, b Backend) (*export, error) {
	e := &export{name: name, backend: b, info: b.Info()}
	size := b.Size()
	if size < 0 {
		return nil, fmt.Errorf("export %q: negative size %d", name, size)
	}
	e.size = uint64(size)
	e.minBlock, e.prefBlock, e.maxBlock = e.info.MinBlock, e.info.PreferredBlock, e.info.MaxBlock
	if e.minBlock == 0 {
		e.minBlock = 1
	}
	if e.prefBlock == 0 {
		e.prefBlock = max(defaultPreferredBlock, e.minBlock)
	}
	if e.maxBlock == 0 || e.maxBlock > maxPayload {
		e.maxBlock = maxPayload
	}
	switch {
	case bits.OnesCount32(e.minBlock) != 1 || e.minBlock > 64<<10:
		return nil, fmt.Errorf("export %q: minimum block size %d is not a power of two <= 64 KiB", name, e.minBlock)
	case bits.OnesCount32(e.prefBlock) != 1 || e.prefBlock < e.minBlock || e.prefBlock < 512:
		return nil, fmt.Errorf("export %q: preferred block size %d is not a power of two >= max(512, minimum)", name, e.prefBlock)
	case e.maxBlock < e.prefBlock || e.maxBlock%e.minBlock != 0:
		return nil, fmt.Errorf("export %q: maximum payload %d is below the preferred block size or unaligned", name, e.maxBlock)
	}
	e.statuser, _ = b.(BlockStatuser)
	e.cacher, _ = b.(Cacher)
	return e, nil
}

// flags are the transmission flags: what the client may send. Read-only
// exports advertise no writing features (as nbdkit); DF only makes sense
// with structured replies.
func (e *export) flags(structured bool) uint16 {
	f := uint16(flagHasFlags)
	i := &e.info
	if i.ReadOnly {
		f |= flagReadOnly
	} else {
		if i.CanFUA {
			f |= flagSendFUA
		}
		if i.CanTrim {
			f |= flagSendTrim
		}
		if i.CanZero {
			f |= flagSendWriteZeroes
			if i.CanFastZero {
				f |= flagSendFastZero
			}
		}
	}
	if i.CanFlush {
		f |= flagSendFlush
	}
	if structured {
		f |= flagSendDF
	}
	if i.CanMultiConn {
		f |= flagCanMultiConn
	}
	if i.CanCache {
		f |= flagSendCache
	}
	return f
}
