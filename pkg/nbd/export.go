package nbd

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/encblk/encblk/pkg/blockdev"
)

// Export is one NBD export: the device it serves and the facts of NBD
// alone (description, multi-conn, cache, block-size constraints), which
// are no business of the device. pkg/nbd calls the device and nothing
// else; it knows nothing of what lies behind (a plain file, an encrypted
// volume).
//
// The server calls the Device from many goroutines at once, for
// overlapping ranges too, after checking offsets and lengths against its
// size and the block-size constraints. Its errors choose the NBD error the
// client sees by the syscall.Errno they wrap (EIO, ENOSPC, EPERM, EINVAL,
// ESHUTDOWN, ENOTSUP, EOVERFLOW); any other error is reported as EIO. The
// ctx of each call is cancelled when the client disconnects or the server
// shuts down; a device that may wait (a locked volume) must honour it.
type Export struct {
	// Device is what the export serves. Its Info is read at negotiation,
	// for each option that names the export (INFO, then GO); the
	// transmission phase uses what GO read. Its capabilities become the
	// transmission flags; a read-only device advertises no writing.
	//
	// NBD clients may send any byte range, but the server advertises the
	// device's logical block size as the minimum block size and refuses
	// requests not aligned to it (EINVAL), which only clients that honour
	// NBD_INFO_BLOCK_SIZE avoid. To take any byte range from a device with
	// larger blocks, serve blockdev.ByteGranular(device), one for all the
	// connections that share the device.
	Device blockdev.Device

	// Description is sent as NBD_INFO_DESCRIPTION and in NBD_OPT_LIST
	// replies when not empty.
	Description string

	// MultiConn advertises NBD_FLAG_CAN_MULTI_CONN: a flush on one
	// connection covers the writes completed on all, as it does when every
	// connection shares one device whose Flush covers all its writes.
	MultiConn bool

	// Cache advertises NBD_FLAG_SEND_CACHE, served by the device's
	// Prefetch; the device must implement blockdev.Prefetcher.
	Cache bool

	// MinBlock, PreferredBlock and MaxBlock are the block-size constraints
	// of NBD_INFO_BLOCK_SIZE (powers of two; MaxBlock is the largest
	// request payload). Zero means the default: the device's logical block
	// size; the larger of 4096, the device's physical block size and the
	// minimum; the smaller of 32 MiB and the device's MaxTransfer.
	MinBlock, PreferredBlock, MaxBlock uint32
}

// negotiated is an Export as negotiated for one connection: the device's
// Info read once, the limits normalised and checked.
type negotiated struct {
	name string
	Export
	info blockdev.Info
	size uint64
	// minBlock, prefBlock, maxBlock are the advertised size constraints.
	minBlock, prefBlock, maxBlock uint32
	extenter                      blockdev.Extenter   // nil if the device has none
	prefetcher                    blockdev.Prefetcher // nil unless Cache
}

// negotiate reads the device's Info and checks the export. An invalid
// export is a programming error of the caller; the client is told the
// export is unavailable rather than given limits that make no sense.
func negotiate(name string, x Export) (*negotiated, error) {
	if x.Device == nil {
		return nil, fmt.Errorf("export %q: %w", name, errNoDevice)
	}
	e := &negotiated{name: name, Export: x, info: x.Device.Info()}
	size := x.Device.Size()
	if size < 0 {
		return nil, fmt.Errorf("export %q: negative size %d", name, size)
	}
	e.size = uint64(size)
	logical := max(e.info.LogicalBlockSize, 1)
	e.minBlock, e.prefBlock, e.maxBlock = x.MinBlock, x.PreferredBlock, x.MaxBlock
	if e.minBlock == 0 {
		e.minBlock = logical
	}
	if e.prefBlock == 0 {
		e.prefBlock = max(defaultPreferredBlock, e.info.PhysicalBlockSize, e.minBlock)
	}
	if e.maxBlock == 0 {
		e.maxBlock = maxPayload
		if m := e.info.MaxTransfer; m > 0 {
			e.maxBlock = min(e.maxBlock, m/e.minBlock*e.minBlock)
		}
	}
	e.maxBlock = min(e.maxBlock, maxPayload)
	switch {
	case bits.OnesCount32(e.minBlock) != 1 || e.minBlock > 64<<10:
		return nil, fmt.Errorf("export %q: minimum block size %d is not a power of two <= 64 KiB", name, e.minBlock)
	case e.minBlock%logical != 0:
		return nil, fmt.Errorf("export %q: minimum block size %d is not a multiple of the device's logical block size %d", name, e.minBlock, logical)
	case bits.OnesCount32(e.prefBlock) != 1 || e.prefBlock < e.minBlock || e.prefBlock < 512:
		return nil, fmt.Errorf("export %q: preferred block size %d is not a power of two >= max(512, minimum)", name, e.prefBlock)
	case e.maxBlock < e.prefBlock || e.maxBlock%e.minBlock != 0:
		return nil, fmt.Errorf("export %q: maximum payload %d is below the preferred block size or unaligned", name, e.maxBlock)
	}
	e.extenter, _ = x.Device.(blockdev.Extenter)
	if x.Cache {
		p, ok := x.Device.(blockdev.Prefetcher)
		if !ok {
			return nil, fmt.Errorf("export %q: Cache set but the device cannot prefetch (no blockdev.Prefetcher)", name)
		}
		e.prefetcher = p
	}
	return e, nil
}

var errNoDevice = errors.New("no device")

// flags are the transmission flags: what the client may send. Read-only
// exports advertise no writing features (as nbdkit); DF only makes sense
// with structured replies.
func (e *negotiated) flags(structured bool) uint16 {
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
	if e.MultiConn {
		f |= flagCanMultiConn
	}
	if e.Cache {
		f |= flagSendCache
	}
	return f
}
