package blockdevtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/encblk/encblk/pkg/blockdev"
)

// Mem is an in-memory blockdev.Device that, like an encrypted volume,
// takes only whole logical blocks: an unaligned request fails with EINVAL
// and is counted, so a test can check that an adapter never sent one.
type Mem struct {
	mu   sync.Mutex
	data []byte
	info blockdev.Info
	// SlowReads sleeps after each read, like slow storage: it widens the
	// window between a read-modify-write's read and its write.
	SlowReads  bool
	Misaligned atomic.Int64 // unaligned requests received
	Calls      atomic.Int64 // requests received
}

// NewMem returns a zeroed Mem of size bytes with logical blocks of bs
// bytes that can trim, zero (not fast), FUA and flush.
func NewMem(bs uint32, size int64) *Mem {
	return &Mem{
		data: make([]byte, size),
		info: blockdev.Info{LogicalBlockSize: bs, CanTrim: true, CanZero: true, CanFUA: true, CanFlush: true},
	}
}

// Size is the size given to NewMem.
func (m *Mem) Size() int64 { return int64(len(m.data)) }

// Info is the Info of NewMem.
func (m *Mem) Info() blockdev.Info { return m.info }

// Check counts a request and fails it with EINVAL unless it is whole
// blocks inside the device.
func (m *Mem) Check(off, n int64) error {
	m.Calls.Add(1)
	bs := int64(m.info.LogicalBlockSize)
	if off%bs != 0 || n%bs != 0 {
		m.Misaligned.Add(1)
		return fmt.Errorf("mem: %d+%d not aligned to %d: %w", off, n, bs, syscall.EINVAL)
	}
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return fmt.Errorf("mem: %d+%d outside: %w", off, n, syscall.EINVAL)
	}
	return nil
}

// ReadAt copies out of memory.
func (m *Mem) ReadAt(_ context.Context, p []byte, off int64) error {
	if err := m.Check(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	copy(p, m.data[off:])
	m.mu.Unlock()
	if m.SlowReads {
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

// WriteAt copies into memory.
func (m *Mem) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	if err := m.Check(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	copy(m.data[off:], p)
	m.mu.Unlock()
	// The contract lets a device overwrite the request buffer (an
	// encrypting one does); scribble on it to catch callers that reuse it.
	for i := range p {
		p[i] ^= 0x5a
	}
	return nil
}

// Flush does nothing: memory is as durable as it gets here.
func (m *Mem) Flush(context.Context) error { return nil }

// Trim fills the range with 0xdd: its contents are unspecified.
func (m *Mem) Trim(_ context.Context, off, n int64, _ bool) error {
	if err := m.Check(off, n); err != nil {
		return err
	}
	m.mu.Lock()
	for i := off; i < off+n; i++ {
		m.data[i] = 0xdd
	}
	m.mu.Unlock()
	return nil
}

// Zero clears the range; with ZeroFast it fails with ENOTSUP.
func (m *Mem) Zero(_ context.Context, off, n int64, flags blockdev.ZeroFlags) error {
	if err := m.Check(off, n); err != nil {
		return err
	}
	if flags&blockdev.ZeroFast != 0 {
		return syscall.ENOTSUP
	}
	m.mu.Lock()
	clear(m.data[off : off+n])
	m.mu.Unlock()
	return nil
}
