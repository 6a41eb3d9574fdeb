package backing

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Allocation reports whether the byte at off lies in data (allocated) or
// in a hole, and where that run ends (at most the size). It uses
// SEEK_DATA/SEEK_HOLE on regular files; a block device, or a file system
// without hole reporting, is one run of data.
func (b *File) Allocation(off int64) (data bool, end int64, err error) {
	if off >= b.size {
		return true, b.size, nil
	}
	if b.device {
		return true, b.size, nil
	}
	fd := int(b.f.Fd())
	next, err := unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		// No data at or after off: a hole to the end.
		return false, b.size, nil
	case errors.Is(err, unix.EINVAL):
		return true, b.size, nil
	case err != nil:
		return false, 0, fmt.Errorf("seek data in backing at %d: %w", off, err)
	case next > off:
		return false, min(next, b.size), nil
	}
	hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, fmt.Errorf("seek hole in backing at %d: %w", off, err)
	}
	return true, min(hole, b.size), nil
}

// Prefetch starts reading [off, off+length) into the page cache
// (POSIX_FADV_WILLNEED) and returns without waiting for it.
func (b *File) Prefetch(off, length int64) error {
	if err := unix.Fadvise(int(b.f.Fd()), off, length, unix.FADV_WILLNEED); err != nil {
		return fmt.Errorf("prefetch backing at %d: %w", off, err)
	}
	return nil
}
