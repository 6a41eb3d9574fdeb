package sed

import (
	"context"
	"errors"
	"fmt"
)

// ATA PASS-THROUGH(16), SAT-3 12.2.2:
//
//	0  85h
//	1  MULTIPLE_COUNT(7:5) PROTOCOL(4:1) EXTEND(0)
//	2  OFF_LINE(7:6) CK_COND(5) T_TYPE(4) T_DIR(3) BYTE_BLOCK(2) T_LENGTH(1:0)
//	3-4 FEATURES(15:8, 7:0)   5-6 COUNT(15:8, 7:0)
//	7-8 LBA(31:24... 7:0 low)  9-10 LBA mid  11-12 LBA high
//	13 DEVICE  14 COMMAND  15 CONTROL
//
// TRUSTED RECEIVE (5Ch) and TRUSTED SEND (5Eh), ACS-3 7.55/7.57: FEATURES =
// security protocol, COUNT = transfer length in 512-byte blocks (7:0),
// LBA(7:0) = transfer length (15:8), LBA(23:8) = SP specific (ComID).
const (
	opATAPassThrough16 = 0x85

	ataProtoNonData = 3
	ataProtoPIOIn   = 4
	ataProtoPIOOut  = 5

	ataTrustedReceive = 0x5C
	ataTrustedSend    = 0x5E
	ataIdentify       = 0xEC

	ataSecuritySetPassword     = 0xF1
	ataSecurityUnlock          = 0xF2
	ataSecurityErasePrepare    = 0xF3
	ataSecurityEraseUnit       = 0xF4
	ataSecurityFreezeLock      = 0xF5
	ataSecurityDisablePassword = 0xF6

	// Byte 2 flags: T_DIR in, BYTE_BLOCK blocks, length in COUNT.
	ataFlagsPIOIn  = 0x08 | 0x04 | 0x02
	ataFlagsPIOOut = 0x04 | 0x02
	// CK_COND: return the ATA registers even on success.
	ataFlagsNonData = 0x20
)

// ATACommand is one ATA command register set for ATA PASS-THROUGH(16).
type ATACommand struct {
	Protocol uint8 // ataProto*: 3 non-data, 4 PIO data-in, 5 PIO data-out
	Command  uint8
	Features uint16
	Count    uint16
	LBA      uint64 // 48 bits
	Device   uint8
}

// CDB encodes the command as ATA PASS-THROUGH(16).
func (a ATACommand) CDB() [16]byte {
	var c [16]byte
	c[0] = opATAPassThrough16
	c[1] = a.Protocol << 1
	switch a.Protocol {
	case ataProtoPIOIn:
		c[2] = ataFlagsPIOIn
	case ataProtoPIOOut:
		c[2] = ataFlagsPIOOut
	default:
		c[2] = ataFlagsNonData
	}
	if a.Features>>8 != 0 || a.Count>>8 != 0 || a.LBA>>24 != 0 {
		c[1] |= 1 // EXTEND: 48-bit command
	}
	c[3], c[4] = byte(a.Features>>8), byte(a.Features)
	c[5], c[6] = byte(a.Count>>8), byte(a.Count)
	c[7], c[8] = byte(a.LBA>>24), byte(a.LBA)
	c[9], c[10] = byte(a.LBA>>32), byte(a.LBA>>8)
	c[11], c[12] = byte(a.LBA>>40), byte(a.LBA>>16)
	c[13], c[14] = a.Device, a.Command
	return c
}

// trustedCommand builds TRUSTED RECEIVE or SEND for n bytes (a multiple
// of 512).
func trustedCommand(send bool, proto SecurityProtocol, spSpecific uint16, n int) (ATACommand, error) {
	if n%512 != 0 || n == 0 || n/512 > 0xFFFF {
		return ATACommand{}, fmt.Errorf("sed: ATA trusted transfer of %d bytes is not 1..65535 blocks of 512", n)
	}
	blocks := uint64(n / 512)
	a := ATACommand{Protocol: ataProtoPIOIn, Command: ataTrustedReceive, Features: uint16(proto),
		Count: uint16(blocks & 0xFF), LBA: blocks>>8 | uint64(spSpecific)<<8}
	if send {
		a.Protocol, a.Command = ataProtoPIOOut, ataTrustedSend
	}
	return a, nil
}

// ATATransport sends security protocols to a SATA disk behind libata (or
// a SAT bridge) as TRUSTED RECEIVE/SEND inside ATA PASS-THROUGH(16).
type ATATransport struct{ fd int }

// NewATATransport uses the open block-device descriptor fd.
func NewATATransport(fd int) *ATATransport { return &ATATransport{fd: fd} }

// ATACommander runs one ATA command with its data (nil for non-data
// commands). ATATransport implements it with ATA PASS-THROUGH(16); sedsim's
// ATA drive implements it for tests. A command the device aborts yields an
// error wrapping ErrATAAborted.
type ATACommander interface {
	ATA(ctx context.Context, cmd ATACommand, data []byte) error
}

// ErrATAAborted reports a command the device aborted (ATA status ERR with
// ABRT): for security commands a wrong password, a frozen or locked drive,
// or an expired attempt counter.
var ErrATAAborted = errors.New("sed: ATA command aborted by the device")

// ATA implements ATACommander.
func (a *ATATransport) ATA(ctx context.Context, cmd ATACommand, buf []byte) error {
	err := a.run(ctx, cmd, buf)
	var se *SenseError
	if errors.As(err, &se) && (se.ATAError&0x04 != 0 || se.Key == SenseAbortedCommand) {
		return fmt.Errorf("%w: %w", ErrATAAborted, err)
	}
	return err
}

func (a *ATATransport) run(ctx context.Context, cmd ATACommand, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cdb := cmd.CDB()
	dir := int32(sgDxferNone)
	switch cmd.Protocol {
	case ataProtoPIOIn:
		dir = sgDxferFromDev
	case ataProtoPIOOut:
		dir = sgDxferToDev
	}
	return sgCommand(a.fd, cdb[:], dir, buf, commandTimeout)
}

// IFRecv implements Transport; len(buf) must be a multiple of 512.
func (a *ATATransport) IFRecv(ctx context.Context, proto SecurityProtocol, spSpecific uint16, buf []byte) error {
	cmd, err := trustedCommand(false, proto, spSpecific, len(buf))
	if err != nil {
		return err
	}
	if err := a.run(ctx, cmd, buf); err != nil {
		return fmt.Errorf("TRUSTED RECEIVE: %w", err)
	}
	return nil
}

// IFSend implements Transport; len(data) must be a multiple of 512.
func (a *ATATransport) IFSend(ctx context.Context, proto SecurityProtocol, spSpecific uint16, data []byte) error {
	cmd, err := trustedCommand(true, proto, spSpecific, len(data))
	if err != nil {
		return err
	}
	if err := a.run(ctx, cmd, data); err != nil {
		return fmt.Errorf("TRUSTED SEND: %w", err)
	}
	return nil
}

// Identify reads the 512-byte IDENTIFY DEVICE data.
func (a *ATATransport) Identify(ctx context.Context) (*Identify, error) {
	return IdentifyDevice(ctx, a)
}

// IdentifyDevice reads and parses IDENTIFY DEVICE data through c.
func IdentifyDevice(ctx context.Context, c ATACommander) (*Identify, error) {
	buf := make([]byte, 512)
	if err := c.ATA(ctx, ATACommand{Protocol: ataProtoPIOIn, Command: ataIdentify, Count: 1}, buf); err != nil {
		return nil, fmt.Errorf("IDENTIFY DEVICE: %w", err)
	}
	return ParseIdentify(buf)
}

// The ATA Security feature set (ACS-3 4.18), for SATA drives without
// Opal. Passwords are 32 bytes; shorter ones are zero-padded, as hdparm
// does.

// ATAPasswordLen is the size of an ATA security password.
const ATAPasswordLen = 32

// ErrATAPassword reports a password longer than 32 bytes.
var ErrATAPassword = errors.New("sed: ATA security password longer than 32 bytes")

// ATAPassword selects which password a command uses.
type ATAPassword uint8

// ATA passwords.
const (
	ATAUserPassword   ATAPassword = 0
	ATAMasterPassword ATAPassword = 1
)

// securityData builds the 512-byte data block of SET PASSWORD, UNLOCK,
// DISABLE PASSWORD and ERASE UNIT: word 0 control bits, words 1-16 the
// password. The caller wipes it after use.
func securityData(control uint16, password []byte) ([]byte, error) {
	if len(password) > ATAPasswordLen {
		return nil, ErrATAPassword
	}
	b := make([]byte, 512)
	b[0], b[1] = byte(control), byte(control>>8)
	copy(b[2:2+ATAPasswordLen], password)
	return b, nil
}

// ATASecurityCommand is an ATA Security command and its data block (nil
// for non-data commands). Data holds the password: call Wipe when done.
type ATASecurityCommand struct {
	Cmd  ATACommand
	Data []byte
}

// Wipe zeroes the data block.
func (c *ATASecurityCommand) Wipe() { clear(c.Data) }

func pioOut(cmd uint8, data []byte) *ATASecurityCommand {
	return &ATASecurityCommand{Cmd: ATACommand{Protocol: ataProtoPIOOut, Command: cmd, Count: 1}, Data: data}
}

// SecuritySetPassword builds SECURITY SET PASSWORD. For the user
// password, maximum selects Maximum (rather than High) security: with
// Maximum the master password can only erase, not unlock.
func SecuritySetPassword(which ATAPassword, password []byte, maximum bool, masterRevision uint16) (*ATASecurityCommand, error) {
	control := uint16(which)
	if maximum {
		control |= 1 << 8
	}
	b, err := securityData(control, password)
	if err != nil {
		return nil, err
	}
	if which == ATAMasterPassword {
		b[34], b[35] = byte(masterRevision), byte(masterRevision>>8) // word 17
	}
	return pioOut(ataSecuritySetPassword, b), nil
}

// SecurityUnlock builds SECURITY UNLOCK.
func SecurityUnlock(which ATAPassword, password []byte) (*ATASecurityCommand, error) {
	b, err := securityData(uint16(which), password)
	if err != nil {
		return nil, err
	}
	return pioOut(ataSecurityUnlock, b), nil
}

// SecurityDisablePassword builds SECURITY DISABLE PASSWORD.
func SecurityDisablePassword(which ATAPassword, password []byte) (*ATASecurityCommand, error) {
	b, err := securityData(uint16(which), password)
	if err != nil {
		return nil, err
	}
	return pioOut(ataSecurityDisablePassword, b), nil
}

// SecurityErasePrepare builds SECURITY ERASE PREPARE, which must directly
// precede SECURITY ERASE UNIT.
func SecurityErasePrepare() *ATASecurityCommand {
	return &ATASecurityCommand{Cmd: ATACommand{Protocol: ataProtoNonData, Command: ataSecurityErasePrepare}}
}

// SecurityEraseUnit builds SECURITY ERASE UNIT (enhanced: the vendor's
// enhanced erase, e.g. a media key change).
func SecurityEraseUnit(which ATAPassword, password []byte, enhanced bool) (*ATASecurityCommand, error) {
	control := uint16(which)
	if enhanced {
		control |= 1 << 1
	}
	b, err := securityData(control, password)
	if err != nil {
		return nil, err
	}
	return pioOut(ataSecurityEraseUnit, b), nil
}

// SecurityFreezeLock builds SECURITY FREEZE LOCK: until the next power
// cycle, no security command is accepted.
func SecurityFreezeLock() *ATASecurityCommand {
	return &ATASecurityCommand{Cmd: ATACommand{Protocol: ataProtoNonData, Command: ataSecurityFreezeLock}}
}
