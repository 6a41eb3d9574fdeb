package volume

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/xts"
)

// Errors a caller acts on. Request errors also wrap a syscall.Errno that
// chooses the error a frontend reports (NBD error, ublk's -errno).
var (
	// ErrLocked: the volume is locked and the request was not let through
	// (LockFail, or the LockTimeout expired). Wraps EIO in request errors.
	ErrLocked = errors.New("volume is locked")
	// ErrClosed: the volume has been closed. Wraps ESHUTDOWN in request errors.
	ErrClosed = errors.New("volume is closed")
	// ErrConfig: the Config does not describe a usable data segment.
	ErrConfig = errors.New("invalid volume configuration")
)

// LockMode says what a request does while the volume is locked.
type LockMode int

const (
	// LockWait: wait for Unlock, up to Config.LockTimeout (like luksSuspend).
	LockWait LockMode = iota
	// LockFail: fail at once with ErrLocked (EIO).
	LockFail
)

// String is the mode's name as the CLI spells it.
func (m LockMode) String() string {
	if m == LockFail {
		return "fail"
	}
	return "wait"
}

// ParseLockMode parses "wait" or "fail".
func ParseLockMode(s string) (LockMode, error) {
	switch s {
	case "wait":
		return LockWait, nil
	case "fail":
		return LockFail, nil
	}
	return 0, fmt.Errorf("lock mode %q: want wait or fail", s)
}

// Config is the geometry of a LUKS2 data segment and the serving policy.
type Config struct {
	// DataOffset is the byte offset of the data segment in the backing.
	DataOffset int64
	// Size is the plaintext size in bytes, a multiple of SectorSize.
	Size int64
	// SectorSize is the encryption sector size: 512, 1024, 2048 or 4096.
	SectorSize int
	// IVTweak is LUKS2's iv_tweak, added to every sector's tweak (512-byte units).
	IVTweak uint64
	// AllowDiscards passes TRIM to the backing (LUKS2 allow-discards).
	AllowDiscards bool
	// ReadOnly refuses writes, trims and zeroing with EPERM.
	ReadOnly bool
	// LockMode and LockTimeout say what requests do while locked. A zero
	// LockTimeout waits until Unlock or until the request's context ends.
	LockMode    LockMode
	LockTimeout time.Duration
}

func (c *Config) validate() error {
	switch c.SectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return fmt.Errorf("%w: sector size %d", ErrConfig, c.SectorSize)
	}
	if c.DataOffset < 0 || c.DataOffset%512 != 0 {
		return fmt.Errorf("%w: data offset %d is not a multiple of 512", ErrConfig, c.DataOffset)
	}
	if c.Size <= 0 || c.Size%int64(c.SectorSize) != 0 {
		return fmt.Errorf("%w: size %d is not a positive multiple of the sector size %d", ErrConfig, c.Size, c.SectorSize)
	}
	if c.LockTimeout < 0 {
		return fmt.Errorf("%w: negative lock timeout", ErrConfig)
	}
	return nil
}

// Backing is the storage under a volume. *os.File satisfies it; the
// daemon uses internal/backing.File, which adds discard and fdatasync.
type Backing interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes completed writes durable.
	Sync() error
}

// Discarder is implemented by backings that can discard a range.
type Discarder interface {
	Discard(off, length int64) error
}

// SerialWriter is implemented by backings that know whether their writes
// run one at a time (see blockdev.Info.SerialWrites).
type SerialWriter interface {
	SerialWrites() bool
}

// Sizer is implemented by backings that know their size; New then checks
// the data segment fits.
type Sizer interface {
	Size() int64
}

// Volume is an encrypted block device over a Backing. It implements
// blockdev.Device (requests of whole sectors) and is safe for concurrent
// use.
type Volume struct {
	b     Backing
	cfg   Config
	ss    int64  // sector size
	step  uint64 // tweak step per sector, in 512-byte units
	stats counters

	admin sync.Mutex // serialises Lock, Unlock and Close
	mu    sync.Mutex // guards the fields below
	c     *xts.Cipher
	rt    *router // online reencryption routing; nil when none
	// wake is non-nil while requests must wait (locked or locking); it is
	// closed when they may try again (unlocked, lock aborted, closed).
	wake     chan struct{}
	idle     chan struct{} // closed when inflight reaches 0, if non-nil
	inflight int
	closed   bool
}

var _ blockdev.Device = (*Volume)(nil)

// New returns a Volume over b. With a nil dek it starts locked; otherwise
// it takes ownership of dek (see Unlock).
func New(b Backing, cfg Config, dek *secmem.Buffer) (*Volume, error) {
	if err := cfg.validate(); err != nil {
		dek.Destroy()
		return nil, err
	}
	if s, ok := b.(Sizer); ok && cfg.DataOffset+cfg.Size > s.Size() {
		dek.Destroy()
		return nil, fmt.Errorf("%w: data segment %d+%d extends beyond the backing (%d bytes)",
			ErrConfig, cfg.DataOffset, cfg.Size, s.Size())
	}
	v := &Volume{
		b:    b,
		cfg:  cfg,
		ss:   int64(cfg.SectorSize),
		step: uint64(cfg.SectorSize / 512),
		wake: make(chan struct{}),
	}
	if dek != nil {
		if err := v.Unlock(dek); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Config returns the volume's configuration.
func (v *Volume) Config() Config { return v.cfg }

// Size is the plaintext size.
func (v *Volume) Size() int64 { return v.cfg.Size }

// Info describes the volume: its logical block is its encryption sector
// (requests are whole sectors), its physical block at least a page, as the
// backing is written through the page cache or with O_DIRECT in pages.
// It can trim (passed down when discards are allowed, else ignored), zero
// (never fast: zeros are encrypted and written), FUA and flush (fdatasync
// of the backing, which covers every frontend's writes).
func (v *Volume) Info() blockdev.Info {
	return blockdev.Info{
		LogicalBlockSize:  uint32(v.ss),
		PhysicalBlockSize: uint32(max(v.ss, 4096)),
		ReadOnly:          v.cfg.ReadOnly,
		CanTrim:           true,
		CanZero:           true,
		CanFUA:            true,
		CanFlush:          true,
		SerialWrites:      serialWrites(v.b),
	}
}

// Close fails waiting and later requests with ErrClosed, waits for
// in-flight ones, flushes the backing and wipes the key. It does not close
// the backing.
func (v *Volume) Close() error {
	v.admin.Lock()
	defer v.admin.Unlock()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	if v.wake != nil {
		close(v.wake)
		v.wake = nil
	}
	idle := v.waitIdleLocked()
	v.mu.Unlock()
	<-idle
	err := v.flushBacking()
	v.mu.Lock()
	v.wipeLocked()
	v.mu.Unlock()
	return err
}

// waitIdleLocked returns a channel closed once no request is in flight.
func (v *Volume) waitIdleLocked() <-chan struct{} {
	if v.inflight == 0 {
		return closedChan
	}
	if v.idle == nil {
		v.idle = make(chan struct{})
	}
	return v.idle
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// errClosed is the request error after Close.
func errClosed() error { return fmt.Errorf("%w: %w", ErrClosed, syscall.ESHUTDOWN) }

// serialWrites reports whether b says its writes run one at a time.
func serialWrites(b Backing) bool {
	sw, ok := b.(SerialWriter)
	return ok && sw.SerialWrites()
}
