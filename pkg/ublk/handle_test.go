package ublk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/blockdev"
)

// memDevice is an in-memory blockdev.Device that records the calls it
// gets and fails them with err when set.
type memDevice struct {
	mu    sync.Mutex
	data  []byte
	info  blockdev.Info
	calls []string
	err   error
}

func newMem(size int, lbs uint32) *memDevice {
	return &memDevice{data: make([]byte, size), info: blockdev.Info{LogicalBlockSize: lbs,
		CanTrim: true, CanZero: true, CanFUA: true, CanFlush: true}}
}

func (m *memDevice) Size() int64         { return int64(len(m.data)) }
func (m *memDevice) Info() blockdev.Info { return m.info }
func (m *memDevice) record(f string, a ...any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf(f, a...))
	return m.err
}
func (m *memDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	if err := m.record("read %d+%d", off, len(p)); err != nil {
		return err
	}
	copy(p, m.data[off:])
	return nil
}
func (m *memDevice) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if err := m.record("write %d+%d fua=%v", off, len(p), fua); err != nil {
		return err
	}
	copy(m.data[off:], p)
	return nil
}
func (m *memDevice) Flush(context.Context) error { return m.record("flush") }
func (m *memDevice) Trim(_ context.Context, off, n int64, fua bool) error {
	return m.record("trim %d+%d fua=%v", off, n, fua)
}
func (m *memDevice) Zero(_ context.Context, off, n int64, f blockdev.ZeroFlags) error {
	if err := m.record("zero %d+%d flags=%d", off, n, f); err != nil {
		return err
	}
	clear(m.data[off : off+n])
	return nil
}

// TestHandle maps each ublk request to its device call: sectors are 512
// bytes whatever the block size, reads and writes report bytes done, FUA
// and NOUNMAP become the device's flags, and errors become negated errnos.
func TestHandle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMem(1<<20, 4096)
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	cases := []struct {
		d    ioDesc
		call string
		res  int32
	}{
		{ioDesc{OpFlags: opWrite | ioFlagFUA, NrSectors: 16, StartSector: 8}, "write 4096+8192 fua=true", 8192},
		{ioDesc{OpFlags: opRead, NrSectors: 16, StartSector: 8}, "read 4096+8192", 8192},
		{ioDesc{OpFlags: opFlush}, "flush", 0},
		{ioDesc{OpFlags: opDiscard, NrSectors: 8, StartSector: 64}, "trim 32768+4096 fua=false", 0},
		{ioDesc{OpFlags: opWriteZeroes | ioFlagNoUnmap | ioFlagFUA, NrSectors: 8, StartSector: 0},
			fmt.Sprintf("zero 0+4096 flags=%d", blockdev.ZeroFUA|blockdev.ZeroNoHole), 0},
	}
	for _, c := range cases {
		m.calls = nil
		if got := handle(ctx, m, c.d, buf); got != c.res {
			t.Errorf("%+v: result %d, want %d", c.d, got, c.res)
		}
		if len(m.calls) != 1 || m.calls[0] != c.call {
			t.Errorf("%+v: calls %q, want %q", c.d, m.calls, c.call)
		}
	}
	if !bytes.Equal(m.data[4096:4096+8192], buf[:8192]) {
		t.Error("write did not land at sector 8")
	}
	if got := handle(ctx, m, ioDesc{OpFlags: opRead, NrSectors: 256}, buf[:4096]); got != -int32(unix.EINVAL) {
		t.Errorf("read beyond the tag's buffer: %d, want -EINVAL", got)
	}
	if got := handle(ctx, m, ioDesc{OpFlags: 4 /* WRITE_SAME */}, buf); got != -int32(unix.EOPNOTSUPP) {
		t.Errorf("unknown op: %d, want -EOPNOTSUPP", got)
	}
	m.err = fmt.Errorf("volume is locked: %w", syscall.ENOSPC)
	if got := handle(ctx, m, ioDesc{OpFlags: opWrite, NrSectors: 8}, buf); got != -int32(unix.ENOSPC) {
		t.Errorf("wrapped errno: %d, want -ENOSPC", got)
	}
	m.err = errors.New("no errno")
	if got := handle(ctx, m, ioDesc{OpFlags: opFlush}, buf); got != -int32(unix.EIO) {
		t.Errorf("plain error: %d, want -EIO", got)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Depth: 4097}, {Depth: -1}, {Queues: 5000}, {MaxIO: 1000}, {MaxIO: 2 << 20},
		{ID: -2}, {ID: 1 << 20}, {Recover: true, ID: AutoID},
	} {
		if err := o.fill(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	o := Options{ID: AutoID}
	if err := o.fill(); err != nil || o.Depth != DefaultDepth || o.Queues < 1 || o.MaxIO != DefaultMaxIO {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

func TestDeviceParams(t *testing.T) {
	t.Parallel()
	m := newMem(1<<20, 4096)
	m.info.MaxTransfer = 128 << 10
	p, err := deviceParams(m, DefaultMaxIO)
	if err != nil {
		t.Fatal(err)
	}
	b := p.Basic
	if b.LogicalBSShift != 12 || b.PhysicalBSShift != 12 || b.DevSectors != 2048 || b.MaxSectors != 256 ||
		b.Attrs != attrVolatileCache|attrFUA || p.Types != paramTypeBasic|paramTypeDiscard ||
		p.Discard.DiscardGranularity != 4096 || p.Discard.MaxDiscardSegments != 1 {
		t.Errorf("params %+v", p)
	}
	m = newMem(1<<20, 1) // byte-granular: served in 512-byte sectors
	m.info = blockdev.Info{LogicalBlockSize: 1, ReadOnly: true}
	if p, err = deviceParams(m, DefaultMaxIO); err != nil || p.Basic.LogicalBSShift != 9 || p.Basic.Attrs != attrReadOnly || p.Types != paramTypeBasic {
		t.Errorf("byte-granular read-only: %+v, %v", p, err)
	}
	m = newMem(1000, 512)
	if _, err := deviceParams(m, DefaultMaxIO); err == nil {
		t.Error("size not a multiple of the block size: no error")
	}
	m = newMem(1<<20, 8192)
	if _, err := deviceParams(m, DefaultMaxIO); err == nil {
		t.Error("block size above the page size: no error")
	}
}
