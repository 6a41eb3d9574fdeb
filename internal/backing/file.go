package backing

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrBusy is returned by Open when another process holds the backing's
// lock: it is already served.
var ErrBusy = errors.New("backing is busy: another encblk process serves it")

// ErrInUse is returned by Open with Options.Exclusive when the block
// device is mounted, mapped or claimed by another program.
var ErrInUse = errors.New("block device is in use (mounted, mapped by device-mapper, or opened exclusively by another program)")

// Options say how Open opens a backing.
type Options struct {
	// ReadOnly opens the backing O_RDONLY; writes fail with EPERM.
	ReadOnly bool
	// Direct additionally opens the backing O_DIRECT and uses that
	// descriptor for requests whose buffer, offset and length meet the
	// direct-I/O alignment; other requests go through the page cache.
	Direct bool
	// NoLock skips the exclusive flock (for read-only inspection by tools
	// that do not serve the backing).
	NoLock bool
	// Exclusive also claims a block device (O_EXCL): the open fails with
	// ErrInUse while the kernel has it mounted, mapped by device-mapper,
	// or claimed by another program, as cryptsetup's offline operations
	// refuse it. Rewriting a device in place under a mounted filesystem
	// would corrupt both.
	Exclusive bool
}

// File is an open backing: a regular file or a block device. Its methods
// are safe for concurrent use.
type File struct {
	path      string
	f         *os.File
	direct    *os.File // nil unless Options.Direct
	dioAlign  int      // buffer, offset and length alignment for direct
	size      int64
	blockSize int
	device    bool
	readOnly  bool
}

// Open opens the regular file or block device at path and, unless
// opts.NoLock, takes an exclusive flock on it; if another process holds
// that lock for longer than lockPatience it fails with an error wrapping
// ErrBusy.
func Open(path string, opts Options) (*File, error) {
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	}
	if opts.Exclusive {
		flags |= claimFlag(path)
	}
	f, err := openFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	b := &File{path: path, f: f, readOnly: opts.ReadOnly, blockSize: 512}
	if err := b.init(opts); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Claim opens path as os.OpenFile does (flag, perm) for an offline change
// that no one may use meanwhile: a block device is claimed (O_EXCL:
// ErrInUse while it is mounted or mapped) and the file is flocked
// (ErrBusy while an encblk server holds it), as Open with Exclusive.
func Claim(path string, flag int, perm os.FileMode) (*os.File, error) {
	if c := claimFlag(path); c != 0 {
		flag = flag&^os.O_CREATE | c // the device exists: O_EXCL claims it
	}
	f, err := openFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	if err := lock(int(f.Fd())); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrBusy)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// claimFlag is O_EXCL for a block device (the kernel's exclusive claim),
// else 0 (O_EXCL without O_CREAT means nothing for other files).
func claimFlag(path string) int {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		return unix.O_EXCL
	}
	return 0
}

// openFile is os.OpenFile, close-on-exec, with a failed claim as ErrInUse.
func openFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.EBUSY) && flag&unix.O_EXCL != 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open backing: %w", err)
	}
	return f, nil
}

// lockPatience is how long Open waits for a backing's lock. A server holds
// it for its lifetime; anything else holds it for a moment only: `encblk
// status` of a backing that is not served takes it to learn whether a
// server without a control socket holds it. A server starting during that
// moment must not fail as busy.
const lockPatience = time.Second

// lock takes the exclusive flock on fd, retrying while another holder may
// only be probing, up to lockPatience.
func lock(fd int) error {
	const step = 10 * time.Millisecond
	for waited := time.Duration(0); ; waited += step {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || waited >= lockPatience {
			return err
		}
		time.Sleep(step)
	}
}

func (b *File) init(opts Options) error {
	fi, err := b.f.Stat()
	if err != nil {
		return fmt.Errorf("stat backing %s: %w", b.path, err)
	}
	fd := int(b.f.Fd())
	switch {
	case fi.Mode().IsRegular():
		b.size = fi.Size()
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		b.device = true
		var size uint64
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
			return fmt.Errorf("backing %s: BLKGETSIZE64: %w", b.path, e)
		}
		b.size = int64(size)
		bs, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
		if err != nil {
			return fmt.Errorf("backing %s: BLKSSZGET: %w", b.path, err)
		}
		b.blockSize = bs
	default:
		return fmt.Errorf("backing %s is neither a regular file nor a block device", b.path)
	}
	if !opts.NoLock {
		if err := lock(fd); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				return fmt.Errorf("%s: %w", b.path, ErrBusy)
			}
			return fmt.Errorf("lock backing %s: %w", b.path, err)
		}
	}
	if opts.Direct {
		flags := os.O_RDWR
		if opts.ReadOnly {
			flags = os.O_RDONLY
		}
		d, err := os.OpenFile(b.path, flags|unix.O_CLOEXEC|unix.O_DIRECT, 0)
		if err != nil {
			return fmt.Errorf("open backing %s with O_DIRECT: %w", b.path, err)
		}
		b.direct = d
		b.dioAlign = dioAlignment(int(d.Fd()), b.blockSize)
	}
	return nil
}

// dioAlignment is the alignment direct I/O needs on fd: STATX_DIOALIGN
// where the kernel reports it, else the larger of the logical block size
// and the page size.
func dioAlignment(fd, blockSize int) int {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil &&
		st.Mask&unix.STATX_DIOALIGN != 0 && st.Dio_offset_align != 0 {
		return int(max(st.Dio_offset_align, st.Dio_mem_align))
	}
	return max(blockSize, os.Getpagesize())
}

// Path is the path the backing was opened by.
func (b *File) Path() string { return b.path }

// Size is the backing's size in bytes, as of Open.
func (b *File) Size() int64 { return b.size }

// BlockSize is the logical block size: BLKSSZGET for a block device, 512
// for a regular file.
func (b *File) BlockSize() int { return b.blockSize }

// IsDevice reports whether the backing is a block device.
func (b *File) IsDevice() bool { return b.device }

// SerialWrites reports whether writes to the backing run one at a time in
// the kernel: buffered writes to a regular file do (the filesystem holds
// the inode lock across each), O_DIRECT writes and block devices do not.
func (b *File) SerialWrites() bool { return !b.device && b.direct == nil }

// ReadOnly reports whether the backing was opened read-only.
func (b *File) ReadOnly() bool { return b.readOnly }

// pick returns the descriptor for a request: the O_DIRECT one when the
// request meets its alignment.
func (b *File) pick(p []byte, off int64) *os.File {
	if b.direct == nil || len(p) == 0 {
		return b.f
	}
	a := b.dioAlign
	if off%int64(a) != 0 || len(p)%a != 0 || uintptr(unsafe.Pointer(&p[0]))%uintptr(a) != 0 {
		return b.f
	}
	return b.direct
}

// ReadAt fills all of p from offset off. Reading past the end fails with an
// error wrapping EIO.
func (b *File) ReadAt(p []byte, off int64) (int, error) {
	n, err := b.pick(p, off).ReadAt(p, off)
	if err == io.EOF {
		return n, fmt.Errorf("read backing at %d+%d: short read (%d bytes): %w", off, len(p), n, syscall.EIO)
	}
	if err != nil {
		return n, fmt.Errorf("read backing: %w", err)
	}
	return n, nil
}

// WriteAt writes all of p at offset off.
func (b *File) WriteAt(p []byte, off int64) (int, error) {
	if b.readOnly {
		return 0, fmt.Errorf("write backing: read-only: %w", syscall.EPERM)
	}
	n, err := b.pick(p, off).WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write backing: %w", err)
	}
	return n, nil
}

// Sync makes every completed write durable (fdatasync: data and the
// metadata needed to read it back, such as a grown file size).
func (b *File) Sync() error {
	if b.readOnly {
		return nil
	}
	for {
		err := unix.Fdatasync(int(b.f.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("fdatasync backing: %w", err)
		}
		return nil
	}
}

// Close releases the lock and closes the backing.
func (b *File) Close() error {
	var err error
	if b.direct != nil {
		err = b.direct.Close()
	}
	if e := b.f.Close(); e != nil && err == nil {
		err = e
	}
	return err
}
