package backing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/encblk/encblk/pkg/blockdev"
)

// ErrLUKSHeader is returned by NewPlain for a backing that starts with a
// LUKS header: serving it unencrypted would expose the header to clients
// and let them overwrite it.
var ErrLUKSHeader = errors.New("backing carries a LUKS header; refusing to serve it unencrypted")

// luksMagic starts the primary LUKS1 and LUKS2 header.
var luksMagic = []byte("LUKS\xba\xbe")

// HasLUKSHeader reports whether the backing starts with the LUKS magic.
func (b *File) HasLUKSHeader() (bool, error) {
	if b.size < int64(len(luksMagic)) {
		return false, nil
	}
	var m [6]byte
	if _, err := b.ReadAt(m[:], 0); err != nil {
		return false, err
	}
	return bytes.Equal(m[:], luksMagic), nil
}

// Plain is an unencrypted blockdev.Device over a File: the backing's bytes
// are the device's bytes, at any byte offset and length. It exists to
// measure and test the frontends without encryption.
type Plain struct {
	f *File
}

var (
	_ blockdev.Device     = (*Plain)(nil)
	_ blockdev.Extenter   = (*Plain)(nil)
	_ blockdev.Prefetcher = (*Plain)(nil)
)

// NewPlain returns the plain device over f. It refuses a backing that
// carries a LUKS header (ErrLUKSHeader).
func NewPlain(f *File) (*Plain, error) {
	luks, err := f.HasLUKSHeader()
	if err != nil {
		return nil, err
	}
	if luks {
		return nil, fmt.Errorf("%s: %w", f.Path(), ErrLUKSHeader)
	}
	return &Plain{f: f}, nil
}

// Size is the backing's size.
func (p *Plain) Size() int64 { return p.f.Size() }

// Info: any byte range (a logical block of 1), pages as the physical
// block, trim, fast zeroing on files, FUA and flush.
func (p *Plain) Info() blockdev.Info {
	return blockdev.Info{
		LogicalBlockSize:  1,
		PhysicalBlockSize: uint32(max(4096, p.f.BlockSize())),
		ReadOnly:          p.f.ReadOnly(),
		CanTrim:           true,
		CanZero:           true,
		CanFastZero:       !p.f.IsDevice(),
		CanFUA:            true,
		CanFlush:          true,
		SerialWrites:      p.f.SerialWrites(),
	}
}

// ReadAt reads straight from the backing.
func (p *Plain) ReadAt(_ context.Context, b []byte, off int64) error {
	_, err := p.f.ReadAt(b, off)
	return err
}

// WriteAt writes straight to the backing; with fua it then fdatasyncs.
func (p *Plain) WriteAt(_ context.Context, b []byte, off int64, fua bool) error {
	if _, err := p.f.WriteAt(b, off); err != nil {
		return err
	}
	return p.fua(fua)
}

// Flush fdatasyncs the backing.
func (p *Plain) Flush(context.Context) error { return p.f.Sync() }

// Trim discards the range in the backing; a backing that cannot discard
// ignores it (trim is advisory).
func (p *Plain) Trim(_ context.Context, off, length int64, fua bool) error {
	if err := p.f.Discard(off, length); err != nil && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return p.fua(fua)
}

// Zero punches a hole (or, with ZeroNoHole, zeroes allocated blocks) and
// falls back to writing zeros unless ZeroFast asks to fail instead.
func (p *Plain) Zero(ctx context.Context, off, length int64, flags blockdev.ZeroFlags) error {
	if flags&blockdev.ZeroFast != 0 && p.f.IsDevice() {
		// BLKZEROOUT may write zeros itself: no faster than a write.
		return fmt.Errorf("fast zero on a block device: %w", syscall.ENOTSUP)
	}
	err := p.f.ZeroRange(off, length, flags&blockdev.ZeroNoHole == 0)
	if errors.Is(err, syscall.ENOTSUP) {
		if flags&blockdev.ZeroFast != 0 {
			return err
		}
		err = writeZeros(ctx, p.f, off, length)
	}
	if err != nil {
		return err
	}
	return p.fua(flags&blockdev.ZeroFUA != 0)
}

// Extents reports holes of a sparse file (SEEK_DATA/SEEK_HOLE); they read
// as zeros.
func (p *Plain) Extents(_ context.Context, dst []blockdev.Extent, off, length int64) ([]blockdev.Extent, error) {
	end := off + length
	for off < end {
		data, runEnd, err := p.f.Allocation(off)
		if err != nil {
			return dst, err
		}
		runEnd = min(max(runEnd, off+1), end)
		dst = append(dst, blockdev.Extent{Length: runEnd - off, Hole: !data, Zero: !data})
		off = runEnd
		if len(dst) >= maxExtents {
			break
		}
	}
	return dst, nil
}

// Prefetch asks the kernel to read the range into the page cache.
func (p *Plain) Prefetch(_ context.Context, off, length int64) error {
	return p.f.Prefetch(off, length)
}

// maxExtents bounds one Extents reply; the client asks again for the rest.
const maxExtents = 1024

func (p *Plain) fua(fua bool) error {
	if !fua {
		return nil
	}
	return p.f.Sync()
}

// zeroChunk is the largest run of zeros writeZeros writes at once.
const zeroChunk = 1 << 20

// zeros is what writeZeros writes; it is only ever read.
var zeros [zeroChunk]byte

// writeZeros writes zeros over [off, off+length) in chunks, for storage
// that cannot zero a range itself.
func writeZeros(ctx context.Context, f *File, off, length int64) error {
	for length > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(length, zeroChunk)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}
