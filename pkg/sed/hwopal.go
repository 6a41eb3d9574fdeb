package sed

import (
	"context"
	"errors"
	"fmt"
)

// The drive-side layout cryptsetup 2.7 uses for LUKS2 "hw-opal" and
// "hw-opal-crypt" segments (lib/luks2/hw_opal/hw_opal.c, via the kernel's
// sed-opal ioctls), reproduced here so that a drive set up by either tool
// opens with the other:
//
//   - the admin key is the SID PIN and, after activation, the Locking SP
//     Admin1 PIN;
//   - LUKS2 segment opal_segment_number N is locking range N, owned by the
//     Locking SP authority User(N+1);
//   - that user's PIN is the range key: the first opal_key_size bytes of
//     the LUKS2 volume key;
//   - the user may set ReadLocked and WriteLocked of the range (the
//     kernel's IOC_OPAL_ADD_USR_TO_LR for RO and RW); RLE and WLE are set.
//
// Setup leaves the range locked; Unlock and Lock act as User(N+1).

// RangeUser returns the authority cryptsetup gives opal segment n.
func RangeUser(n uint8) UID { return User(n + 1) }

// OpalRange names a locking range and the blocks it covers, in the
// drive's logical blocks (Geometry feature's LogicalBlockSize).
type OpalRange struct {
	Segment      uint8 // LUKS2 opal_segment_number = locking range number, 1..MaxLockingRange
	StartBlock   uint64
	LengthBlocks uint64
}

// SetupRange prepares a locking range the way cryptsetup's
// opal_setup_ranges does: take ownership and activate the Locking SP if
// locking is not yet enabled (else crypto-erase the range first), enable
// User(N+1), let it lock the range, set its PIN to rangeKey, set the
// range's bounds with read and write locking enabled, and lock it.
// DESTROYS the data in the range.
func (d *Device) SetupRange(ctx context.Context, adminKey, rangeKey []byte, r OpalRange) error {
	if r.Segment == 0 {
		return fmt.Errorf("sed: opal segment 0 is the global range; use 1..%d", MaxLockingRange)
	}
	if len(adminKey) == 0 || len(rangeKey) == 0 || len(adminKey) > 32 || len(rangeKey) > 32 {
		return fmt.Errorf("sed: admin and range keys must be 1..32 bytes")
	}
	d0, err := Discover(ctx, d.t)
	if err != nil {
		return err
	}
	sid := Credential{AuthoritySID, adminKey}
	admin := Credential{AuthorityAdmin1, adminKey}
	if d0.Locking == nil || !d0.Locking.LockingEnabled {
		if err := d.TakeOwnership(ctx, adminKey); err != nil && !errors.Is(err, ErrOwned) {
			return err
		}
		if err := d.ActivateLockingSP(ctx, sid); err != nil {
			return err
		}
	} else if err := d.EraseRange(ctx, admin, r.Segment); err != nil {
		return err
	}
	user := RangeUser(r.Segment)
	if err := d.SetAuthorityEnabled(ctx, admin, user, true); err != nil {
		return err
	}
	if err := d.GrantRange(ctx, admin, r.Segment, user); err != nil {
		return err
	}
	if err := d.SetPIN(ctx, admin, user, rangeKey); err != nil {
		return err
	}
	if err := d.SetupLockingRange(ctx, admin, RangeConfig{Range: r.Segment, Start: r.StartBlock, Length: r.LengthBlocks,
		ReadLockEnabled: true, WriteLockEnabled: true}); err != nil {
		return err
	}
	if err := d.LockRange(ctx, r.Segment, rangeKey); err != nil {
		return err
	}
	rs, err := d.Range(ctx, admin, r.Segment)
	if err != nil {
		return err
	}
	if rs.Start != r.StartBlock || rs.Length != r.LengthBlocks || !rs.ReadLockEnabled || !rs.WriteLockEnabled || !rs.ReadLocked || !rs.WriteLocked {
		return fmt.Errorf("sed: locking range %d did not take its configuration (drive reports %+v)", r.Segment, *rs)
	}
	return nil
}

// UnlockRange unlocks opal segment n for reading and writing with the
// range key (as User(n+1)).
func (d *Device) UnlockRange(ctx context.Context, n uint8, rangeKey []byte) error {
	return d.SetLock(ctx, Credential{RangeUser(n), rangeKey}, n, Unlocked)
}

// LockRange locks opal segment n with the range key (as User(n+1)).
func (d *Device) LockRange(ctx context.Context, n uint8, rangeKey []byte) error {
	return d.SetLock(ctx, Credential{RangeUser(n), rangeKey}, n, Locked)
}

// RotateRangeKey changes the PIN of opal segment n's user from oldKey to
// newKey; the data and the media key are untouched.
func (d *Device) RotateRangeKey(ctx context.Context, n uint8, oldKey, newKey []byte) error {
	return d.SetPIN(ctx, Credential{RangeUser(n), oldKey}, RangeUser(n), newKey)
}
