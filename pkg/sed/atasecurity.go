package sed

import (
	"context"
	"errors"
	"fmt"
)

// ATASecurityDevice drives the ATA Security feature set (ACS-3 4.18) of a SATA
// disk without Opal: a user password that locks the whole drive at power-on,
// a master password for recovery, freeze lock, and secure erase. Every
// method wipes the password block it sent.
type ATASecurityDevice struct{ C ATACommander }

// ErrATASecurityState reports a command the drive's security state does not
// allow (e.g. frozen, or locked), found from IDENTIFY before sending it.
var ErrATASecurityState = errors.New("sed: ATA security state does not allow this")

func (a ATASecurityDevice) run(ctx context.Context, what string, c *ATASecurityCommand) error {
	defer c.Wipe()
	if err := a.C.ATA(ctx, c.Cmd, c.Data); err != nil {
		return fmt.Errorf("ATA SECURITY %s: %w", what, err)
	}
	return nil
}

// Status reads the security status (IDENTIFY DEVICE word 128).
func (a ATASecurityDevice) Status(ctx context.Context) (ATASecurity, error) {
	id, err := IdentifyDevice(ctx, a.C)
	if err != nil {
		return ATASecurity{}, err
	}
	if !id.Security.Supported {
		return id.Security, fmt.Errorf("%w: the drive does not report the ATA Security feature set", ErrNotSupported)
	}
	return id.Security, nil
}

// SetPassword sets the user password (enabling security: the drive locks at
// the next power-on) or the master password. maximum selects Maximum
// security for a user password.
func (a ATASecurityDevice) SetPassword(ctx context.Context, which ATAPassword, password []byte, maximum bool) error {
	st, err := a.Status(ctx)
	if err != nil {
		return err
	}
	if st.Frozen || st.Locked {
		return fmt.Errorf("%w: drive is %s", ErrATASecurityState, stateWord(st))
	}
	c, err := SecuritySetPassword(which, password, maximum, 0xFFFE)
	if err != nil {
		return err
	}
	return a.run(ctx, "SET PASSWORD", c)
}

// Unlock unlocks a locked drive for this power cycle.
func (a ATASecurityDevice) Unlock(ctx context.Context, which ATAPassword, password []byte) error {
	c, err := SecurityUnlock(which, password)
	if err != nil {
		return err
	}
	return a.run(ctx, "UNLOCK", c)
}

// DisablePassword removes the user password (the drive must be unlocked).
func (a ATASecurityDevice) DisablePassword(ctx context.Context, which ATAPassword, password []byte) error {
	c, err := SecurityDisablePassword(which, password)
	if err != nil {
		return err
	}
	return a.run(ctx, "DISABLE PASSWORD", c)
}

// Freeze blocks every security command until the next power cycle.
func (a ATASecurityDevice) Freeze(ctx context.Context) error {
	return a.run(ctx, "FREEZE LOCK", SecurityFreezeLock())
}

// Erase runs ERASE PREPARE and ERASE UNIT: the drive erases all user data
// (enhanced: the vendor's method, typically a media key change) and
// removes the user password. DESTROYS ALL DATA.
func (a ATASecurityDevice) Erase(ctx context.Context, which ATAPassword, password []byte, enhanced bool) error {
	c, err := SecurityEraseUnit(which, password, enhanced)
	if err != nil {
		return err
	}
	defer c.Wipe()
	if err := a.run(ctx, "ERASE PREPARE", SecurityErasePrepare()); err != nil {
		return err
	}
	return a.run(ctx, "ERASE UNIT", c)
}

func stateWord(s ATASecurity) string {
	switch {
	case s.Frozen:
		return "frozen"
	case s.Locked:
		return "locked"
	case s.Enabled:
		return "unlocked"
	}
	return "without a password"
}
