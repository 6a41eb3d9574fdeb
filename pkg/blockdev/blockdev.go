// Package blockdev is the contract between a block device and the
// frontends that present it to the kernel or to the network: pkg/nbd
// (NBD over sockets) and pkg/ublk (the kernel's ublk driver). A Device
// knows nothing of either; each frontend maps the contract to its
// protocol. This is nbdkit's shape: a narrow table of operations between
// the protocol server and what it serves.
//
// A Device is addressed in bytes but may require requests aligned to its
// logical block size (Info.LogicalBlockSize): offsets and lengths of every
// ReadAt, WriteAt, Trim and Zero are then multiples of it. ublk always
// sends whole logical blocks; NBD clients may send any byte range, so the
// NBD side wraps such a Device in a read-modify-write adapter (see
// ByteGranular) as nbdkit's blocksize filter does.
package blockdev

import "context"

// Device is a block device. Its methods are safe for concurrent use; a
// frontend may issue any number of requests at once.
type Device interface {
	// Size is the device size in bytes, a multiple of the logical block
	// size. It does not change while the device is served.
	Size() int64

	// Info describes the device's geometry and capabilities. Frontends
	// read it when they start (NBD: at each option naming the export;
	// ublk: at ADD_DEV/SET_PARAMS).
	Info() Info

	// ReadAt fills all of p from offset off.
	ReadAt(ctx context.Context, p []byte, off int64) error

	// WriteAt writes all of p at offset off. With fua the data is durable
	// (on stable storage) before WriteAt returns. p is the frontend's
	// request buffer, discarded afterwards: the device may overwrite it
	// (an encrypting device encrypts in place).
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error

	// Flush makes every completed write durable.
	Flush(ctx context.Context) error

	// Trim tells the device that the range is no longer needed. Its
	// contents afterwards are unspecified. With fua the effect is durable
	// on return.
	Trim(ctx context.Context, off, length int64, fua bool) error

	// Zero makes the range read back as zeros. With ZeroFast the device
	// returns an error wrapping syscall.ENOTSUP at once if zeroing would be
	// no faster than writing zeros; with ZeroNoHole it must not deallocate.
	Zero(ctx context.Context, off, length int64, flags ZeroFlags) error
}

// ZeroFlags modify Device.Zero.
type ZeroFlags uint8

const (
	// ZeroFUA: the zeroed range is durable on return.
	ZeroFUA ZeroFlags = 1 << iota
	// ZeroNoHole: the device must not deallocate the range.
	ZeroNoHole
	// ZeroFast: fail with ENOTSUP rather than zero slowly.
	ZeroFast
)

// Info is a device's geometry and capabilities, as both frontends need
// them. Facts of one protocol (NBD's description, multi-conn, minimum
// block of 1 byte) belong to that frontend's export, not here.
type Info struct {
	// LogicalBlockSize is the unit of addressing: every request's offset
	// and length are multiples of it (512 or 4096 for an encrypted volume:
	// its sector size; 1 for a device that takes any byte range).
	LogicalBlockSize uint32
	// PhysicalBlockSize is the unit the device writes most efficiently
	// (>= LogicalBlockSize; 0 means LogicalBlockSize).
	PhysicalBlockSize uint32
	// MaxTransfer is the largest ReadAt/WriteAt the device takes in one
	// call; 0 means no limit of its own.
	MaxTransfer uint32

	ReadOnly    bool // refuse writes, trims and zeroing with EPERM
	CanTrim     bool // Trim does something (or is safely ignored)
	CanZero     bool // Zero is implemented
	CanFastZero bool // Zero without ZeroNoHole is cheaper than writing zeros
	CanFUA      bool // WriteAt/Trim/Zero honour fua
	CanFlush    bool // Flush makes writes durable (a volatile write cache)

	// SerialWrites says the device's writes run one at a time whatever
	// the frontend does (buffered writes to one regular file, which Linux
	// filesystems serialize on the inode lock). A frontend may then run
	// writes on fewer goroutines instead of spreading them over workers
	// that would only wait for one another.
	SerialWrites bool
}

// Extent is one run of bytes with the same allocation status.
type Extent struct {
	Length int64
	Hole   bool // not allocated
	Zero   bool // reads as zeros
}

// Extenter is implemented by devices that know which ranges are holes or
// read as zeros (NBD's base:allocation context).
type Extenter interface {
	// Extents appends to dst the extents covering at least the first byte
	// of [off, off+length) and returns the extended slice. Extents are
	// contiguous, start at off and do not extend beyond off+length.
	Extents(ctx context.Context, dst []Extent, off, length int64) ([]Extent, error)
}

// Prefetcher is implemented by devices that can read a range ahead into a
// cache (NBD_CMD_CACHE).
type Prefetcher interface {
	Prefetch(ctx context.Context, off, length int64) error
}
