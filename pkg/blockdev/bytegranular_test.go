package blockdev

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// memDevice is an in-memory Device that, like an encrypted volume, takes
// only whole logical blocks: an unaligned request fails with EINVAL and is
// counted, so a test can check that ByteGranular never sent one.
type memDevice struct {
	mu         sync.Mutex
	data       []byte
	info       Info
	slowReads  bool         // sleep after each read: widens read-modify-write windows
	misaligned atomic.Int64 // unaligned requests received
	calls      atomic.Int64 // requests received
}

func newMemDevice(bs uint32, size int64) *memDevice {
	return &memDevice{
		data: make([]byte, size),
		info: Info{LogicalBlockSize: bs, CanTrim: true, CanZero: true, CanFUA: true, CanFlush: true},
	}
}

func (m *memDevice) Size() int64 { return int64(len(m.data)) }
func (m *memDevice) Info() Info  { return m.info }

func (m *memDevice) check(off, n int64) error {
	m.calls.Add(1)
	bs := int64(m.info.LogicalBlockSize)
	if off%bs != 0 || n%bs != 0 {
		m.misaligned.Add(1)
		return fmt.Errorf("mem: %d+%d not aligned to %d: %w", off, n, bs, syscall.EINVAL)
	}
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return fmt.Errorf("mem: %d+%d outside: %w", off, n, syscall.EINVAL)
	}
	return nil
}

func (m *memDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	if err := m.check(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	copy(p, m.data[off:])
	m.mu.Unlock()
	if m.slowReads {
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

func (m *memDevice) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	if err := m.check(off, int64(len(p))); err != nil {
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

func (m *memDevice) Flush(context.Context) error { return nil }

// Trim fills the range with 0xdd: its contents are unspecified.
func (m *memDevice) Trim(_ context.Context, off, n int64, _ bool) error {
	if err := m.check(off, n); err != nil {
		return err
	}
	m.mu.Lock()
	for i := off; i < off+n; i++ {
		m.data[i] = 0xdd
	}
	m.mu.Unlock()
	return nil
}

func (m *memDevice) Zero(_ context.Context, off, n int64, flags ZeroFlags) error {
	if err := m.check(off, n); err != nil {
		return err
	}
	if flags&ZeroFast != 0 {
		return syscall.ENOTSUP
	}
	m.mu.Lock()
	clear(m.data[off : off+n])
	m.mu.Unlock()
	return nil
}

// memModel is what a byte-granular device must read back: the bytes last
// written, and which bytes a trim made unspecified.
type memModel struct {
	data    []byte
	trimmed []bool
}

func newModel(size int64) *memModel {
	return &memModel{data: make([]byte, size), trimmed: make([]bool, size)}
}

func (m *memModel) write(p []byte, off int64) {
	copy(m.data[off:], p)
	clear(m.trimmed[off : off+int64(len(p))])
}

func (m *memModel) zero(off, n int64) {
	clear(m.data[off : off+n])
	clear(m.trimmed[off : off+n])
}

// trim marks the whole blocks inside the range, which is all a trim of an
// aligned device may change.
func (m *memModel) trim(off, n, bs int64) {
	for i := (off + bs - 1) / bs * bs; i < (off+n)/bs*bs; i++ {
		m.trimmed[i] = true
	}
}

// verify reads [off, off+n) through d and compares it with the model.
func (m *memModel) verify(t testing.TB, d Device, off, n int64) {
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

// edgeShapes are offsets or lengths relative to a block size: on,
// just before and just after each boundary of the first blocks.
func edgeShapes(bs int64) []int64 {
	return []int64{0, 1, bs - 1, bs, bs + 1, 2*bs - 1, 2 * bs, 2*bs + 1, 3*bs + 7}
}

// TestEdgeShapes writes, zeroes and trims every combination of an edge
// offset and an edge length (head and tail partial, in one block or
// spanning several, aligned on one side or neither), reads every shape back
// against the model, and checks that the device underneath only ever saw
// whole blocks.
func TestEdgeShapes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, bs := range []int64{512, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			t.Parallel()
			size := 8 * bs
			mem := newMemDevice(uint32(bs), size)
			d := ByteGranular(mem)
			if got := d.Info().LogicalBlockSize; got != 1 {
				t.Fatalf("LogicalBlockSize %d, want 1", got)
			}
			if got := d.Info().PhysicalBlockSize; got != uint32(bs) {
				t.Fatalf("PhysicalBlockSize %d, want %d", got, bs)
			}
			model := newModel(size)
			rng := rand.New(rand.NewPCG(uint64(bs), 1))
			fill := func() {
				p := make([]byte, size)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				if err := d.WriteAt(ctx, bytes.Clone(p), 0, false); err != nil {
					t.Fatal(err)
				}
				model.write(p, 0)
			}
			fill()
			shapes := edgeShapes(bs)
			for _, base := range []int64{0, 2 * bs} {
				for _, o := range shapes {
					for _, n := range shapes {
						off := base + o
						if off+n > size {
							continue
						}
						for op := range 3 {
							switch op {
							case 0:
								p := make([]byte, n)
								for i := range p {
									p[i] = byte(rng.Uint32())
								}
								if err := d.WriteAt(ctx, bytes.Clone(p), off, n%2 == 0); err != nil {
									t.Fatalf("write %d+%d: %v", off, n, err)
								}
								model.write(p, off)
							case 1:
								if err := d.Zero(ctx, off, n, ZeroFlags(n%2)); err != nil {
									t.Fatalf("zero %d+%d: %v", off, n, err)
								}
								model.zero(off, n)
							case 2:
								if err := d.Trim(ctx, off, n, false); err != nil {
									t.Fatalf("trim %d+%d: %v", off, n, err)
								}
								model.trim(off, n, bs)
							}
							// The whole device: nothing outside the range changed.
							model.verify(t, d, 0, size)
							for _, ro := range shapes {
								for _, rn := range shapes {
									if base+ro+rn <= size {
										model.verify(t, d, base+ro, rn)
									}
								}
							}
							fill()
						}
					}
				}
			}
			if n := mem.misaligned.Load(); n != 0 {
				t.Fatalf("the device received %d unaligned requests", n)
			}
		})
	}
}

// TestAlignedPassThrough: whole-block requests reach the device as they
// are, one call each.
func TestAlignedPassThrough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := newMemDevice(4096, 1<<20)
	d := ByteGranular(mem)
	p := make([]byte, 8192)
	for _, f := range []func() error{
		func() error { return d.ReadAt(ctx, p, 4096) },
		func() error { return d.WriteAt(ctx, p, 4096, false) },
		func() error { return d.Zero(ctx, 4096, 8192, 0) },
		func() error { return d.Trim(ctx, 4096, 8192, false) },
	} {
		before := mem.calls.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		if calls := mem.calls.Load() - before; calls != 1 {
			t.Fatalf("%d device calls, want 1", calls)
		}
	}
	if o := (&onlyBytes{mem}); ByteGranular(o) != Device(o) {
		t.Fatal("a device with a logical block size of 1 was wrapped")
	}
}

// onlyBytes is a device that takes any byte range.
type onlyBytes struct{ *memDevice }

func (o *onlyBytes) Info() Info { return Info{LogicalBlockSize: 1} }

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := newMemDevice(512, 64<<10)
	d := ByteGranular(mem)
	for name, err := range map[string]error{
		"read past the end":  d.ReadAt(ctx, make([]byte, 100), 64<<10-50),
		"write past the end": d.WriteAt(ctx, make([]byte, 100), 64<<10-50, false),
		"zero past the end":  d.Zero(ctx, 64<<10-50, 100, 0),
		"trim past the end":  d.Trim(ctx, 64<<10-50, 100, false),
		"negative offset":    d.ReadAt(ctx, make([]byte, 100), -1),
	} {
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
	if err := d.Zero(ctx, 100, 1000, ZeroFast); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("unaligned fast zero: %v, want ENOTSUP", err)
	}
	if err := d.Zero(ctx, 512, 1024, ZeroFast); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("aligned fast zero on a device that cannot: %v, want its ENOTSUP", err)
	}
	if n := mem.misaligned.Load(); n != 0 {
		t.Fatalf("the device received %d unaligned requests", n)
	}
}

// extentDevice adds Extents (4096-byte runs alternating data and hole)
// and Prefetch to memDevice, both checking alignment.
type extentDevice struct {
	*memDevice
	prefetched atomic.Int64
}

func (x *extentDevice) Extents(_ context.Context, dst []Extent, off, length int64) ([]Extent, error) {
	if err := x.check(off, length); err != nil {
		return dst, err
	}
	for at := off; at < off+length; {
		next := min((at/4096+1)*4096, off+length)
		hole := (at/4096)%2 == 1
		dst = append(dst, Extent{Length: next - at, Hole: hole, Zero: hole})
		at = next
	}
	return dst, nil
}

func (x *extentDevice) Prefetch(_ context.Context, off, length int64) error {
	if err := x.check(off, length); err != nil {
		return err
	}
	x.prefetched.Add(length)
	return nil
}

func TestExtentsAndPrefetch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x := &extentDevice{memDevice: newMemDevice(512, 64<<10)}
	d := ByteGranular(x)
	e, ok := d.(Extenter)
	if !ok {
		t.Fatal("Extenter not passed on")
	}
	p, ok := d.(Prefetcher)
	if !ok {
		t.Fatal("Prefetcher not passed on")
	}
	got, err := e.Extents(ctx, []Extent{{Length: 1}}, 4000, 4200)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{Length: 1}, {Length: 96}, {Length: 4096, Hole: true, Zero: true}, {Length: 8}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("extents %v, want %v", got, want)
	}
	if err := p.Prefetch(ctx, 100, 1000); err != nil || x.prefetched.Load() != 1536 {
		t.Fatalf("prefetch: %v, %d bytes prefetched, want the blocks around it, 1536", err, x.prefetched.Load())
	}
	if _, ok := ByteGranular(newMemDevice(512, 4096)).(Extenter); ok {
		t.Fatal("Extenter invented for a device without one")
	}
	if _, ok := ByteGranular(newMemDevice(512, 4096)).(Prefetcher); ok {
		t.Fatal("Prefetcher invented for a device without one")
	}
	if x.misaligned.Load() != 0 {
		t.Fatal("the device received unaligned requests")
	}
}

// TestConcurrentOverlappingWrites runs writers of unaligned and aligned
// requests over the same blocks at once (as several NBD connections do)
// and checks the result is linearizable: every 2-byte cell holds the id of
// a write that covered it, and no write that covered it started after that
// write had finished. A read-modify-write that wrote back a stale copy of
// its block over a concurrent write (a lost update) leaves an older id.
// The device sleeps after every read, widening the window between a
// read-modify-write's read and its write. Run it with -race.
func TestConcurrentOverlappingWrites(t *testing.T) {
	t.Parallel()
	for _, bs := range []int64{512, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			t.Parallel()
			mem := newMemDevice(uint32(bs), 16*bs)
			mem.slowReads = true
			checkOverlappingWrites(t, ByteGranular(mem), bs, 6, 300)
		})
	}
}

// checkOverlappingWrites is the check of TestConcurrentOverlappingWrites
// for a byte-granular device d over blocks of bs bytes (at least 16 of
// them).
func checkOverlappingWrites(t *testing.T, d Device, bs int64, writers, rounds int) {
	t.Helper()
	ctx := context.Background()
	size := d.Size()
	if err := d.Zero(ctx, 0, size, 0); err != nil {
		t.Fatal(err)
	}
	type op struct {
		off, n     int64
		start, end int64 // logical clock before and after WriteAt
	}
	ops := make([]op, 1+writers*rounds) // id 0: never written
	var clock atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), uint64(bs)))
		wg.Go(func() {
			p := make([]byte, 2*bs)
			for r := range rounds {
				id := 1 + w*rounds + r
				// Even offsets and lengths: each 2-byte cell holds one id.
				off := 2 * rng.Int64N((size-2*bs)/2)
				n := 2 + 2*rng.Int64N(bs/2)
				if rng.IntN(3) == 0 {
					off, n = off/bs*bs, bs*(1+rng.Int64N(2))
				}
				for i := int64(0); i < n; i += 2 {
					binary.LittleEndian.PutUint16(p[i:], uint16(id))
				}
				o := op{off: off, n: n, start: clock.Add(1)}
				if err := d.WriteAt(ctx, p[:n], off, false); err != nil {
					t.Error(err)
					return
				}
				o.end = clock.Add(1)
				ops[id] = o
			}
		})
	}
	wg.Wait()
	// latestStart[c]: the latest start of any write covering cell c.
	latestStart := make([]int64, size/2)
	for _, o := range ops[1:] {
		for c := o.off / 2; c < (o.off+o.n)/2; c++ {
			latestStart[c] = max(latestStart[c], o.start)
		}
	}
	got := make([]byte, size)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	for c := range latestStart {
		id := int(binary.LittleEndian.Uint16(got[2*c:]))
		switch {
		case id == 0 && latestStart[c] == 0:
		case id == 0 || id >= len(ops):
			t.Fatalf("byte %d holds %#x, no write's id (torn block)", 2*c, id)
		case ops[id].off > int64(2*c) || ops[id].off+ops[id].n <= int64(2*c):
			t.Fatalf("byte %d holds the id of a write that did not cover it", 2*c)
		case ops[id].end < latestStart[c]:
			t.Fatalf("byte %d holds write %d, overwritten by a later write (lost update)", 2*c, id)
		}
	}
}

// FuzzByteGranular drives ByteGranular over an aligned in-memory device
// with arbitrary reads, writes, zeroes, trims and flushes (any offset and
// length, inside or not) and compares every read with a plain byte array;
// requests outside the device must fail with EINVAL, and the device must
// never see an unaligned request.
func FuzzByteGranular(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 16, 0}, false)
	f.Add([]byte{1, 0xff, 0x0f, 0x01, 0x02, 3, 1, 2, 0, 1, 3}, true)
	f.Add([]byte{2, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0x10, 0x00}, false)
	f.Add([]byte{1, 0x07, 0x02, 0xfe, 0x01, 2, 0x01, 0x02, 0x00, 0x04, 3, 0x02, 0x00, 0x00, 0x10}, true)
	f.Fuzz(func(t *testing.T, ops []byte, big bool) {
		bs := int64(512)
		if big {
			bs = 4096
		}
		const size = 32 << 10
		mem := newMemDevice(uint32(bs), size)
		d := ByteGranular(mem)
		ctx := context.Background()
		model := newModel(size)
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
					model.verify(t, d, off, n)
				} else {
					err = d.ReadAt(ctx, make([]byte, n), off)
				}
			case 1:
				p := bytes.Repeat([]byte{byte(off), byte(n)}, int(n/2+1))[:n]
				if err = d.WriteAt(ctx, bytes.Clone(p), off, n%2 == 0); err == nil {
					model.write(p, off)
				}
			case 2:
				if err = d.Zero(ctx, off, n, ZeroFlags(n%2)); err == nil {
					model.zero(off, n)
				}
			case 3:
				if err = d.Trim(ctx, off, n, false); err == nil {
					model.trim(off, n, bs)
				}
			case 4:
				err = d.Flush(ctx)
				inside = true
			}
			if inside != (err == nil) || (err != nil && !errors.Is(err, syscall.EINVAL)) {
				t.Fatalf("op %d at %d+%d: err %v, inside %v", kind, off, n, err, inside)
			}
		}
		model.verify(t, d, 0, size)
		if n := mem.misaligned.Load(); n != 0 {
			t.Fatalf("the device received %d unaligned requests", n)
		}
	})
}
