package sedsim

import (
	"fmt"
)

// Size is the capacity of the simulated medium in bytes.
func (d *Drive) Size() int64 { return int64(d.sectors) * sectorSize }

// rangeFor returns the locking range that covers lba: the non-global range
// that contains it, else the global range.
func (d *Drive) rangeFor(lba uint64) *lockingRange {
	for _, r := range d.ranges[1:] {
		if r.length > 0 && lba >= r.start && lba-r.start < r.length {
			return r
		}
	}
	return d.ranges[0]
}

// checkIO validates an access and returns its first LBA and sector count.
func (d *Drive) checkIO(n int, off int64) (uint64, uint64, error) {
	if off < 0 || off%sectorSize != 0 || n%sectorSize != 0 {
		return 0, 0, ErrAlignment
	}
	lba, count := uint64(off)/sectorSize, uint64(n)/sectorSize
	if lba > d.sectors || count > d.sectors-lba {
		return 0, 0, ErrRange
	}
	return lba, count, nil
}

// shadowed reports whether reads of lba see the shadow MBR instead of the
// medium (MBRControl Enable set and Done clear).
func (d *Drive) shadowed(lba uint64) bool {
	return d.lockingActive && d.mbrEnable && !d.mbrDone && lba < mbrSectors
}

// ReadAt reads whole sectors of the simulated medium, decrypting each with
// the media key of its locking range. A read-locked range fails with
// ErrLocked and returns nothing.
func (d *Drive) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lba, count, err := d.checkIO(len(p), off)
	if err != nil {
		return 0, err
	}
	for i := uint64(0); i < count; i++ {
		if r := d.rangeFor(lba + i); d.lockingActive && r.rle && r.rl && !d.shadowed(lba+i) {
			return 0, fmt.Errorf("%w: read of LBA %d", ErrLocked, lba+i)
		}
	}
	if _, err := d.f.ReadAt(p, off); err != nil {
		return 0, fmt.Errorf("sedsim: backing read: %w", err)
	}
	for i := uint64(0); i < count; i++ {
		s := p[i*sectorSize : (i+1)*sectorSize]
		if d.shadowed(lba + i) {
			clear(s) // an empty shadow MBR table
			continue
		}
		if err := d.rangeFor(lba+i).cipher.DecryptSectors(s, s, sectorSize, lba+i, 1); err != nil {
			return 0, fmt.Errorf("sedsim: %w", err)
		}
	}
	return len(p), nil
}

// WriteAt writes whole sectors, encrypting each with the media key of its
// locking range. A write-locked range (or the shadowed MBR area) fails
// with ErrLocked and writes nothing.
func (d *Drive) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lba, count, err := d.checkIO(len(p), off)
	if err != nil {
		return 0, err
	}
	for i := uint64(0); i < count; i++ {
		if r := d.rangeFor(lba + i); d.shadowed(lba+i) || d.lockingActive && r.wle && r.wl {
			return 0, fmt.Errorf("%w: write of LBA %d", ErrLocked, lba+i)
		}
	}
	buf := make([]byte, len(p))
	for i := uint64(0); i < count; i++ {
		s := i * sectorSize
		if err := d.rangeFor(lba+i).cipher.EncryptSectors(buf[s:s+sectorSize], p[s:s+sectorSize], sectorSize, lba+i, 1); err != nil {
			return 0, fmt.Errorf("sedsim: %w", err)
		}
	}
	if _, err := d.f.WriteAt(buf, off); err != nil {
		return 0, fmt.Errorf("sedsim: backing write: %w", err)
	}
	return len(p), nil
}
