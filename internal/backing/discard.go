package backing

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Discard tells the storage that [off, off+length) is no longer needed: a
// punched hole (FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE) in a regular
// file, BLKDISCARD on a block device. The range reads back as zeros on a
// file and as unspecified data on a device. A storage that cannot discard
// fails with an error wrapping ENOTSUP (which is EOPNOTSUPP on Linux).
func (b *File) Discard(off, length int64) error {
	if b.readOnly {
		return fmt.Errorf("discard backing: read-only: %w", syscall.EPERM)
	}
	if length == 0 {
		return nil
	}
	if b.device {
		return b.blkRange(unix.BLKDISCARD, "BLKDISCARD", off, length)
	}
	return b.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}

// ZeroRange makes [off, off+length) read back as zeros without writing
// them: FALLOC_FL_ZERO_RANGE (allocated) or a punched hole on a file,
// BLKZEROOUT on a device. It fails with an error wrapping ENOTSUP when the
// storage cannot do it.
func (b *File) ZeroRange(off, length int64, punch bool) error {
	if b.readOnly {
		return fmt.Errorf("zero backing: read-only: %w", syscall.EPERM)
	}
	if length == 0 {
		return nil
	}
	if b.device {
		return b.blkRange(unix.BLKZEROOUT, "BLKZEROOUT", off, length)
	}
	mode := uint32(unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE)
	if punch {
		mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	}
	return b.fallocate(mode, off, length)
}

func (b *File) fallocate(mode uint32, off, length int64) error {
	for {
		err := unix.Fallocate(int(b.f.Fd()), mode, off, length)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("fallocate backing %d+%d: %w", off, length, err)
		}
		return nil
	}
}

func (b *File) blkRange(req uint, name string, off, length int64) error {
	r := [2]uint64{uint64(off), uint64(length)}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, b.f.Fd(), uintptr(req), uintptr(unsafe.Pointer(&r)))
	if e != 0 {
		// EOPNOTSUPP is ENOTSUP on Linux: the caller's "cannot" signal.
		return fmt.Errorf("%s backing %d+%d: %w", name, off, length, e)
	}
	return nil
}
