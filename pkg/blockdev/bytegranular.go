package blockdev

import (
	"context"
	"fmt"
	"syscall"

	"github.com/encblk/encblk/internal/bufpool"
)

// ByteGranular returns d as a Device that takes requests of any byte
// offset and length (its LogicalBlockSize is 1), for a frontend whose
// clients may send them (NBD). It is nbdkit's blocksize filter: requests
// aligned to d's logical block size pass straight through; an unaligned
// write reads the partial blocks at its edges, merges the new bytes in and
// writes the whole blocks back in one WriteAt (so FUA costs one flush); an
// unaligned read reads the whole blocks into a pooled buffer; an unaligned
// zeroing read-modify-writes its edge blocks and zeroes the whole blocks
// between them; an unaligned trim trims only the whole blocks inside its
// range (a trim is advisory, its contents are unspecified afterwards).
//
// Writes of every kind register the whole blocks they touch in a range
// lock: a read-modify-write excludes every other write of its blocks, so
// overlapping unaligned writes never lose an update (one of them writing
// back the stale rest of a block over the other's bytes); aligned writes
// exclude only read-modify-writes and otherwise run in parallel, as they
// would on d. The guarantee covers the requests that go through the
// returned Device: give every connection of a frontend the same one, and
// a frontend that sends whole blocks to d at the same time the second
// Device of Frontends.
//
// A device whose logical block size is 1 (or 0) is returned as it is.
// The result implements Extenter and Prefetcher when d does.
func ByteGranular(d Device) Device {
	anyBytes, _ := Frontends(d)
	return anyBytes
}

// Frontends returns ByteGranular(d), for a frontend whose requests may be
// any byte range (NBD), and a view of d for a frontend that sends whole
// blocks (ublk) to the same device at the same time. The view passes
// requests straight to d, but its writes, trims and zeroings register in
// the byte-granular device's range lock (shared, as its own aligned writes
// do), so that a partial-block write through the first is never
// interleaved with a whole-block write of the same block through the
// second. That costs the view's writes a mutex and a scan of the ranges in
// flight. For a device whose logical block size is 1 (or 0) both are d.
// Both implement Extenter and Prefetcher when d does.
func Frontends(d Device) (anyBytes, wholeBlocks Device) {
	info := d.Info()
	if info.LogicalBlockSize <= 1 {
		return d, d
	}
	g := &byteGranular{d: d, bs: int64(info.LogicalBlockSize), size: d.Size()}
	g.info = info
	g.info.LogicalBlockSize = 1
	if g.info.PhysicalBlockSize == 0 {
		g.info.PhysicalBlockSize = info.LogicalBlockSize
	}
	if m := int64(info.MaxTransfer); m > 0 {
		// Widening to whole blocks adds less than a block at each end.
		g.info.MaxTransfer = uint32(max(m-2*g.bs, g.bs))
	}
	e, _ := d.(Extenter)
	p, _ := d.(Prefetcher)
	var ge Extenter
	if e != nil {
		ge = granularExtents{g, e}
	}
	var gp Prefetcher
	if p != nil {
		gp = granularPrefetch{g, p}
	}
	return withOptional(g, ge, gp), withOptional(wholeView{g}, e, p)
}

// withOptional is base with the optional interfaces that are not nil.
func withOptional(base Device, e Extenter, p Prefetcher) Device {
	switch {
	case e != nil && p != nil:
		return &struct {
			Device
			Extenter
			Prefetcher
		}{base, e, p}
	case e != nil:
		return &struct {
			Device
			Extenter
		}{base, e}
	case p != nil:
		return &struct {
			Device
			Prefetcher
		}{base, p}
	}
	return base
}

// byteGranular is the Device ByteGranular returns.
type byteGranular struct {
	d    Device
	bs   int64 // d's logical block size
	size int64
	info Info
	rl   rangeLock
}

func (g *byteGranular) Size() int64 { return g.size }

// Info is d's, with a logical block size of 1.
func (g *byteGranular) Info() Info { return g.info }

func (g *byteGranular) Flush(ctx context.Context) error { return g.d.Flush(ctx) }

// ReadAt passes aligned requests through; others read whole blocks into a
// pooled buffer. A read takes no range lock: it modifies nothing.
func (g *byteGranular) ReadAt(ctx context.Context, p []byte, off int64) error {
	n := int64(len(p))
	if g.aligned(off, n) {
		return g.d.ReadAt(ctx, p, off)
	}
	if err := g.check(off, n); err != nil {
		return err
	}
	start, end := g.span(off, n)
	bp := bufpool.Get(int(end - start))
	defer bufpool.Put(bp)
	if err := g.d.ReadAt(ctx, *bp, start); err != nil {
		return err
	}
	copy(p, (*bp)[off-start:])
	return nil
}

// WriteAt passes aligned requests through under a shared range; others
// are merged into their whole blocks under an exclusive one.
func (g *byteGranular) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	n := int64(len(p))
	if g.aligned(off, n) {
		id := g.rl.lock(off, off+n, false)
		defer g.rl.unlock(id)
		return g.d.WriteAt(ctx, p, off, fua)
	}
	if err := g.check(off, n); err != nil {
		return err
	}
	start, end := g.span(off, n)
	bp := bufpool.Get(int(end - start))
	defer bufpool.Put(bp)
	buf := *bp
	id := g.rl.lock(start, end, true)
	defer g.rl.unlock(id)
	tail := end - g.bs
	if off != start {
		if err := g.d.ReadAt(ctx, buf[:g.bs], start); err != nil {
			return err
		}
	}
	if off+n != end && (tail != start || off == start) {
		if err := g.d.ReadAt(ctx, buf[tail-start:], tail); err != nil {
			return err
		}
	}
	copy(buf[off-start:], p)
	return g.d.WriteAt(ctx, buf, start, fua)
}

// Zero passes aligned requests through under a shared range. An
// unaligned one zeroes its partial edge blocks by read-modify-write and
// the whole blocks between them with d's Zero, all under an exclusive
// range; with ZeroFast it fails with ENOTSUP at once, as the edges are
// written, which is no faster than writing zeros.
func (g *byteGranular) Zero(ctx context.Context, off, length int64, flags ZeroFlags) error {
	if g.aligned(off, length) {
		id := g.rl.lock(off, off+length, false)
		defer g.rl.unlock(id)
		return g.d.Zero(ctx, off, length, flags)
	}
	if err := g.check(off, length); err != nil {
		return err
	}
	if flags&ZeroFast != 0 {
		return fmt.Errorf("blockdev: zeroing a partial %d-byte block is a write: %w", g.bs, syscall.ENOTSUP)
	}
	start, end := g.span(off, length)
	id := g.rl.lock(start, end, true)
	defer g.rl.unlock(id)
	fua := flags&ZeroFUA != 0
	innerStart := (off + g.bs - 1) / g.bs * g.bs // first whole block
	innerEnd := (off + length) / g.bs * g.bs     // end of the last whole block
	if off != start {
		// The head block, which may also be the tail one.
		if err := g.zeroPart(ctx, start, off, min(off+length, start+g.bs), fua); err != nil {
			return err
		}
	}
	if innerStart < innerEnd {
		if err := g.d.Zero(ctx, innerStart, innerEnd-innerStart, flags); err != nil {
			return err
		}
	}
	if off+length != end && innerEnd >= innerStart {
		// A tail block the head did not cover.
		return g.zeroPart(ctx, innerEnd, innerEnd, off+length, fua)
	}
	return nil
}

// zeroPart zeroes [from, to) inside the block at blk by read-modify-write.
func (g *byteGranular) zeroPart(ctx context.Context, blk, from, to int64, fua bool) error {
	bp := bufpool.Get(int(g.bs))
	defer bufpool.Put(bp)
	buf := *bp
	if err := g.d.ReadAt(ctx, buf, blk); err != nil {
		return err
	}
	clear(buf[from-blk : to-blk])
	return g.d.WriteAt(ctx, buf, blk, fua)
}

// Trim trims the whole blocks inside the range, under a shared range; a
// range with none is done at once.
func (g *byteGranular) Trim(ctx context.Context, off, length int64, fua bool) error {
	if !g.aligned(off, length) {
		if err := g.check(off, length); err != nil {
			return err
		}
		start := (off + g.bs - 1) / g.bs * g.bs
		end := (off + length) / g.bs * g.bs
		if start >= end {
			return nil
		}
		off, length = start, end-start
	}
	id := g.rl.lock(off, off+length, false)
	defer g.rl.unlock(id)
	return g.d.Trim(ctx, off, length, fua)
}

// aligned reports whether the range is whole blocks (the device checks
// the bounds of those).
func (g *byteGranular) aligned(off, n int64) bool {
	return off%g.bs == 0 && n%g.bs == 0
}

// check rejects unaligned ranges outside the device before they are
// widened (an aligned one is d's to check).
func (g *byteGranular) check(off, n int64) error {
	if off < 0 || n < 0 || off > g.size || n > g.size-off {
		return fmt.Errorf("blockdev: request %d+%d outside the device (%d bytes): %w", off, n, g.size, syscall.EINVAL)
	}
	return nil
}

// span widens [off, off+n) to whole blocks.
func (g *byteGranular) span(off, n int64) (start, end int64) {
	start = off / g.bs * g.bs
	end = (off + n + g.bs - 1) / g.bs * g.bs
	return start, end
}

// wholeView is the second Device of Frontends: d, its aligned writes
// ordered against g's read-modify-writes. Unaligned requests go to d,
// which refuses them.
type wholeView struct{ g *byteGranular }

func (w wholeView) Size() int64                     { return w.g.size }
func (w wholeView) Info() Info                      { return w.g.d.Info() }
func (w wholeView) Flush(ctx context.Context) error { return w.g.d.Flush(ctx) }
func (w wholeView) ReadAt(ctx context.Context, p []byte, off int64) error {
	return w.g.d.ReadAt(ctx, p, off)
}

func (w wholeView) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if !w.g.aligned(off, int64(len(p))) {
		return w.g.d.WriteAt(ctx, p, off, fua)
	}
	return w.g.WriteAt(ctx, p, off, fua)
}

func (w wholeView) Zero(ctx context.Context, off, length int64, flags ZeroFlags) error {
	if !w.g.aligned(off, length) {
		return w.g.d.Zero(ctx, off, length, flags)
	}
	return w.g.Zero(ctx, off, length, flags)
}

func (w wholeView) Trim(ctx context.Context, off, length int64, fua bool) error {
	if !w.g.aligned(off, length) {
		return w.g.d.Trim(ctx, off, length, fua)
	}
	return w.g.Trim(ctx, off, length, fua)
}

// granularExtents asks d about the whole blocks covering the range and
// reports from off.
type granularExtents struct {
	g *byteGranular
	e Extenter
}

func (x granularExtents) Extents(ctx context.Context, dst []Extent, off, length int64) ([]Extent, error) {
	g := x.g
	if g.aligned(off, length) {
		return x.e.Extents(ctx, dst, off, length)
	}
	if err := g.check(off, length); err != nil {
		return dst, err
	}
	start, end := g.span(off, length)
	first := len(dst)
	dst, err := x.e.Extents(ctx, dst, start, end-start)
	if err != nil {
		return dst[:first], err
	}
	// Drop what lies before off and beyond off+length.
	out := dst[:first]
	at := start
	for _, e := range dst[first:] {
		lo, hi := max(at, off), min(at+e.Length, off+length)
		at += e.Length
		if lo < hi {
			e.Length = hi - lo
			out = append(out, e)
		}
	}
	return out, nil
}

// granularPrefetch prefetches the whole blocks covering the range.
type granularPrefetch struct {
	g *byteGranular
	p Prefetcher
}

func (x granularPrefetch) Prefetch(ctx context.Context, off, length int64) error {
	g := x.g
	if g.aligned(off, length) {
		return x.p.Prefetch(ctx, off, length)
	}
	if err := g.check(off, length); err != nil {
		return err
	}
	start, end := g.span(off, length)
	return x.p.Prefetch(ctx, start, end-start)
}
