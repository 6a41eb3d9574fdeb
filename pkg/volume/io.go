package volume

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/encblk/encblk/internal/bufpool"
	"github.com/encblk/encblk/pkg/nbd"
	"github.com/encblk/encblk/pkg/xts"
)

// ReadAt reads p at plaintext offset off. Whole-sector requests are read
// into p and decrypted in place; others go through a pooled buffer.
func (v *Volume) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := v.check(off, int64(len(p))); err != nil {
		return err
	}
	c, err := v.acquire(ctx)
	if err != nil {
		return err
	}
	defer v.release()
	start, end := v.sectorSpan(off, int64(len(p)))
	if start == off && end == off+int64(len(p)) {
		if err := v.readBacking(p, off); err != nil {
			return err
		}
		if err := v.crypt(c, p, p, off, false); err != nil {
			return err
		}
	} else {
		bp := bufpool.Get(int(end - start))
		defer bufpool.Put(bp)
		buf := *bp
		if err := v.readBacking(buf, start); err != nil {
			return err
		}
		if err := v.crypt(c, buf, buf, start, false); err != nil {
			return err
		}
		copy(p, buf[off-start:])
	}
	v.stats.read.Add(uint64(len(p)))
	return nil
}

// WriteAt encrypts p and writes it at plaintext offset off; partial edge
// sectors are read, merged and rewritten under an exclusive range lock.
// With fua the backing is fdatasynced before return. A whole-sector
// request is encrypted in place, as nbd.Backend allows: p holds ciphertext
// afterwards (one buffer's worth less memory traffic: 1 MiB writes ~12 %
// faster in BenchmarkWriteAt).
func (v *Volume) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := v.checkWrite(off, int64(len(p))); err != nil {
		return err
	}
	c, err := v.acquire(ctx)
	if err != nil {
		return err
	}
	defer v.release()
	if err := v.write(c, p, off, true); err != nil {
		return err
	}
	v.stats.written.Add(uint64(len(p)))
	return v.fua(fua)
}

// write is WriteAt for an admitted request. With inPlace, whole sectors
// are encrypted in p itself; otherwise p is left as it is.
func (v *Volume) write(c *xts.Cipher, p []byte, off int64, inPlace bool) error {
	start, end := v.sectorSpan(off, int64(len(p)))
	whole := start == off && end == off+int64(len(p))
	if whole && inPlace {
		if err := v.crypt(c, p, p, off, true); err != nil {
			return err
		}
		id := v.rl.lock(start, end, false)
		defer v.rl.unlock(id)
		return v.writeBacking(p, start)
	}
	bp := bufpool.Get(int(end - start))
	defer bufpool.Put(bp)
	buf := *bp
	if whole {
		if err := v.crypt(c, buf, p, off, true); err != nil {
			return err
		}
		id := v.rl.lock(start, end, false)
		defer v.rl.unlock(id)
		return v.writeBacking(buf, start)
	}

	id := v.rl.lock(start, end, true)
	defer v.rl.unlock(id)
	headPartial := off != start
	tailPartial := off+int64(len(p)) != end
	tailAt := end - v.ss
	if headPartial || tailAt == start {
		if err := v.readSector(c, buf[:v.ss], start); err != nil {
			return err
		}
	}
	if tailPartial && tailAt != start {
		if err := v.readSector(c, buf[tailAt-start:], tailAt); err != nil {
			return err
		}
	}
	copy(buf[off-start:], p)
	if err := v.crypt(c, buf, buf, start, true); err != nil {
		return err
	}
	return v.writeBacking(buf, start)
}

// readSector reads and decrypts the one sector at plaintext offset off into p.
func (v *Volume) readSector(c *xts.Cipher, p []byte, off int64) error {
	if err := v.readBacking(p, off); err != nil {
		return err
	}
	return v.crypt(c, p, p, off, false)
}

// zeroChunk is the most WRITE_ZEROES encrypts and writes at a time.
const zeroChunk = 1 << 20

// zeros is the plaintext of WRITE_ZEROES; it is only ever read.
var zeros [zeroChunk]byte

// Zero writes encrypted zeros over the range (a hole would decrypt to
// garbage). It is never fast: with ZeroFast it fails with ENOTSUP.
func (v *Volume) Zero(ctx context.Context, off, length int64, flags nbd.ZeroFlags) error {
	if err := v.checkWrite(off, length); err != nil {
		return err
	}
	if flags&nbd.ZeroFast != 0 {
		return fmt.Errorf("volume: zeroing writes encrypted zeros: %w", syscall.ENOTSUP)
	}
	c, err := v.acquire(ctx)
	if err != nil {
		return err
	}
	defer v.release()
	for length > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("volume: zero: %w: %w", err, syscall.ESHUTDOWN)
		}
		// Chunks end on zeroChunk boundaries, so all but the first start
		// on a sector.
		n := min(length, zeroChunk-off%zeroChunk)
		if err := v.write(c, zeros[:n], off, false); err != nil {
			return err
		}
		v.stats.written.Add(uint64(n))
		off += n
		length -= n
	}
	return v.fua(flags&nbd.ZeroFUA != 0)
}

// Trim discards the whole sectors inside the range when the volume allows
// discards and the backing can; otherwise it is accepted and ignored.
func (v *Volume) Trim(ctx context.Context, off, length int64, fua bool) error {
	if err := v.checkWrite(off, length); err != nil {
		return err
	}
	d, ok := v.b.(Discarder)
	if !v.cfg.AllowDiscards || !ok {
		return nil
	}
	start := (off + v.ss - 1) / v.ss * v.ss
	end := (off + length) / v.ss * v.ss
	if start >= end {
		return nil
	}
	if _, err := v.acquire(ctx); err != nil {
		return err
	}
	defer v.release()
	id := v.rl.lock(start, end, false)
	err := d.Discard(v.cfg.DataOffset+start, end-start)
	v.rl.unlock(id)
	if err != nil && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("volume: %w", err)
	}
	if err == nil {
		v.stats.discarded.Add(uint64(end - start))
	}
	return v.fua(fua)
}

// Flush makes every completed write durable.
func (v *Volume) Flush(ctx context.Context) error {
	if _, err := v.acquire(ctx); err != nil {
		return err
	}
	defer v.release()
	return v.flushBacking()
}

func (v *Volume) fua(fua bool) error {
	if !fua {
		return nil
	}
	return v.flushBacking()
}

func (v *Volume) flushBacking() error {
	if v.cfg.ReadOnly {
		return nil
	}
	if err := v.b.Sync(); err != nil {
		return fmt.Errorf("volume: flush: %w", errnoOrEIO(err))
	}
	return nil
}

// sectorSpan widens [off, off+n) to whole sectors.
func (v *Volume) sectorSpan(off, n int64) (start, end int64) {
	start = off / v.ss * v.ss
	end = (off + n + v.ss - 1) / v.ss * v.ss
	return start, end
}

// check rejects requests outside the volume (the NBD server checks first;
// this guards Go callers).
func (v *Volume) check(off, n int64) error {
	if off < 0 || n < 0 || off > v.cfg.Size || n > v.cfg.Size-off {
		return fmt.Errorf("volume: request %d+%d outside the volume (%d bytes): %w", off, n, v.cfg.Size, syscall.EINVAL)
	}
	return nil
}

func (v *Volume) checkWrite(off, n int64) error {
	if v.cfg.ReadOnly {
		return fmt.Errorf("volume: read-only: %w", syscall.EPERM)
	}
	return v.check(off, n)
}

func (v *Volume) readBacking(p []byte, off int64) error {
	if _, err := v.b.ReadAt(p, v.cfg.DataOffset+off); err != nil {
		return fmt.Errorf("volume: %w", errnoOrEIO(err))
	}
	return nil
}

func (v *Volume) writeBacking(p []byte, off int64) error {
	if _, err := v.b.WriteAt(p, v.cfg.DataOffset+off); err != nil {
		return fmt.Errorf("volume: %w", errnoOrEIO(err))
	}
	return nil
}

// errnoOrEIO keeps err's errno for the NBD reply, adding EIO to errors
// that carry none (io.EOF from a short read, for example).
func errnoOrEIO(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return err
	}
	return fmt.Errorf("%w: %w", err, syscall.EIO)
}
