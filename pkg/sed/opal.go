package sed

import (
	"context"
	"errors"
	"fmt"
)

// Opal 2 operations (Opal SSC 2.01 section 5 and the TCG Opal Application
// Note's sequences). Each opens the session it needs, runs its methods and
// closes the session; PINs are used for the HostChallenge or the new C_PIN
// value and never appear in errors.

// Credential is an authority and the PIN that proves it. encblk's PINs are
// 32 random bytes from its keyring, not human passwords.
type Credential struct {
	Authority UID
	PIN       []byte
}

// Errors callers act on.
var (
	// ErrOwned: the SID PIN is no longer the MSID, someone took ownership.
	ErrOwned = errors.New("sed: drive already owned (SID PIN is not the MSID)")
	// ErrLockingSPInactive: the Locking SP has not been activated.
	ErrLockingSPInactive = errors.New("sed: Locking SP is not activated")
)

// spOf returns the SP an authority belongs to.
func spOf(authority UID) UID {
	if authority == AuthoritySID || authority == AuthorityPSID || authority == AuthorityAdminSPAdmin {
		return AdminSP
	}
	return LockingSP
}

// withSession runs fn in a session as c (or anonymously if c is nil) and
// closes the session, reporting fn's error first.
func (d *Device) withSession(ctx context.Context, sp UID, c *Credential, write bool, fn func(*Session) error) error {
	var auth UID
	var pin []byte
	if c != nil {
		auth, pin = c.Authority, c.PIN
	}
	s, err := d.StartSession(ctx, sp, auth, pin, write)
	if err != nil {
		if sp == LockingSP && errors.Is(err, StatusInvalidParameter) {
			return fmt.Errorf("%w: %w", ErrLockingSPInactive, err)
		}
		return err
	}
	ferr := fn(s)
	cerr := s.Close(ctx)
	if ferr != nil {
		return ferr
	}
	return cerr
}

// ReadMSID reads the MSID (the factory SID PIN) in an anonymous session.
func (d *Device) ReadMSID(ctx context.Context) ([]byte, error) {
	var msid []byte
	err := d.withSession(ctx, AdminSP, nil, false, func(s *Session) error {
		res, err := s.Call(ctx, GetCall(CPINMSID, ColCPINPIN, ColCPINPIN))
		if err != nil {
			return err
		}
		cols, err := Columns(res)
		if err != nil {
			return err
		}
		b, ok := cols[ColCPINPIN].(Bytes)
		if !ok {
			return fmt.Errorf("sed: C_PIN_MSID: %w: no PIN column", ErrMalformed)
		}
		msid = b
		return nil
	})
	return msid, err
}

// TakeOwnership sets the SID PIN of a factory-fresh drive: it reads the
// MSID, authenticates as SID with it and sets C_PIN_SID to sidPIN. A drive
// whose SID PIN is not the MSID gives ErrOwned.
func (d *Device) TakeOwnership(ctx context.Context, sidPIN []byte) error {
	msid, err := d.ReadMSID(ctx)
	if err != nil {
		return err
	}
	err = d.withSession(ctx, AdminSP, &Credential{AuthoritySID, msid}, true, func(s *Session) error {
		_, err := s.Call(ctx, SetCall(CPINSID, Col(ColCPINPIN, Secret(sidPIN))))
		return err
	})
	if errors.Is(err, StatusNotAuthorized) {
		return fmt.Errorf("%w: %w", ErrOwned, err)
	}
	return err
}

// LockingSPLifeCycle returns the life cycle state of the Locking SP
// (LifeCycleManufacturedInactive before Activate).
func (d *Device) LockingSPLifeCycle(ctx context.Context, sid Credential) (uint64, error) {
	var lc uint64
	err := d.withSession(ctx, AdminSP, &sid, false, func(s *Session) error {
		var err error
		lc, err = getUint(ctx, s, LockingSP, ColSPLifeCycle)
		return err
	})
	return lc, err
}

func getUint(ctx context.Context, s *Session, obj UID, col uint64) (uint64, error) {
	res, err := s.Call(ctx, GetCall(obj, col, col))
	if err != nil {
		return 0, err
	}
	cols, err := Columns(res)
	if err != nil {
		return 0, err
	}
	u, ok := cols[col].(Uint)
	if !ok {
		return 0, fmt.Errorf("sed: %v column %d: %w: not an integer", obj, col, ErrMalformed)
	}
	return uint64(u), nil
}

// ActivateLockingSP activates the Locking SP as SID. Its Admin1 PIN starts
// out equal to the SID PIN (Opal SSC 2.01 5.2.1). Activating an active SP
// is a no-op.
func (d *Device) ActivateLockingSP(ctx context.Context, sid Credential) error {
	return d.withSession(ctx, AdminSP, &sid, true, func(s *Session) error {
		lc, err := getUint(ctx, s, LockingSP, ColSPLifeCycle)
		if err != nil {
			return err
		}
		if lc == LifeCycleManufactured {
			return nil
		}
		_, err = s.Call(ctx, MethodCall{Invoking: LockingSP, Method: MethodActivate})
		return err
	})
}

// SetPIN sets the C_PIN of target to newPIN, authenticated as as: SID sets
// its own PIN; a Locking SP admin sets any Locking SP authority's PIN; a
// user sets its own. This is how an authentication key is rotated.
func (d *Device) SetPIN(ctx context.Context, as Credential, target UID, newPIN []byte) error {
	return d.withSession(ctx, spOf(as.Authority), &as, true, func(s *Session) error {
		_, err := s.Call(ctx, SetCall(CPINOf(target), Col(ColCPINPIN, Secret(newPIN))))
		return err
	})
}

// SetAuthorityEnabled enables or disables a Locking SP authority (UserN
// starts disabled).
func (d *Device) SetAuthorityEnabled(ctx context.Context, admin Credential, authority UID, enabled bool) error {
	return d.withSession(ctx, LockingSP, &admin, true, func(s *Session) error {
		_, err := s.Call(ctx, SetCall(authority, Col(ColAuthorityEnabled, Bool(enabled))))
		return err
	})
}

// RangeConfig describes a locking range. Start and Length are in logical
// blocks; they are ignored for the global range (0).
type RangeConfig struct {
	Range            uint8
	Start, Length    uint64
	ReadLockEnabled  bool
	WriteLockEnabled bool
}

// SetupLockingRange configures a locking range's bounds and which locks apply.
// Overlapping another range fails with StatusInvalidParameter.
func (d *Device) SetupLockingRange(ctx context.Context, admin Credential, rc RangeConfig) error {
	vals := []Name{Col(ColReadLockEnabled, Bool(rc.ReadLockEnabled)), Col(ColWriteLockEnabled, Bool(rc.WriteLockEnabled))}
	if rc.Range != 0 {
		vals = append([]Name{Col(ColRangeStart, Uint(rc.Start)), Col(ColRangeLength, Uint(rc.Length))}, vals...)
	}
	return d.withSession(ctx, LockingSP, &admin, true, func(s *Session) error {
		_, err := s.Call(ctx, SetCall(LockingRange(rc.Range), vals...))
		return err
	})
}

// Half-UIDs that name BooleanExpr elements (Core 2.01 5.1.3.3).
var (
	halfUIDAuthorityObjectRef = Bytes{0x00, 0x00, 0x0C, 0x05}
	halfUIDBooleanACE         = Bytes{0x00, 0x00, 0x04, 0x0E}
)

// GrantRange lets user lock and unlock range n and read its state, by
// setting the range's Set_RdLocked, Set_WrLocked and
// Get_RangeStartToActiveKey ACEs to "Admin1 OR user", as the Linux
// kernel's IOC_OPAL_ADD_USR_TO_LR does. cryptsetup 2.7's open reads the
// range as the user (IOC_OPAL_GET_LR_STATUS) and refuses a volume whose
// user may not.
func (d *Device) GrantRange(ctx context.Context, admin Credential, n uint8, user UID) error {
	expr := List{
		Name{halfUIDAuthorityObjectRef, AuthorityAdmin1.Value()},
		Name{halfUIDAuthorityObjectRef, user.Value()},
		Name{halfUIDBooleanACE, Uint(1)}, // OR
	}
	return d.withSession(ctx, LockingSP, &admin, true, func(s *Session) error {
		for _, ace := range []UID{ACESetRdLocked(n), ACESetWrLocked(n), ACEGetRange(n)} {
			if _, err := s.Call(ctx, SetCall(ace, Col(3, expr))); err != nil {
				return err
			}
		}
		return nil
	})
}

// LockState is what a range allows.
type LockState int

// Lock states (Opal's "READWRITE", "READONLY", "LOCKED").
const (
	Unlocked LockState = iota
	ReadOnly
	Locked
)

func (l LockState) String() string {
	switch l {
	case Unlocked:
		return "unlocked"
	case ReadOnly:
		return "read-only"
	case Locked:
		return "locked"
	}
	return fmt.Sprintf("LockState(%d)", int(l))
}

// SetLock locks or unlocks range n, as an admin or a granted user.
func (d *Device) SetLock(ctx context.Context, as Credential, n uint8, state LockState) error {
	var rl, wl bool
	switch state {
	case Unlocked:
	case ReadOnly:
		wl = true
	case Locked:
		rl, wl = true, true
	default:
		return fmt.Errorf("sed: invalid lock state %d", int(state))
	}
	return d.withSession(ctx, LockingSP, &as, true, func(s *Session) error {
		_, err := s.Call(ctx, SetCall(LockingRange(n), Col(ColReadLocked, Bool(rl)), Col(ColWriteLocked, Bool(wl))))
		return err
	})
}

// RangeState is a locking range as the drive reports it.
type RangeState struct {
	Range            uint8  `json:"range"`
	Start            uint64 `json:"start"`
	Length           uint64 `json:"length"`
	ReadLockEnabled  bool   `json:"read_lock_enabled"`
	WriteLockEnabled bool   `json:"write_lock_enabled"`
	ReadLocked       bool   `json:"read_locked"`
	WriteLocked      bool   `json:"write_locked"`
	ActiveKey        UID    `json:"-"`
}

// State is what the range allows now: a lock counts only where it is
// enabled (a locked but not lock-enabled range does not lock).
func (rs *RangeState) State() LockState {
	switch {
	case rs.ReadLockEnabled && rs.ReadLocked:
		return Locked
	case rs.WriteLockEnabled && rs.WriteLocked:
		return ReadOnly
	}
	return Unlocked
}

// Range reads the state of range n.
func (d *Device) Range(ctx context.Context, admin Credential, n uint8) (*RangeState, error) {
	var rs *RangeState
	err := d.withSession(ctx, LockingSP, &admin, false, func(s *Session) error {
		var err error
		rs, err = getRange(ctx, s, n)
		return err
	})
	return rs, err
}

func getRange(ctx context.Context, s *Session, n uint8) (*RangeState, error) {
	res, err := s.Call(ctx, GetCall(LockingRange(n), ColRangeStart, ColActiveKey))
	if err != nil {
		return nil, err
	}
	cols, err := Columns(res)
	if err != nil {
		return nil, err
	}
	rs := &RangeState{Range: n}
	u := func(c uint64) (uint64, error) {
		v, ok := cols[c].(Uint)
		if !ok {
			return 0, fmt.Errorf("sed: %v column %d: %w", LockingRange(n), c, ErrMalformed)
		}
		return uint64(v), nil
	}
	var vals [6]uint64
	for i, c := range []uint64{ColRangeStart, ColRangeLength, ColReadLockEnabled, ColWriteLockEnabled, ColReadLocked, ColWriteLocked} {
		if vals[i], err = u(c); err != nil {
			return nil, err
		}
	}
	rs.Start, rs.Length = vals[0], vals[1]
	rs.ReadLockEnabled, rs.WriteLockEnabled, rs.ReadLocked, rs.WriteLocked = vals[2] == 1, vals[3] == 1, vals[4] == 1, vals[5] == 1
	if b, ok := cols[ColActiveKey].(Bytes); ok {
		if rs.ActiveKey, err = UIDFromBytes(b); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// EraseRange crypto-erases range n: GenKey on its active media key. The
// data in the range becomes unreadable for good.
func (d *Device) EraseRange(ctx context.Context, admin Credential, n uint8) error {
	return d.withSession(ctx, LockingSP, &admin, true, func(s *Session) error {
		rs, err := getRange(ctx, s, n)
		if err != nil {
			return err
		}
		key := rs.ActiveKey
		if key == (UID{}) {
			key = RangeKey(n)
		}
		_, err = s.Call(ctx, MethodCall{Invoking: key, Method: MethodGenKey})
		return err
	})
}

// SetMBR sets the shadow MBR's Enable and Done flags. Disabling the shadow
// MBR is SetMBR(ctx, admin, false, true).
func (d *Device) SetMBR(ctx context.Context, admin Credential, enable, done bool) error {
	return d.withSession(ctx, LockingSP, &admin, true, func(s *Session) error {
		_, err := s.Call(ctx, SetCall(MBRControl, Col(ColMBREnable, Bool(enable)), Col(ColMBRDone, Bool(done))))
		return err
	})
}

// RevertLockingSP returns the Locking SP to Manufactured-Inactive
// (RevertSP as a Locking SP admin): every range is crypto-erased unless
// keepGlobalRangeKey, and all Locking SP PINs are reset. DESTROYS DATA.
func (d *Device) RevertLockingSP(ctx context.Context, admin Credential, keepGlobalRangeKey bool) error {
	return d.withSession(ctx, LockingSP, &admin, true, func(s *Session) error {
		m := MethodCall{Invoking: ThisSP, Method: MethodRevertSP}
		if keepGlobalRangeKey {
			m.Args = []Value{Name{Uint(0x060000), Bool(true)}}
		}
		_, err := s.Call(ctx, m)
		if err == nil {
			s.markClosed() // the TPer ends the session after RevertSP
		}
		return err
	})
}

// RevertTPer returns the whole drive to its factory state (Revert on the
// Admin SP) as SID, or as PSID for a drive whose SID PIN is lost. All data
// is crypto-erased and the SID PIN becomes the MSID again. DESTROYS DATA.
func (d *Device) RevertTPer(ctx context.Context, as Credential) error {
	if as.Authority != AuthoritySID && as.Authority != AuthorityPSID {
		return fmt.Errorf("sed: Revert needs the SID or PSID authority, not %v", as.Authority)
	}
	return d.withSession(ctx, AdminSP, &as, true, func(s *Session) error {
		_, err := s.Call(ctx, MethodCall{Invoking: AdminSP, Method: MethodRevert})
		if err == nil {
			s.markClosed() // the TPer ends the session after Revert
		}
		return err
	})
}
