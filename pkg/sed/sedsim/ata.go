package sedsim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/encblk/encblk/pkg/sed"
)

// ATADrive simulates a SATA drive with the ATA Security feature set (ACS-3
// 4.18) and no TCG support, over a backing file. It implements
// sed.ATACommander: IDENTIFY DEVICE and the SECURITY commands, with the
// states of ACS-3 figure "Security state diagram": SEC1 (no password),
// SEC2 (frozen, no password), SEC4 (locked), SEC5 (unlocked), SEC6
// (unlocked, frozen); five failed attempts expire the counter until the
// next power cycle. Aborted commands return sed.ErrATAAborted.
type ATADrive struct {
	mu           sync.Mutex
	f            *os.File
	size         int64
	user, master []byte
	userSet      bool
	maximum      bool
	masterID     uint16
	locked       bool
	frozen       bool
	attempts     int
	prepared     bool       // the previous command was ERASE PREPARE
	state        savedState // with OpenATA
}

const ataMaxAttempts = 5

// NewATA simulates a drive with no user password over the file at path.
// Its factory master password is masterPassword.
func NewATA(path string, masterPassword []byte) (*ATADrive, error) {
	f, size, err := openBacking(path)
	if err != nil {
		return nil, err
	}
	return &ATADrive{f: f, size: size, master: pad32(masterPassword), masterID: 0xFFFE}, nil
}

// Close releases the backing file.
func (a *ATADrive) Close() error { return a.f.Close() }

func pad32(p []byte) []byte {
	b := make([]byte, 32)
	copy(b, p)
	return b
}

// PowerCycle: a drive with a user password comes up locked; freeze and
// the attempt counter are cleared.
func (a *ATADrive) PowerCycle() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.locked, a.frozen, a.attempts, a.prepared = a.userSet, false, 0, false
	return a.save()
}

func aborted(what string) error {
	return fmt.Errorf("%w: %s", sed.ErrATAAborted, what)
}

// ATA implements sed.ATACommander.
func (a *ATADrive) ATA(ctx context.Context, cmd sed.ATACommand, data []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		if serr := a.save(); serr != nil && err == nil {
			err = serr
		}
	}()
	prepared := a.prepared
	a.prepared = false
	if cmd.Command != 0xEC && cmd.Command != 0xF3 && cmd.Protocol == 5 && len(data) != 512 {
		return aborted("security data block is not 512 bytes")
	}
	var control uint16
	var pw []byte
	if len(data) == 512 {
		control = binary.LittleEndian.Uint16(data)
		pw = data[2:34]
	}
	master := control&1 != 0
	switch cmd.Command {
	case 0xEC: // IDENTIFY DEVICE
		if len(data) != 512 {
			return aborted("IDENTIFY needs 512 bytes")
		}
		a.identify(data)
		return nil
	case 0xF1: // SET PASSWORD
		if a.frozen || a.locked {
			return aborted("SET PASSWORD while frozen or locked")
		}
		if master {
			a.master = bytes.Clone(pw)
			if id := binary.LittleEndian.Uint16(data[34:]); id != 0 && id != 0xFFFF {
				a.masterID = id
			}
			return nil
		}
		a.user, a.userSet, a.maximum = bytes.Clone(pw), true, control&(1<<8) != 0
		return nil
	case 0xF2: // UNLOCK
		if a.frozen {
			return aborted("UNLOCK while frozen")
		}
		if !a.check(master, pw, false) {
			return aborted("UNLOCK with a wrong password")
		}
		a.locked = false
		return nil
	case 0xF3: // ERASE PREPARE
		if a.frozen {
			return aborted("ERASE PREPARE while frozen")
		}
		a.prepared = true
		return nil
	case 0xF4: // ERASE UNIT
		if !prepared || a.frozen {
			return aborted("ERASE UNIT without ERASE PREPARE, or frozen")
		}
		if !a.userSet || !a.check(master, pw, true) {
			return aborted("ERASE UNIT with a wrong password")
		}
		if err := a.f.Truncate(0); err != nil {
			return err
		}
		if err := a.f.Truncate(a.size); err != nil {
			return err
		}
		a.user, a.userSet, a.locked, a.maximum = nil, false, false, false
		return nil
	case 0xF5: // FREEZE LOCK
		if a.locked {
			return aborted("FREEZE LOCK while locked")
		}
		a.frozen = true
		return nil
	case 0xF6: // DISABLE PASSWORD
		if a.frozen || a.locked || !a.userSet {
			return aborted("DISABLE PASSWORD while frozen, locked or without a password")
		}
		if !a.check(master, pw, false) {
			return aborted("DISABLE PASSWORD with a wrong password")
		}
		a.user, a.userSet, a.maximum = nil, false, false
		return nil
	}
	return aborted(fmt.Sprintf("command 0x%02x", cmd.Command))
}

// check compares a password, counting failures. At Maximum security the
// master password may only erase (forErase), not unlock or disable.
func (a *ATADrive) check(master bool, pw []byte, forErase bool) bool {
	if a.attempts >= ataMaxAttempts {
		return false
	}
	want := a.user
	if master {
		want = a.master
		if a.maximum && a.userSet && !forErase {
			want = nil
		}
	}
	if want == nil || subtle.ConstantTimeCompare(pw, want) != 1 {
		a.attempts++
		return false
	}
	return true
}

// identify fills IDENTIFY DEVICE data: words 27-46 model, 48 trusted
// computing (not supported), 82 security supported, 89/90 erase times,
// 92 master password identifier, 128 security status, 255 checksum.
func (a *ATADrive) identify(b []byte) {
	clear(b)
	put := func(w int, v uint16) { binary.LittleEndian.PutUint16(b[2*w:], v) }
	model := []byte("encblk sedsim ATA security drive        ")
	for i := 0; i < 40; i += 2 {
		b[54+i], b[55+i] = model[i+1], model[i]
	}
	put(48, 0x4000)
	put(82, 0x0002)
	put(89, 0x8001)
	put(90, 0x8001)
	put(92, a.masterID)
	var s uint16 = 1 | 1<<5 // supported, enhanced erase supported
	if a.userSet {
		s |= 1 << 1
	}
	if a.locked {
		s |= 1 << 2
	}
	if a.frozen {
		s |= 1 << 3
	}
	if a.attempts >= ataMaxAttempts {
		s |= 1 << 4
	}
	if a.maximum {
		s |= 1 << 8
	}
	put(128, s)
	b[510] = 0xA5
	var sum byte
	for _, c := range b[:511] {
		sum += c
	}
	b[511] = -sum
}

// ReadAt reads the medium; a locked drive aborts.
func (a *ATADrive) ReadAt(p []byte, off int64) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locked {
		return 0, ErrLocked
	}
	return a.f.ReadAt(p, off)
}

// WriteAt writes the medium; a locked drive aborts.
func (a *ATADrive) WriteAt(p []byte, off int64) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locked {
		return 0, ErrLocked
	}
	return a.f.WriteAt(p, off)
}
