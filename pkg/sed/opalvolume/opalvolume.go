// Package opalvolume joins a self-encrypting drive's locking range to a
// LUKS2 volume the way cryptsetup 2.7 does ("hw-opal-crypt" and "hw-opal"
// segments): the LUKS2 header sits in the unlocked global range, the data
// segment is locking range N, and the range's key (the PIN of the Locking
// SP authority User(N+1)) is the first opal_key_size bytes of the volume
// key. Whoever can open a keyslot can unlock the range; rotating a KEK is
// a keyslot change, as for any LUKS2 volume, and the drive never sees it.
package opalvolume

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/sed"
)

// ErrNotOpalVolume is returned for a LUKS volume without a hw-opal segment.
var ErrNotOpalVolume = errors.New("opalvolume: the LUKS2 volume has no hw-opal segment")

// Options describe a new volume. Zero values take cryptsetup's defaults.
type Options struct {
	Segment uint8 // locking range / opal_segment_number, 1..8 (default 1)
	KeySize int   // range key bytes (default 32)
	Only    bool  // "hw-opal": the drive's encryption only, no dm-crypt layer
	// DeviceOffset is where the volume's device begins on the drive, in
	// bytes: a partition's start (sed.Sysfs.Partition), 0 for the whole
	// disk. The locking range starts at DeviceOffset + the data offset, as
	// in cryptsetup; the default data offset is raised so that this is a
	// multiple of the drive's alignment granularity.
	DeviceOffset uint64
	// LUKS2 options: KDF, sector size, data offset, Detached, label...
	// Opal is filled in by Format.
	LUKS keyring.FormatOptions
}

// Format writes a LUKS2 header with a hw-opal(-crypt) segment to hdr (the
// data device itself, or a detached header file with LUKS.Detached) and
// sets up the locking range on dev that covers the data: from the data
// offset to the end of the device (deviceBytes), rounded down to the
// drive's alignment granularity. adminKey is the SID and Admin1 PIN (set
// on a fresh drive, proven on an owned one). The range is left locked.
// DESTROYS the data in the range. The caller destroys the returned DEK.
func Format(ctx context.Context, dev *sed.Device, hdr *os.File, deviceBytes uint64, kek keyring.Recipient, adminKey []byte, o Options) (*keyring.Keyring, *secmem.Buffer, error) {
	if o.Segment == 0 {
		o.Segment = 1
	}
	if o.KeySize == 0 {
		o.KeySize = 32
	}
	lbs, gran := uint64(512), uint64(1)
	if g := dev.Discovery.Geometry; g != nil {
		if g.LogicalBlockSize >= 512 {
			lbs = uint64(g.LogicalBlockSize)
		}
		if g.AlignmentGranularity > 1 {
			gran = g.AlignmentGranularity
		}
	}
	fo := o.LUKS
	align := lbs * gran
	if fo.DataOffset == 0 && !fo.Detached {
		fo.DataOffset = 16 << 20
		if r := (o.DeviceOffset + fo.DataOffset) % align; r != 0 {
			fo.DataOffset += align - r
		}
	}
	if start := o.DeviceOffset + fo.DataOffset; start%align != 0 {
		return nil, nil, fmt.Errorf("opalvolume: the data would start at byte %d of the drive (device offset %d + data offset %d), not on the drive's %d-byte locking granularity",
			start, o.DeviceOffset, fo.DataOffset, align)
	}
	if deviceBytes <= fo.DataOffset {
		return nil, nil, fmt.Errorf("opalvolume: device of %d bytes has no room after the data offset %d", deviceBytes, fo.DataOffset)
	}
	rangeBytes := deviceBytes - fo.DataOffset
	rangeBytes -= rangeBytes % align
	if rangeBytes == 0 {
		return nil, nil, fmt.Errorf("opalvolume: no aligned room for a locking range")
	}
	fo.Opal = &keyring.OpalSegment{Number: int(o.Segment), KeySize: o.KeySize, Size: rangeBytes, Only: o.Only}
	k, dek, err := keyring.Format(ctx, hdr, kek, &fo)
	if err != nil {
		return nil, nil, err
	}
	r := sed.OpalRange{Segment: o.Segment, StartBlock: (o.DeviceOffset + fo.DataOffset) / lbs, LengthBlocks: rangeBytes / lbs}
	if err := dev.SetupRange(ctx, adminKey, dek.Bytes()[:o.KeySize], r); err != nil {
		// No header may name a range that was not set up.
		if eerr := k.Erase(ctx); eerr != nil {
			err = fmt.Errorf("%w (and erasing the new header failed: %v)", err, eerr)
		}
		k.Close()
		dek.Destroy()
		return nil, nil, err
	}
	return k, dek, nil
}

// Segment returns the volume's hw-opal segment.
func Segment(k *keyring.Keyring) (keyring.Segment, error) {
	for _, s := range k.Segments() {
		if s.Type == "hw-opal" || s.Type == "hw-opal-crypt" {
			if s.OpalSegmentNumber < 1 || s.OpalSegmentNumber > sed.MaxLockingRange || s.OpalKeySize < 1 {
				return s, fmt.Errorf("%w: segment %d has opal_segment_number %d, opal_key_size %d", ErrNotOpalVolume, s.ID, s.OpalSegmentNumber, s.OpalKeySize)
			}
			return s, nil
		}
	}
	return keyring.Segment{}, ErrNotOpalVolume
}

// rangeKey checks the DEK is long enough and returns its range-key prefix.
func rangeKey(s keyring.Segment, dek *secmem.Buffer) ([]byte, error) {
	b := dek.Bytes()
	if len(b) < s.OpalKeySize {
		return nil, fmt.Errorf("opalvolume: volume key of %d bytes is shorter than opal_key_size %d", len(b), s.OpalKeySize)
	}
	return b[:s.OpalKeySize], nil
}

// Unlock opens a keyslot with id and unlocks the volume's locking range.
// It returns the DEK (for hw-opal-crypt, the bytes after the range key
// are the dm-crypt key); the caller destroys it.
func Unlock(ctx context.Context, dev *sed.Device, k *keyring.Keyring, id keyring.Identity) (*secmem.Buffer, error) {
	s, err := Segment(k)
	if err != nil {
		return nil, err
	}
	dek, err := k.Unlock(ctx, id)
	if err != nil {
		return nil, err
	}
	key, err := rangeKey(s, dek)
	if err == nil {
		err = dev.UnlockRange(ctx, uint8(s.OpalSegmentNumber), key)
	}
	if err != nil {
		dek.Destroy()
		return nil, err
	}
	return dek, nil
}

// Lock locks the volume's locking range with the range key in dek.
func Lock(ctx context.Context, dev *sed.Device, k *keyring.Keyring, dek *secmem.Buffer) error {
	s, err := Segment(k)
	if err != nil {
		return err
	}
	key, err := rangeKey(s, dek)
	if err != nil {
		return err
	}
	return dev.LockRange(ctx, uint8(s.OpalSegmentNumber), key)
}

// LockWithKEK opens a keyslot with id and locks the volume's locking
// range with the range key it yields. Unlike Unlock followed by Lock, the
// range is never unlocked on the way.
func LockWithKEK(ctx context.Context, dev *sed.Device, k *keyring.Keyring, id keyring.Identity) error {
	if _, err := Segment(k); err != nil {
		return err
	}
	dek, err := k.Unlock(ctx, id)
	if err != nil {
		return err
	}
	defer dek.Destroy()
	return Lock(ctx, dev, k, dek)
}
