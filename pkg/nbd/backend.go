package nbd

import (
	"context"
)

// Backend is what the server exports: a fixed-size array of bytes. pkg/nbd
// calls it and nothing else; it knows nothing of what lies behind (a plain
// file, an encrypted volume).
//
// Methods may be called concurrently from many goroutines, for overlapping
// ranges too; a Backend that needs ordering for overlapping writes provides
// it itself. Offsets and lengths have been checked against Size and the
// block-size limits before a method is called.
//
// Errors: a method returns an error that wraps a syscall.Errno (EIO, ENOSPC,
// EPERM, EINVAL, ESHUTDOWN, ENOTSUP, EOVERFLOW) to choose the NBD error the
// client sees; any other error is reported as EIO. The ctx is cancelled when
// the client disconnects or the server shuts down; a Backend that may wait
// (for example a locked volume) must honour it.
type Backend interface {
	// Size is the export size in bytes. It does not change while served.
	Size() int64

	// Info describes the export's limits and capabilities. It is read at
	// negotiation, for each option that names the export (INFO, then GO);
	// the transmission phase uses what GO read.
	Info() Info

	// ReadAt fills all of p from offset off.
	ReadAt(ctx context.Context, p []byte, off int64) error

	// WriteAt writes all of p at offset off. With fua the data is durable
	// (on stable storage) before WriteAt returns. p is the server's request
	// buffer, discarded afterwards: the backend may overwrite it (an
	// encrypting backend encrypts in place).
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error

	// Flush makes every completed write durable.
	Flush(ctx context.Context) error

	// Trim tells the backend that the range is no longer needed. Its contents
	// afterwards are unspecified. With fua the effect is durable on return.
	Trim(ctx context.Context, off, length int64, fua bool) error

	// Zero makes the range read back as zeros. With ZeroFast the backend
	// returns an error wrapping syscall.ENOTSUP at once if zeroing would be
	// no faster than writing zeros; with ZeroNoHole it must not deallocate.
	Zero(ctx context.Context, off, length int64, flags ZeroFlags) error
}

// ZeroFlags modify Backend.Zero.
type ZeroFlags uint8

const (
	// ZeroFUA: the zeroed range is durable on return.
	ZeroFUA ZeroFlags = 1 << iota
	// ZeroNoHole: the backend must not punch a hole (NBD_CMD_FLAG_NO_HOLE).
	ZeroNoHole
	// ZeroFast: fail with ENOTSUP rather than zero slowly (NBD_CMD_FLAG_FAST_ZERO).
	ZeroFast
)

// Info is an export's limits and capabilities, advertised to clients in
// NBD_INFO_BLOCK_SIZE and the transmission flags.
type Info struct {
	// MinBlock, PreferredBlock and MaxBlock are the block-size constraints
	// (powers of two; MaxBlock is the largest request payload). Zero means
	// the server default (1, 4096, 32 MiB).
	MinBlock, PreferredBlock, MaxBlock uint32

	ReadOnly     bool // refuse writes, trims and zeroing with EPERM
	CanTrim      bool // advertise NBD_FLAG_SEND_TRIM
	CanZero      bool // advertise NBD_FLAG_SEND_WRITE_ZEROES
	CanFastZero  bool // advertise NBD_FLAG_SEND_FAST_ZERO
	CanFUA       bool // advertise NBD_FLAG_SEND_FUA
	CanFlush     bool // advertise NBD_FLAG_SEND_FLUSH
	CanMultiConn bool // advertise NBD_FLAG_CAN_MULTI_CONN: a flush on one connection covers writes completed on all
	CanCache     bool // advertise NBD_FLAG_SEND_CACHE

	// SerialWrites says the backend's writes run one at a time whatever
	// the server does: buffered writes to one regular file, which Linux
	// filesystems serialize on the inode lock. The server then runs
	// writes of any size (not only small ones) on the connection's reader,
	// and keeps doing so while they average up to 1 ms beyond their copy
	// time (100 microseconds otherwise), instead of spreading them over
	// worker goroutines that would only wait for one another.
	SerialWrites bool

	// Description is sent as NBD_INFO_DESCRIPTION when not empty.
	Description string
}

// BlockStatuser is implemented by backends that know which ranges are holes
// or read as zeros, for the base:allocation metadata context. Backends
// without it are reported as one allocated, non-zero extent.
type BlockStatuser interface {
	// BlockStatus appends to dst the extents covering at least the first
	// byte of [off, off+length) and returns the extended slice. Extents are
	// contiguous, start at off and do not extend beyond off+length.
	BlockStatus(ctx context.Context, dst []Extent, off, length int64) ([]Extent, error)
}

// Extent is one run of bytes with the same allocation status.
type Extent struct {
	Length int64
	Hole   bool // NBD_STATE_HOLE: not allocated
	Zero   bool // NBD_STATE_ZERO: reads as zeros
}

// Cacher is implemented by backends that can prefetch (NBD_CMD_CACHE).
type Cacher interface {
	Cache(ctx context.Context, off, length int64) error
}
