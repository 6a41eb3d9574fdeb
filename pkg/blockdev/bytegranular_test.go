package blockdev_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/encblk/encblk/internal/blockdevtest"
	"github.com/encblk/encblk/pkg/blockdev"
)

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
			mem := blockdevtest.NewMem(uint32(bs), size)
			d := blockdev.ByteGranular(mem)
			if got := d.Info().LogicalBlockSize; got != 1 {
				t.Fatalf("LogicalBlockSize %d, want 1", got)
			}
			if got := d.Info().PhysicalBlockSize; got != uint32(bs) {
				t.Fatalf("PhysicalBlockSize %d, want %d", got, bs)
			}
			model := blockdevtest.NewModel(size)
			rng := rand.New(rand.NewPCG(uint64(bs), 1))
			fill := func() {
				p := make([]byte, size)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				if err := d.WriteAt(ctx, bytes.Clone(p), 0, false); err != nil {
					t.Fatal(err)
				}
				model.Write(p, 0)
			}
			fill()
			shapes := edgeShapes(bs)
			ops := 0
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
								model.Write(p, off)
							case 1:
								if err := d.Zero(ctx, off, n, blockdev.ZeroFlags(n%2)); err != nil {
									t.Fatalf("zero %d+%d: %v", off, n, err)
								}
								model.Zero(off, n)
							case 2:
								if err := d.Trim(ctx, off, n, false); err != nil {
									t.Fatalf("trim %d+%d: %v", off, n, err)
								}
								model.Trim(off, n, bs)
							}
							// The whole device: nothing outside the range
							// changed. Then one read shape in turn, so
							// that every read shape follows every kind
							// of request.
							model.Verify(t, d, 0, size)
							ro, rn := shapes[ops%len(shapes)], shapes[ops/len(shapes)%len(shapes)]
							ops++
							model.Verify(t, d, base+ro, min(rn, size-base-ro))
							fill()
						}
					}
				}
			}
			if n := mem.Misaligned.Load(); n != 0 {
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
	mem := blockdevtest.NewMem(4096, 1<<20)
	d := blockdev.ByteGranular(mem)
	p := make([]byte, 8192)
	for _, f := range []func() error{
		func() error { return d.ReadAt(ctx, p, 4096) },
		func() error { return d.WriteAt(ctx, p, 4096, false) },
		func() error { return d.Zero(ctx, 4096, 8192, 0) },
		func() error { return d.Trim(ctx, 4096, 8192, false) },
	} {
		before := mem.Calls.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		if calls := mem.Calls.Load() - before; calls != 1 {
			t.Fatalf("%d device calls, want 1", calls)
		}
	}
	if o := (&onlyBytes{mem}); blockdev.ByteGranular(o) != blockdev.Device(o) {
		t.Fatal("a device with a logical block size of 1 was wrapped")
	}
}

// onlyBytes is a device that takes any byte range.
type onlyBytes struct{ *blockdevtest.Mem }

func (o *onlyBytes) Info() blockdev.Info { return blockdev.Info{LogicalBlockSize: 1} }

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := blockdevtest.NewMem(512, 64<<10)
	d := blockdev.ByteGranular(mem)
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
	if err := d.Zero(ctx, 100, 1000, blockdev.ZeroFast); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("unaligned fast zero: %v, want ENOTSUP", err)
	}
	if err := d.Zero(ctx, 512, 1024, blockdev.ZeroFast); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("aligned fast zero on a device that cannot: %v, want its ENOTSUP", err)
	}
	if n := mem.Misaligned.Load(); n != 0 {
		t.Fatalf("the device received %d unaligned requests", n)
	}
}

// extentDevice adds Extents (4096-byte runs alternating data and hole)
// and Prefetch to memDevice, both checking alignment.
type extentDevice struct {
	*blockdevtest.Mem
	prefetched atomic.Int64
}

func (x *extentDevice) Extents(_ context.Context, dst []blockdev.Extent, off, length int64) ([]blockdev.Extent, error) {
	if err := x.Check(off, length); err != nil {
		return dst, err
	}
	for at := off; at < off+length; {
		next := min((at/4096+1)*4096, off+length)
		hole := (at/4096)%2 == 1
		dst = append(dst, blockdev.Extent{Length: next - at, Hole: hole, Zero: hole})
		at = next
	}
	return dst, nil
}

func (x *extentDevice) Prefetch(_ context.Context, off, length int64) error {
	if err := x.Check(off, length); err != nil {
		return err
	}
	x.prefetched.Add(length)
	return nil
}

func TestExtentsAndPrefetch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x := &extentDevice{Mem: blockdevtest.NewMem(512, 64<<10)}
	d := blockdev.ByteGranular(x)
	e, ok := d.(blockdev.Extenter)
	if !ok {
		t.Fatal("blockdev.Extenter not passed on")
	}
	p, ok := d.(blockdev.Prefetcher)
	if !ok {
		t.Fatal("blockdev.Prefetcher not passed on")
	}
	got, err := e.Extents(ctx, []blockdev.Extent{{Length: 1}}, 4000, 4200)
	if err != nil {
		t.Fatal(err)
	}
	want := []blockdev.Extent{{Length: 1}, {Length: 96}, {Length: 4096, Hole: true, Zero: true}, {Length: 8}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("extents %v, want %v", got, want)
	}
	if err := p.Prefetch(ctx, 100, 1000); err != nil || x.prefetched.Load() != 1536 {
		t.Fatalf("prefetch: %v, %d bytes prefetched, want the blocks around it, 1536", err, x.prefetched.Load())
	}
	if _, ok := blockdev.ByteGranular(blockdevtest.NewMem(512, 4096)).(blockdev.Extenter); ok {
		t.Fatal("blockdev.Extenter invented for a device without one")
	}
	if _, ok := blockdev.ByteGranular(blockdevtest.NewMem(512, 4096)).(blockdev.Prefetcher); ok {
		t.Fatal("blockdev.Prefetcher invented for a device without one")
	}
	if x.Misaligned.Load() != 0 {
		t.Fatal("the device received unaligned requests")
	}
}

// TestConcurrentOverlappingWrites runs writers of unaligned and aligned
// requests over the same blocks at once and checks the result is
// linearizable (blockdevtest.OverlappingWrites): a read-modify-write that
// wrote back a stale copy of its block over a concurrent write (a lost
// update) leaves an older id. The writers share one ByteGranular (as
// several NBD connections do), or the aligned ones write through the
// whole-block view of Frontends (ublk and NBD on one device). The device
// sleeps after every read, widening the window between a
// read-modify-write's read and its write. Run it with -race.
func TestConcurrentOverlappingWrites(t *testing.T) {
	t.Parallel()
	for _, bs := range []int64{512, 4096} {
		for _, frontends := range []int{1, 2} {
			t.Run(fmt.Sprintf("%d/frontends=%d", bs, frontends), func(t *testing.T) {
				t.Parallel()
				mem := blockdevtest.NewMem(uint32(bs), 16*bs)
				mem.SlowReads = true
				anyBytes, whole := blockdev.Frontends(mem)
				var d blockdev.Device = anyBytes
				if frontends == 2 {
					d = routed{anyBytes, bs, whole}
				}
				blockdevtest.OverlappingWrites(t, d, bs, 6, 300)
				if n := mem.Misaligned.Load(); n != 0 {
					t.Fatalf("the device received %d unaligned requests", n)
				}
			})
		}
	}
}

// routed sends unaligned writes to one device and aligned ones to another,
// as a volume served over NBD and ublk at once receives them.
type routed struct {
	blockdev.Device // unaligned writes, and everything else
	bs              int64
	whole           blockdev.Device // aligned writes
}

func (r routed) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if off%r.bs == 0 && int64(len(p))%r.bs == 0 {
		return r.whole.WriteAt(ctx, p, off, fua)
	}
	return r.Device.WriteAt(ctx, p, off, fua)
}

// FuzzByteGranular drives blockdev.ByteGranular over an aligned in-memory device
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
		mem := blockdevtest.NewMem(uint32(bs), 32<<10)
		blockdevtest.RunOps(t, blockdev.ByteGranular(mem), ops, bs)
		if n := mem.Misaligned.Load(); n != 0 {
			t.Fatalf("the device received %d unaligned requests", n)
		}
	})
}

// BenchmarkAligned is the cost ByteGranular adds to the aligned path (the
// alignment check, and the shared range for writes) over an in-memory
// device, where nothing else hides it: 4 KiB requests on the device itself
// and through the adapter, from one goroutine and from several.
//
//	go test -run '^$' -bench Aligned ./pkg/blockdev
func BenchmarkAligned(b *testing.B) {
	ctx := context.Background()
	for _, write := range []bool{false, true} {
		for _, wrapped := range []bool{false, true} {
			name := map[bool]string{false: "read", true: "write"}[write] + map[bool]string{false: "/device", true: "/bytegranular"}[wrapped]
			b.Run(name, func(b *testing.B) {
				mem := blockdevtest.NewMem(4096, 64<<20)
				var d blockdev.Device = mem
				if wrapped {
					d = blockdev.ByteGranular(mem)
				}
				var next atomic.Int64
				b.SetBytes(4096)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					p := make([]byte, 4096)
					off := next.Add(1<<20) % (64 << 20)
					for pb.Next() {
						var err error
						if write {
							err = d.WriteAt(ctx, p, off, false)
						} else {
							err = d.ReadAt(ctx, p, off)
						}
						if err != nil {
							b.Error(err)
							return
						}
						off = (off + 4096) % (64 << 20)
					}
				})
			})
		}
	}
}

// TestFrontendsView: the whole-block view is the device as it is (its
// Info, its refusal of partial blocks, its optional interfaces), and a
// byte-granular device is its own view.
func TestFrontendsView(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x := &extentDevice{Mem: blockdevtest.NewMem(512, 64<<10)}
	_, whole := blockdev.Frontends(x)
	if whole.Info() != x.Info() || whole.Size() != x.Size() {
		t.Fatalf("view info %+v size %d, want the device's %+v %d", whole.Info(), whole.Size(), x.Info(), x.Size())
	}
	for name, err := range map[string]error{
		"write": whole.WriteAt(ctx, make([]byte, 100), 0, false),
		"read":  whole.ReadAt(ctx, make([]byte, 100), 0),
		"zero":  whole.Zero(ctx, 0, 100, 0),
		"trim":  whole.Trim(ctx, 0, 100, false),
	} {
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("unaligned %s through the view: %v, want the device's EINVAL", name, err)
		}
	}
	if _, ok := whole.(blockdev.Extenter); !ok {
		t.Error("view hides Extenter")
	}
	if _, ok := whole.(blockdev.Prefetcher); !ok {
		t.Error("view hides Prefetcher")
	}
	if _, ok := blockdev.ByteGranular(blockdevtest.NewMem(512, 4096)).(blockdev.Extenter); ok {
		t.Error("Extenter invented")
	}
	o := &onlyBytes{x.Mem}
	if a, w := blockdev.Frontends(o); a != blockdev.Device(o) || w != blockdev.Device(o) {
		t.Error("a byte-granular device was wrapped")
	}
}
