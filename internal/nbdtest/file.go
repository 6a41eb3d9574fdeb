// Package nbdtest holds fixtures for testing and benchmarking pkg/nbd: a
// plain-file nbd.Backend. It is not the production backing layer (that is
// internal/backing); it exists so the NBD server can be exercised without
// encryption.
package nbdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/nbd"
)

// File is an nbd.Backend over a regular file: pread/pwrite, fdatasync,
// fallocate for trim and zeroing, SEEK_DATA/SEEK_HOLE for block status.
type File struct {
	f    *os.File
	fd   int
	size int64
	info nbd.Info
}

var (
	_ nbd.Backend       = (*File)(nil)
	_ nbd.BlockStatuser = (*File)(nil)
	_ nbd.Cacher        = (*File)(nil)
)

// OpenFile opens path as a Backend. info's capability flags are used as
// given; CanFlush, CanFUA, CanTrim, CanZero, CanFastZero, CanMultiConn
// and CanCache all work with a regular file.
func OpenFile(path string, info nbd.Info) (*File, error) {
	flag := os.O_RDWR
	if info.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &File{f: f, fd: int(f.Fd()), size: st.Size(), info: info}, nil
}

// AllCaps is an Info with every capability a regular file has.
func AllCaps() nbd.Info {
	return nbd.Info{
		CanTrim: true, CanZero: true, CanFastZero: true, CanFUA: true,
		CanFlush: true, CanMultiConn: true, CanCache: true,
	}
}

// Close closes the file.
func (b *File) Close() error { return b.f.Close() }

// Size is the file's size when opened.
func (b *File) Size() int64 { return b.size }

// Info is the Info given to OpenFile.
func (b *File) Info() nbd.Info { return b.info }

// ReadAt reads with pread.
func (b *File) ReadAt(_ context.Context, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pread(b.fd, p, off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("pread at %d: %w", off, err)
		}
		if n == 0 {
			return fmt.Errorf("pread at %d: unexpected end of file: %w", off, syscall.EIO)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// WriteAt writes with pwrite, then fdatasync when fua.
func (b *File) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(b.fd, p, off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("pwrite at %d: %w", off, err)
		}
		p, off = p[n:], off+int64(n)
	}
	if fua {
		return b.sync()
	}
	return nil
}

func (b *File) sync() error {
	if err := unix.Fdatasync(b.fd); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// Flush is fdatasync: it covers writes completed through any connection,
// which is what makes CanMultiConn safe.
func (b *File) Flush(context.Context) error { return b.sync() }

// Trim punches a hole.
func (b *File) Trim(_ context.Context, off, length int64, fua bool) error {
	if err := unix.Fallocate(b.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length); err != nil {
		return fmt.Errorf("punch hole: %w", err)
	}
	if fua {
		return b.sync()
	}
	return nil
}

// Zero punches a hole, or with ZeroNoHole zeroes the range in place
// (FALLOC_FL_ZERO_RANGE, else by writing zeros unless ZeroFast).
func (b *File) Zero(ctx context.Context, off, length int64, flags nbd.ZeroFlags) error {
	mode := uint32(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
	if flags&nbd.ZeroNoHole != 0 {
		mode = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
	}
	err := unix.Fallocate(b.fd, mode, off, length)
	if errors.Is(err, unix.EOPNOTSUPP) {
		if flags&nbd.ZeroFast != 0 {
			return fmt.Errorf("fallocate: %w", syscall.ENOTSUP)
		}
		err = b.writeZeros(ctx, off, length)
	}
	if err != nil {
		return fmt.Errorf("zero range: %w", err)
	}
	if flags&nbd.ZeroFUA != 0 {
		return b.sync()
	}
	return nil
}

func (b *File) writeZeros(ctx context.Context, off, length int64) error {
	z := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(z)))
		if err := b.WriteAt(ctx, z[:n], off, false); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// Cache asks the kernel to read the range ahead.
func (b *File) Cache(_ context.Context, off, length int64) error {
	return unix.Fadvise(b.fd, off, length, unix.FADV_WILLNEED)
}

// maxExtents bounds the extents one BlockStatus call reports.
const maxExtents = 1024

// BlockStatus reports data and holes with SEEK_DATA and SEEK_HOLE.
func (b *File) BlockStatus(_ context.Context, dst []nbd.Extent, off, length int64) ([]nbd.Extent, error) {
	end := off + length
	for off < end && len(dst) < maxExtents {
		data, err := unix.Seek(b.fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = end // only a hole up to the end of file
		} else if err != nil {
			return dst, fmt.Errorf("SEEK_DATA at %d: %w", off, err)
		}
		if data > off {
			n := min(data, end) - off
			dst = append(dst, nbd.Extent{Length: n, Hole: true, Zero: true})
			off += n
			continue
		}
		hole, err := unix.Seek(b.fd, off, unix.SEEK_HOLE)
		if err != nil {
			return dst, fmt.Errorf("SEEK_HOLE at %d: %w", off, err)
		}
		n := min(hole, end) - off
		if n <= 0 {
			n = end - off
		}
		dst = append(dst, nbd.Extent{Length: n})
		off += n
	}
	return dst, nil
}
