package blockdevtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

// Model is what a byte-granular device must read back: the bytes last
// written, and which bytes a trim made unspecified.
type Model struct {
	data    []byte
	trimmed []bool
}

// NewModel is the model of a device of size bytes.
func NewModel(size int64) *Model {
	return &Model{data: make([]byte, size), trimmed: make([]bool, size)}
}

// Write records a write of p at off.
func (m *Model) Write(p []byte, off int64) {
	copy(m.data[off:], p)
	clear(m.trimmed[off : off+int64(len(p))])
}

// Zero records a zeroing.
func (m *Model) Zero(off, n int64) {
	clear(m.data[off : off+n])
	clear(m.trimmed[off : off+n])
}

// Trim marks the whole blocks of bs bytes inside the range, which is all a
// trim through ByteGranular may change, as unspecified.
func (m *Model) Trim(off, n, bs int64) {
	for i := (off + bs - 1) / bs * bs; i < (off+n)/bs*bs; i++ {
		m.trimmed[i] = true
	}
}

// Verify reads [off, off+n) through d and compares it with the model.
func (m *Model) Verify(t testing.TB, d blockdev.Device, off, n int64) {
	t.Helper()
	got := make([]byte, n)
	if err := d.ReadAt(context.Background(), got, off); err != nil {
		t.Fatalf("read %d+%d: %v", off, n, err)
	}
	for i := range got {
		at := off + int64(i)
		if !m.trimmed[at] && got[i] != m.data[at] {
			t.Fatalf("read %d+%d: byte %d is %#x, want %#x", off, n, at, got[i], m.data[at])
		}
	}
}

// RunOps decodes ops as a stream of 5-byte requests (kind, offset, length)
// and runs them against d, a byte-granular device over blocks of bs bytes,
// after zeroing it: reads (compared with a Model), writes,
// zeroings, trims and flushes at any offset and length, inside the device
// or not. Requests inside must succeed, others fail with EINVAL. At the
// end the whole device must read back as the model. It is the body of a
// fuzz target.
func RunOps(t testing.TB, d blockdev.Device, ops []byte, bs int64) {
	t.Helper()
	size := d.Size()
	ctx := context.Background()
	if err := d.Zero(ctx, 0, size, 0); err != nil {
		t.Fatal(err)
	}
	model := NewModel(size)
	for len(ops) >= 5 {
		kind := ops[0] % 5
		off := int64(binary.LittleEndian.Uint16(ops[1:])) % (size + 1024)
		n := int64(binary.LittleEndian.Uint16(ops[3:])) % (size / 2)
		ops = ops[5:]
		inside := off+n <= size
		var err error
		switch kind {
		case 0:
			if inside {
				model.Verify(t, d, off, n)
			} else {
				err = d.ReadAt(ctx, make([]byte, n), off)
			}
		case 1:
			p := bytes.Repeat([]byte{byte(off), byte(n)}, int(n/2+1))[:n]
			if err = d.WriteAt(ctx, bytes.Clone(p), off, n%2 == 0); err == nil {
				model.Write(p, off)
			}
		case 2:
			if err = d.Zero(ctx, off, n, blockdev.ZeroFlags(n%2)); err == nil {
				model.Zero(off, n)
			}
		case 3:
			if err = d.Trim(ctx, off, n, false); err == nil {
				model.Trim(off, n, bs)
			}
		case 4:
			err = d.Flush(ctx)
			inside = true
		}
		if inside != (err == nil) || (err != nil && !errors.Is(err, syscall.EINVAL)) {
			t.Fatalf("op %d at %d+%d: err %v, inside %v", kind, off, n, err, inside)
		}
	}
	model.Verify(t, d, 0, size)
}
